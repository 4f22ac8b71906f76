"""The run engine: validates, persists, deduplicates, executes and streams runs.

One run is one row, plus its log lines. A run goes queued → running →
succeeded | failed | cancelled. Every replica that shares the database sees
the same runs: an `Idempotency-Key` is a unique column, so two replicas that
receive the same request at once insert one row between them, and the loser
waits on that row like any other follower. Liveness is a heartbeat: a run
whose replica stops beating is marked failed, so none stays "running" forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .action import Action, RunCancelled, RunContext, RunLogger, turn_at_working
from .auth import Caller
from .cursors import Page, newest_first_page
from .db import run_logs, runs
from .errors import FieldError, PltfError, invalid_input, not_found, pydantic_field_errors, some_of
from .logs import get_logger
from .metrics import Metrics
from .redact import Redactor
from .run_log_writer import RunLogWriter
from .visibility import only_visible
from .workspaces import WorkspaceStore

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# A follower on another replica learns of progress by polling at this pace;
# followers on the executing replica are woken at once.
POLL_SECONDS = 0.2
MAX_IDEMPOTENCY_KEY = 255
# Every string a run stores or logs is scanned for every secret, so their
# number and size bound the cost of a run; real requests carry a handful.
MAX_SECRETS = 100
MAX_SECRET_NAME_LENGTH = 200
MAX_SECRET_LENGTH = 16 * 1024


# Removes finished runs' scratch directories, one at a time, after the runs have answered.
_remover = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-scratch-remover")


@contextlib.contextmanager
def scratch_directory(root: Path | None) -> Iterator[Path]:
    """A run's own directory under `root` (the system's temp directory for None), removed after the run (and
    its callers) have moved on: removing a rendered project and its git checkout was tens of milliseconds of
    every Create's answer under load."""
    directory = tempfile.TemporaryDirectory(prefix="pltf-run-", dir=root)
    try:
        yield Path(directory.name)
    finally:
        _remover.submit(directory.cleanup)


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class PreparedRun:
    """A request that passed validation; nothing has been stored or started yet."""

    action: Action[Any, Any]
    params: BaseModel
    secrets: dict[str, str]
    dry_run: bool
    request_hash: str


class Notifier:
    """Wakes the coroutines waiting on a run when this process changes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextlib.contextmanager
    def listen(self, run_id: str) -> Iterator[asyncio.Event]:
        # Register before reading the database, so a change between the read
        # and the wait is not missed.
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(run_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(run_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[run_id]

    def notify(self, run_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(run_id, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(event.set)


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()


class RunEngine:
    """Built by the composition root (`services.run_engine`) with the parts it uses: the database that
    holds the runs, the redactor for what they store and log, the workspaces an input may name, and
    the actions it runs."""

    def __init__(
        self,
        *,
        database: Engine,
        redactor: Redactor,
        workspaces: WorkspaceStore,
        actions: dict[str, Action[Any, Any]],
        metrics: Metrics | None = None,
        replica: str,
        max_concurrent_runs: int,
        stale_run_seconds: float,
        heartbeat_seconds: float,
        scratch_root: Path | None = None,
        max_working_runs: int | None = None,
    ) -> None:
        self.database = database
        self.redactor = redactor
        self.workspaces = workspaces
        self.actions = actions
        self.metrics = metrics or Metrics()
        self.notifier = Notifier()
        self.log_writer = RunLogWriter(database, self.notifier.notify)
        self.replica = replica
        self.stale_run_seconds = stale_run_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.scratch_root = scratch_root
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        # Of the runs executing, those rendering, pushing or registering take turns (Action.waits): a thread
        # more contending for the interpreter lock costs every other one its hand-offs, but adds no throughput.
        self.work_turns = threading.BoundedSemaphore(max_working_runs or max_concurrent_runs)
        self._local: dict[str, threading.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.log = get_logger(replica=self.replica)

    # -- validation ---------------------------------------------------------

    def action(self, action_id: str) -> Action[Any, Any]:
        action = self.actions.get(action_id)
        if action is None:
            raise not_found(f"no action {action_id!r}")
        return action

    def prepare(self, action_id: str, body: Any) -> PreparedRun:
        """Checks a request body fully, before anything is stored or started."""
        action = self.action(action_id)
        if not isinstance(body, dict):
            raise invalid_input("the body must be a JSON object", [FieldError("(body)", "must be an object")])
        unknown = sorted(set(body) - {"input", "dryRun", "secrets"})
        if unknown:
            raise invalid_input(
                f"unknown field(s): {some_of(unknown)}", [FieldError(name, "unknown field") for name in unknown]
            )
        raw_input = body.get("input", {})
        dry_run = body.get("dryRun", False)
        secrets = body.get("secrets", {})
        if not isinstance(dry_run, bool):
            raise invalid_input("dryRun must be a boolean", [FieldError("dryRun", "must be a boolean")])
        if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
            raise invalid_input(
                "secrets must map names to strings", [FieldError("secrets", "must map names to strings")]
            )
        _check_secret_sizes(secrets)
        if not isinstance(raw_input, dict):
            raise invalid_input("input must be an object", [FieldError("input", "must be an object")])
        try:
            params = action.input.model_validate(raw_input)
        except ValidationError as exc:
            raise invalid_input(
                f"invalid input for {action.id}", pydantic_field_errors(exc.errors(), "input")
            ) from None
        all_secrets = {**secrets, **_secret_fields(params)}
        if action.check is not None:
            action.check(params)
        digest = hashlib.sha256(
            json.dumps(
                {"action": action.id, "input": raw_input, "dryRun": dry_run, "secrets": secrets}, sort_keys=True
            ).encode()
        ).hexdigest()
        return PreparedRun(action, params, all_secrets, dry_run, digest)

    # -- submitting and waiting ---------------------------------------------

    async def submit(
        self, prepared: PreparedRun, caller: Caller, idempotency_key: str | None = None
    ) -> tuple[str, bool]:
        """Stores the run and starts it, or finds the run this key already made."""
        if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY):
            raise invalid_input(
                "Idempotency-Key must be 1 to 255 characters", [FieldError("Idempotency-Key", "bad length")]
            )
        await anyio.to_thread.run_sync(self._check_workspace, prepared, caller)
        redact = self.redactor.child(prepared.secrets.values())
        run_id = str(uuid.uuid4())
        scoped_key = (
            hashlib.sha256(f"{caller.name}\n{idempotency_key}".encode()).hexdigest() if idempotency_key else None
        )
        row = {
            "id": run_id,
            "action": prepared.action.id,
            "status": "queued",
            "dry_run": prepared.dry_run,
            "input": redact(prepared.params.model_dump(mode="json")),
            "idempotency_key": scoped_key,
            "request_hash": prepared.request_hash,
            "caller": caller.name,
            "team": caller.team,
            "replica": self.replica,
            "cancel_requested": False,
            "created_at": time.time(),
            "heartbeat_at": time.time(),
        }
        try:
            await anyio.to_thread.run_sync(self._insert, row)
        except IntegrityError:
            existing = await anyio.to_thread.run_sync(self._by_key, scoped_key)
            if existing is None:  # deleted between the two statements; treat as new
                raise PltfError("please retry the request", 503, "retry") from None
            if existing.request_hash != prepared.request_hash:
                raise PltfError(
                    "this Idempotency-Key was already used with a different request",
                    422,
                    "idempotency_key_reused",
                    [FieldError("Idempotency-Key", "reused with a different body")],
                ) from None
            self.log.info("idempotent replay", run_id=existing.id, action=prepared.action.id)
            return str(existing.id), False
        cancelled = threading.Event()
        self._local[run_id] = cancelled
        task = asyncio.create_task(self._execute(run_id, prepared, caller, cancelled))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run_id, True

    def _check_workspace(self, prepared: PreparedRun, caller: Caller) -> None:
        """An action that takes a `workspaceId` input may only be given a workspace the caller can see.

        Checked here, for every such action, because only the engine knows the caller before the run
        starts; another team's workspace reads exactly as a missing one.
        """
        workspace_id = getattr(prepared.params, "workspaceId", None)
        if not isinstance(workspace_id, str):
            return
        try:
            self.workspaces.info(workspace_id, caller)
        except PltfError:
            raise invalid_input(
                f"no workspace {workspace_id!r}", [FieldError("input.workspaceId", "no such workspace")]
            ) from None

    async def wait(self, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + max(0.0, timeout)
        with self.notifier.listen(run_id) as changed:
            while True:
                if run_id in self._local and deadline > time.monotonic():
                    # Running here: it notifies when it ends, so until then the database has no news to poll
                    # for (50 waiters polling a run with its log each were a fifth of a burst's CPU).
                    await wait_event(changed, deadline - time.monotonic())
                    continue
                run = await anyio.to_thread.run_sync(self.get, run_id)
                remaining = deadline - time.monotonic()
                if run["status"] in TERMINAL or remaining <= 0:
                    return run
                await wait_event(changed, min(remaining, POLL_SECONDS))

    async def drain(self) -> None:
        """Waits for the runs this process started (used by the in-process CLI and at shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- execution ----------------------------------------------------------

    async def _execute(self, run_id: str, prepared: PreparedRun, caller: Caller, cancelled: threading.Event) -> None:
        try:
            async with self._slots:
                await anyio.to_thread.run_sync(self._run_sync, run_id, prepared, caller, cancelled)
        finally:
            self._local.pop(run_id, None)
            self.notifier.notify(run_id)

    def _run_sync(self, run_id: str, prepared: PreparedRun, caller: Caller, cancelled: threading.Event) -> None:
        action = prepared.action
        redact = self.redactor.child(prepared.secrets.values())
        log = self.log.bind(run_id=run_id, action=action.id)
        sequence = iter(range(1, 1_000_000_000))

        def sink(level: str, message: str, fields: dict[str, Any]) -> None:
            message, fields = redact(message), redact(fields)
            row = {"run_id": run_id, "seq": next(sequence), "time": time.time(), "level": level, "step": logger.step}
            self.log_writer.append({**row, "message": message, "fields": fields})
            getattr(log, level)(message, **fields)

        logger = RunLogger(sink, cancelled)
        published: dict[str, Any] = {}

        def publish(name: str, value: Any) -> None:
            if name not in action.output.model_fields:
                raise ValueError(f"{action.id} declares no output {name!r}")
            published[name] = json.loads(json.dumps(value, default=str))
            # Written with the next batch of log lines, or at once for a reader of this process.
            self.log_writer.publish(run_id, redact(published))
            self.notifier.notify(run_id)

        def server_fault(code: str, what: str, exc: Exception) -> dict[str, Any]:
            """The run's error for a fault of the server's, not the caller's: a 500 naming the exception."""
            return {"code": code, "message": redact(f"{action.id} {what}: {type(exc).__name__}: {exc}"), "status": 500}

        started = time.time()
        output: Any = None
        error: dict[str, Any] | None = None
        if cancelled.is_set():
            status = "cancelled"
            error = {"code": "cancelled", "message": "the run was cancelled before it started", "status": 409}
        else:
            self._update(run_id, status="running", started_at=started, heartbeat_at=started)
            self.notifier.notify(run_id)
            try:
                with scratch_directory(self.scratch_root) as workspace:
                    context = RunContext(
                        run_id=run_id,
                        caller=caller,
                        logger=logger,
                        workspace=workspace,
                        secrets=prepared.secrets,
                        dry_run=prepared.dry_run,
                        cancelled=cancelled,
                        publish=publish,
                        actions=self.actions,
                        work_turns=self.work_turns if action.waits else None,
                    )
                    try:
                        sink("info", f"{action.id} started" + (" (dry run)" if prepared.dry_run else ""), {})
                        with turn_at_working(self.work_turns, action, cancelled):
                            result = action.handler(context, prepared.params)
                        output = redact({**published, **result.model_dump(mode="json", exclude_none=True)})
                        status = "succeeded"
                    except RunCancelled:
                        output = redact(published) or None
                        status = "cancelled"
                        error = {"code": "cancelled", "message": "the run was cancelled", "status": 409}
                    except PltfError as exc:
                        # What was published before the failure (a repository made, say) stays visible.
                        output = redact(published) or None
                        status = "failed"
                        error = redact(exc.to_json())
                    except Exception as exc:  # noqa: BLE001 - a handler bug must end the run, not the server
                        output = redact(published) or None
                        status = "failed"
                        error = server_fault("internal", "failed unexpectedly", exc)
                        log.error("handler crashed", traceback=redact(traceback.format_exc()))
                    if error is not None:
                        with contextlib.suppress(RunCancelled):
                            cancelled.clear()
                            sink("error", str(error["message"]), {"code": error["code"]})
                    else:
                        sink("info", f"{action.id} succeeded", {})
                    self.log_writer.flush(run_id)  # every line is written before the run is seen to end
            except Exception as exc:  # noqa: BLE001 - the workspace or the run log could not be written
                # Nothing else will end this run: it must not stay "running" for ever.
                output = redact(published) or None
                status = "failed"
                error = server_fault("storage", "could not write its workspace or log", exc)
                log.error("run storage failed", error=error["message"])
        finished = time.time()
        # Only from an unfinished state: if another replica already failed this
        # run as orphaned, that verdict has been reported and must stand.
        with self.database.begin() as conn:
            conn.execute(
                update(runs)
                .where(and_(runs.c.id == run_id, runs.c.status.in_(("queued", "running"))))
                .values(status=status, output=output, error=error, finished_at=finished)
            )
        self.metrics.observe(action.id, status, finished - started)
        log.info("run finished", status=status, seconds=round(finished - started, 3))

    # -- reading ------------------------------------------------------------

    def get(self, run_id: str, with_log: bool = True, viewer: Caller | None = None) -> dict[str, Any]:
        """The run; with a `viewer`, only if that caller may see it (404 otherwise, as for no run)."""
        self.log_writer.flush(run_id, reader=True)  # its lines and outputs are not kept from a reader
        with self.database.connect() as conn:
            row = conn.execute(only_visible(select(runs).where(runs.c.id == run_id), viewer)).first()
            if row is None:
                raise not_found(f"no run {run_id!r}")
            log = self._logs(conn, run_id, 0) if with_log else None
        return self._to_json(row, log)

    def list_runs(
        self,
        action: str | None,
        status: str | None,
        limit: int = 50,
        viewer: Caller | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """The newest runs `viewer` may see, `limit` at a time from `cursor` on."""
        query = only_visible(select(runs), viewer)
        if action:
            query = query.where(runs.c.action == action)
        if status:
            query = query.where(runs.c.status == status)
        shape = functools.partial(self._to_json, log=None)
        return newest_first_page(self.database.connect, query, runs, shape, cursor=cursor, limit=limit)

    def logs_after(self, run_id: str, after: int) -> list[dict[str, Any]]:
        self.log_writer.flush(run_id, reader=True)  # a line of this process's is not kept from its reader
        with self.database.connect() as conn:
            return self._logs(conn, run_id, after)

    async def events(
        self, run_id: str, after: int = 0, viewer: Caller | None = None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """("log", line) for each line after `after`, then ("completion", run)."""
        await anyio.to_thread.run_sync(self.get, run_id, False, viewer)  # 404 before the stream opens
        with self.notifier.listen(run_id) as changed:
            while True:
                lines = await anyio.to_thread.run_sync(self.logs_after, run_id, after)
                for line in lines:
                    after = line["seq"]
                    yield "log", line
                run = await anyio.to_thread.run_sync(self.get, run_id, False)
                if run["status"] in TERMINAL:
                    for line in await anyio.to_thread.run_sync(self.logs_after, run_id, after):
                        after = line["seq"]
                        yield "log", line
                    yield "completion", run
                    return
                await wait_event(changed, POLL_SECONDS)

    # -- cancelling, liveness and recovery ----------------------------------

    def cancel(self, run_id: str, viewer: Caller | None = None) -> dict[str, Any]:
        run = self.get(run_id, with_log=False, viewer=viewer)
        # Seeing a run is not enough to stop it: that takes the right to run its action.
        if viewer is not None and not viewer.may_run(run["action"]):
            raise PltfError(f"this token may not cancel a run of {run['action']}", 403, "forbidden")
        if run["status"] in TERMINAL:
            raise PltfError(f"run {run_id} has already {run['status']}", 409, "run_finished")
        self._update(run_id, cancel_requested=True)
        local = self._local.get(run_id)
        if local is not None:
            local.set()
        return self.get(run_id, with_log=False)

    def beat(self) -> None:
        """Marks this replica's runs alive, and passes on cancels asked of other replicas."""
        local = dict(self._local)
        if not local:
            return
        with self.database.begin() as conn:
            conn.execute(update(runs).where(runs.c.id.in_(list(local))).values(heartbeat_at=time.time()))
            asked = conn.execute(
                select(runs.c.id).where(and_(runs.c.id.in_(list(local)), runs.c.cancel_requested.is_(True)))
            ).scalars()
            for run_id in asked:
                local[run_id].set()

    def recover(self, startup: bool) -> list[str]:
        """Fails runs that can no longer finish.

        At start-up that includes this replica's own unfinished runs; at any time,
        the runs of a replica that stopped beating.
        """
        now = time.time()
        stale = now - self.stale_run_seconds
        unfinished = runs.c.status.in_(("queued", "running"))
        orphaned = func.coalesce(runs.c.heartbeat_at, runs.c.created_at) < stale
        condition = or_(orphaned, runs.c.replica == self.replica) if startup else orphaned
        if not startup:
            condition = and_(condition, runs.c.id.not_in(list(self._local) or [""]))
        reason = (
            "the server restarted while this run was in progress, so it was stopped; run it again"
            if startup
            else "the replica running this run stopped responding, so it was stopped; run it again"
        )
        with self.database.begin() as conn:
            victims = list(conn.execute(select(runs.c.id).where(and_(unfinished, condition))).scalars())
            for run_id in victims:
                claimed = conn.execute(
                    update(runs)
                    .where(and_(runs.c.id == run_id, unfinished))
                    .values(
                        status="failed",
                        finished_at=now,
                        error={"code": "interrupted", "message": reason, "status": 500},
                    )
                ).rowcount
                if claimed:
                    last = conn.execute(select(func.max(run_logs.c.seq)).where(run_logs.c.run_id == run_id)).scalar()
                    conn.execute(
                        insert(run_logs).values(
                            run_id=run_id, seq=(last or 0) + 1, time=now, level="error", message=reason, fields={}
                        )
                    )
        for run_id in victims:
            self.log.warning("run interrupted", run_id=run_id, reason=reason)
            self.notifier.notify(run_id)
        return victims

    async def keep_alive(self) -> None:
        interval = self.heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(self.beat)
                await anyio.to_thread.run_sync(self.recover, False)
            except Exception:  # noqa: BLE001 - a database blip must not stop the heartbeat
                self.log.exception("heartbeat failed")

    # -- storage helpers ----------------------------------------------------

    def _insert(self, row: dict[str, Any]) -> None:
        with self.database.begin() as conn:
            conn.execute(insert(runs).values(**row))

    def _by_key(self, key: str | None) -> Any:
        with self.database.connect() as conn:
            return conn.execute(select(runs.c.id, runs.c.request_hash).where(runs.c.idempotency_key == key)).first()

    def _update(self, run_id: str, **values: Any) -> None:
        with self.database.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    @staticmethod
    def _logs(conn: Any, run_id: str, after: int) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(run_logs).where(and_(run_logs.c.run_id == run_id, run_logs.c.seq > after)).order_by(run_logs.c.seq)
        )
        return [
            {
                "seq": row.seq,
                "time": iso(row.time),
                "level": row.level,
                "message": row.message,
                **({"step": row.step} if row.step else {}),
                **({"fields": row.fields} if row.fields else {}),
            }
            for row in rows
        ]

    @staticmethod
    def _to_json(row: Any, log: list[dict[str, Any]] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": row.id,
            "action": row.action,
            "status": row.status,
            "dryRun": row.dry_run,
            "input": row.input,
            "output": row.output,
            "error": row.error,
            "caller": row.caller,
            "team": row.team,
            "createdAt": iso(row.created_at),
            "startedAt": iso(row.started_at),
            "finishedAt": iso(row.finished_at),
        }
        if log is not None:
            body["log"] = log
        return body


def _check_secret_sizes(secrets: dict[str, str]) -> None:
    if len(secrets) > MAX_SECRETS:
        raise invalid_input(
            f"secrets has {len(secrets)} entries; the limit is {MAX_SECRETS}",
            [FieldError("secrets", f"at most {MAX_SECRETS} entries")],
        )
    for name, value in secrets.items():
        if len(name) > MAX_SECRET_NAME_LENGTH or len(value) > MAX_SECRET_LENGTH:
            raise invalid_input(
                f"secret {name[:MAX_SECRET_NAME_LENGTH]!r} is too long",
                [
                    FieldError(
                        "secrets",
                        f"names up to {MAX_SECRET_NAME_LENGTH} characters, values up to {MAX_SECRET_LENGTH}",
                    )
                ],
            )


def _secret_fields(model: BaseModel) -> dict[str, str]:
    """Values of `SecretStr` fields: an action marks an input as a secret by its type."""
    found: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, SecretStr):
            found[path] = value.get_secret_value()
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for n, item in enumerate(value):
                walk(item, f"{path}.{n}")

    walk(model, "")
    return found
