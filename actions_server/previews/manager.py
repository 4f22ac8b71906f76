"""The preview manager: one row per preview, idempotency, the cap, TTLs, readiness, the reaper.

A preview is named `<service>` or `<service>-pr-<n>` (its clean URL's host
label). While it is active (starting or ready) that name is held in a unique
column, so the same request twice, concurrently or on two replicas, finds the
one environment instead of making a second; a different request for a name in
use is a 409. The cap on active previews is checked under the same lock; past
it the answer is a 429. Failed, destroyed and expired previews free their name
and keep their row (with the service's last log lines), so they can be shown.

The local provider's processes live on the replica that started them: that
replica supervises them (restart on a crash), reaps them at their TTL, and on
start-up adopts those still answering `/readyz` and cleans up the rest.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..auth import Caller
from ..config import Settings
from ..cursors import Page, newest_first_page
from ..db import DNS_LABEL, GROUP_REF, REPLICA_ID, UUID_TEXT, from_row, metadata, run_logs, runs, time_column
from ..errors import PltfError, conflict, not_found
from ..events import EventBus
from ..logs import get_logger
from ..redact import Redactor
from ..visibility import only_visible
from .base import Log, Placement, PreviewProvider, PreviewSpec, Probe

ACTIVE = ("starting", "ready")
FINISHED = ("failed", "destroyed", "expired")
STATUSES = (*ACTIVE, *FINISHED)
POLL_SECONDS = 0.1
RUN_TERMINAL = ("succeeded", "failed", "cancelled")

previews_table = Table(
    "previews",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", DNS_LABEL, nullable=False),
    # The name while the preview is active, NULL after: unique, so one environment per name.
    Column("active_name", DNS_LABEL, unique=True),
    Column("namespace", DNS_LABEL, nullable=False),
    Column("service", DNS_LABEL, nullable=False),
    Column("provider", String(20), nullable=False),
    Column("repo_url", String(500), nullable=False),
    Column("ref", String(200)),
    Column("pull_request", Integer),
    Column("owner", GROUP_REF, nullable=False),
    Column("experiment", DNS_LABEL),
    Column("status", String(16), nullable=False),
    Column("detail", Text),
    Column("logs", JSON),
    Column("url", String(500), nullable=False),
    Column("placement", JSON),
    Column("replica", REPLICA_ID, nullable=False),
    Column("run_id", UUID_TEXT),
    Column("ttl_seconds", Integer, nullable=False),
    time_column("created_at"),
    time_column("ready_at", nullable=True),
    time_column("expires_at"),
    time_column("finished_at", nullable=True),
    Index("ix_previews_status", "status"),
)


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PreviewRequest:
    service: str
    repo_url: str
    ref: str | None = None
    pull_request: int | None = None
    ttl_seconds: int | None = None
    owner: str = "unknown"
    experiment: str | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-pr-{self.pull_request}" if self.pull_request is not None else self.service

    @property
    def namespace(self) -> str:
        return f"{self.service}-pr-{self.pull_request}" if self.pull_request is not None else f"{self.service}-preview"


class PreviewFailed(PltfError):
    pass


class PreviewManager:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        redactor: Redactor,
        provider: PreviewProvider,
        events: EventBus | None = None,
    ) -> None:
        self.settings = settings
        # The portal learns of previews from here (it probes a preview from the moment it is ready).
        self.events = events or EventBus()
        self.engine = engine
        self.redactor = redactor
        self.provider = provider
        # Rows are owned by the provider's owner (for local previews: this host and preview directory,
        # so the server adopts what `pltf create` made in-process on the same data dir).
        self.replica = provider.owner_key or settings.server.replica
        self._reserve_lock = threading.Lock()
        # Previews a handler of this process is creating or waiting on: the reaper leaves them be.
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        # One lock per preview, so the reaper never restarts a service that destroy is stopping.
        self._guards: dict[str, threading.Lock] = {}
        self.log = get_logger(component="previews", replica=self.replica)

    # -- names and URLs -----------------------------------------------------

    def url_for(self, name: str) -> str:
        if self.provider.name == "kubernetes":
            return f"https://{name}.{self.settings.previews.preview_domain}/"
        public = urlsplit(self.settings.server.base_url)
        port = f":{public.port}" if public.port else ""
        return f"{public.scheme}://{name}.{self.settings.previews.preview_domain}{port}/"

    def path_url_for(self, name: str) -> str:
        return f"{self.settings.server.base_url}/previews/{name}/"

    # -- creating -----------------------------------------------------------

    def create(self, request: PreviewRequest, run_id: str | None, log: Log, deadline: float) -> dict[str, Any]:
        """Creates the preview (or finds the same one) and waits for readiness until `deadline` (monotonic).

        Returns the preview with status `ready`, or `starting` when the deadline came first
        (readiness is then watched in the background). Raises a 502/504 `PltfError` with the
        service's last log lines when it fails.
        """
        row, created = self._reserve(request, run_id)
        preview_id = row["id"]
        if not created:
            log(f"preview {row['name']} exists already ({row['status']}, id {preview_id}); not making another")
            return self._await(preview_id, deadline, log)
        self._mark_busy(preview_id, True)
        try:
            spec = self._spec(row)
            log(f"creating preview {spec.name} ({self.provider.name}) for {spec.repo_url}")
            try:
                placement = self.provider.create(spec, log)
            except BaseException as exc:
                message = exc.message if isinstance(exc, PltfError) else f"{type(exc).__name__}: {exc}"
                self._finish(preview_id, "failed", detail=self.redactor(message))
                raise
            with self.engine.begin() as conn:
                still = conn.execute(
                    update(previews_table)
                    .where(and_(previews_table.c.id == preview_id, previews_table.c.status == "starting"))
                    .values(placement=placement.to_json())
                ).rowcount
            if not still:  # destroyed while it was being made
                self.provider.destroy(spec, placement, log)
                raise conflict(f"preview {spec.name} was destroyed while it was being created")
            return self._await(preview_id, deadline, log)
        finally:
            self._mark_busy(preview_id, False)

    def _reserve(self, request: PreviewRequest, run_id: str | None) -> tuple[dict[str, Any], bool]:
        settings = self.settings
        ttl = request.ttl_seconds or settings.previews.preview_ttl_seconds
        now = time.time()
        preview_id = f"pv-{uuid.uuid4().hex[:16]}"
        row: dict[str, Any] = {
            "id": preview_id,
            "name": request.name,
            "active_name": request.name,
            "namespace": request.namespace,
            "service": request.service,
            "provider": self.provider.name,
            "repo_url": request.repo_url,
            "ref": request.ref,
            "pull_request": request.pull_request,
            "owner": request.owner,
            "experiment": request.experiment,
            "status": "starting",
            "url": self.url_for(request.name),
            "placement": None,
            "replica": self.replica,
            "run_id": run_id,
            "ttl_seconds": ttl,
            "created_at": now,
            "expires_at": now + ttl,
        }
        with self._reserve_lock:
            for _ in range(3):
                existing = self._active(request.name)
                if existing is not None:
                    return self._same_or_conflict(existing, request), False
                try:
                    with self.engine.begin() as conn:
                        active = conn.execute(
                            select(func.count())
                            .select_from(previews_table)
                            .where(previews_table.c.active_name.is_not(None))
                        ).scalar_one()
                        if active >= settings.previews.preview_max_active:
                            raise PltfError(
                                f"there are already {active} active previews "
                                f"(the limit is {settings.previews.preview_max_active}); "
                                "destroy one (pltf previews list / destroy) or wait for one to expire",
                                429,
                                "too_many_previews",
                            )
                        conn.execute(insert(previews_table).values(**row))
                except IntegrityError:
                    continue  # another replica took the name between our read and our insert
                return self._row(preview_id), True
        raise PltfError("please retry the request", 503, "retry")

    def _same_or_conflict(self, existing: dict[str, Any], request: PreviewRequest) -> dict[str, Any]:
        if (existing["repo_url"], existing["ref"], existing["pull_request"]) != (
            request.repo_url,
            request.ref,
            request.pull_request,
        ):
            what = existing["repo_url"] + (f"@{existing['ref']}" if existing["ref"] else "")
            raise conflict(
                f"preview {existing['name']} already runs {what} (id {existing['id']}); destroy it first "
                "or preview a pull request (pullRequest) to get a name of its own"
            )
        return existing

    def _await(self, preview_id: str, deadline: float, log: Log) -> dict[str, Any]:
        self._mark_busy(preview_id, True)
        try:
            waiting_logged = False
            while True:
                row = self._row(preview_id)
                status = row["status"]
                if status == "ready":
                    log(f"preview ready at {row['url']}")
                    return self.to_json(row)
                if status in FINISHED:
                    raise self._failure(row)
                if row["placement"] is not None and row["replica"] == self.replica:
                    self._check_starting(row, log)
                    row = self._row(preview_id)
                    if row["status"] != "starting":
                        continue
                if time.monotonic() >= deadline:
                    log(f"preview is still starting; readiness will show at /v1/previews/{preview_id} and on this run")
                    self._watch(preview_id)
                    return self.to_json(row)
                if not waiting_logged and row["placement"] is not None:
                    log("waiting for /readyz to answer 200")
                    waiting_logged = True
                time.sleep(POLL_SECONDS)
        finally:
            self._mark_busy(preview_id, False)

    def _check_starting(self, row: dict[str, Any], log: Log | None = None) -> None:
        """Probes a starting preview; marks it ready, or failed (and cleans it up) on exit or timeout."""
        with self._guard(row["id"]):
            current = self._row(row["id"])
            if current["status"] != "starting" or current["placement"] != row["placement"]:
                return  # destroyed, restarted or decided meanwhile
            spec, placement = self._spec(row), Placement.from_json(row["placement"])
            probe = self.provider.probe(spec, placement)
            if probe.status == "ready":
                self._mark_ready(row)
                return
            timeout = self.settings.previews.preview_ready_timeout_seconds
            started = float(placement.state.get("startedAt", row["created_at"]))
            if probe.status == "starting" and time.time() - started < timeout:
                return
            if probe.status == "starting":
                probe = Probe(
                    "failed",
                    f"/readyz did not answer 200 within {timeout:g} s ({probe.detail})",
                    probe.logs or self._logs(spec, placement),
                )
            self.provider.destroy(spec, placement, log or (lambda _: None))
            self._finish(row["id"], "failed", detail=probe.detail, logs=probe.logs)
        self._note_on_run(row, f"preview {row['name']} failed: {probe.detail}", "failed")

    def _logs(self, spec: PreviewSpec, placement: Placement) -> list[str]:
        return self.provider.logs(spec, placement)

    def _failure(self, row: dict[str, Any]) -> PltfError:
        detail = row["detail"] or row["status"]
        lines = row["logs"] or []
        message = f"preview {row['name']} {row['status']}: {detail}"
        if lines:
            message += "\nlast lines of the service's log:\n" + "\n".join(lines)
        status = 504 if "did not answer" in detail else 502
        if row["status"] != "failed":
            status = 409
        return PreviewFailed(message, status, "preview_failed" if status != 409 else "preview_gone")

    def _watch(self, preview_id: str) -> None:
        """Watches a starting preview until it is ready or failed (the run has answered already)."""

        def watch() -> None:
            while True:
                try:
                    row = self._row(preview_id)
                    if row["status"] != "starting" or row["replica"] != self.replica:
                        return
                    with self._busy_lock:
                        busy = preview_id in self._busy
                    if not busy and row["placement"] is not None:
                        self._check_starting(row)
                except Exception:  # noqa: BLE001 - the reaper picks it up next time
                    self.log.exception("watching a preview failed", preview_id=preview_id)
                    return
                time.sleep(POLL_SECONDS * 2)

        threading.Thread(target=watch, name=f"preview-watch-{preview_id}", daemon=True).start()

    # -- destroying ---------------------------------------------------------

    def destroy(self, key: str, log: Log, reason: str = "destroyed", viewer: Caller | None = None) -> dict[str, Any]:
        with self._guard(self._find(key, viewer)["id"]):
            row = self._find(key, viewer)
            if row["status"] in FINISHED:
                log(f"preview {row['name']} is already {row['status']}")
                return self.to_json(row)
            spec = self._spec(row)
            # The row is finished first: from then on no replica's supervisor restarts it, and the
            # placement read back is the last one (a restart a moment ago included).
            self._finish(row["id"], reason, detail=None if reason == "destroyed" else "its TTL ran out")
            row = self._row(row["id"])
            if row["placement"] is not None:
                log(f"destroying preview {row['name']} ({row['provider']})")
                self.provider.destroy(spec, Placement.from_json(row["placement"]), log)
        log(f"preview {row['name']} {reason}; {row['url']} no longer answers")
        return self.to_json(self._row(row["id"]))

    # -- reading ------------------------------------------------------------

    def get(self, key: str, viewer: Caller | None = None) -> dict[str, Any]:
        row = self._find(key, viewer)
        body = self.to_json(row)
        if row["status"] in ACTIVE and row["placement"] is not None and row["provider"] == self.provider.name:
            body["logTail"] = self.provider.logs(self._spec(row), Placement.from_json(row["placement"]))
        return body

    def list_previews(
        self,
        status: str | None = None,
        service: str | None = None,
        limit: int = 200,
        viewer: Caller | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """The newest previews `viewer` may see, `limit` at a time from `cursor` on."""
        query = _visible(viewer)
        if status == "active":
            query = query.where(previews_table.c.status.in_(ACTIVE))
        elif status:
            query = query.where(previews_table.c.status == status)
        if service:
            query = query.where(previews_table.c.service == service)
        return newest_first_page(
            self.engine.connect,
            query,
            previews_table,
            lambda row: self.to_json(dict(row._mapping)),
            cursor=cursor,
            limit=limit,
        )

    def route(self, key: str, by_id: bool = False) -> tuple[str, str | None] | None:
        """(status, upstream) of the active preview named `key` (or with that id); None when there is none."""
        column = previews_table.c.id if by_id else previews_table.c.active_name
        with self.engine.connect() as conn:
            row = conn.execute(
                select(previews_table.c.status, previews_table.c.placement).where(
                    and_(column == key, previews_table.c.status.in_(ACTIVE))
                )
            ).first()
        if row is None:
            return None
        return str(row.status), Placement.from_json(row.placement).upstream

    def to_json(self, row: dict[str, Any]) -> dict[str, Any]:
        placement = Placement.from_json(row["placement"])
        return {
            "id": row["id"],
            "name": row["name"],
            "service": row["service"],
            "status": row["status"],
            "detail": row["detail"],
            "provider": row["provider"],
            "previewUrl": row["url"],
            "pathUrl": self.path_url_for(row["name"]) if row["provider"] == "local" else None,
            "namespace": row["namespace"],
            "repoUrl": row["repo_url"],
            "ref": row["ref"],
            "pullRequest": row["pull_request"],
            "commit": placement.state.get("commit"),
            "owner": row["owner"],
            "experiment": row["experiment"],
            "runId": row["run_id"],
            "replica": row["replica"],
            "ttlSeconds": row["ttl_seconds"],
            "createdAt": iso(row["created_at"]),
            "readyAt": iso(row["ready_at"]),
            "expiresAt": iso(row["expires_at"]),
            "finishedAt": iso(row["finished_at"]),
            **({"logs": row["logs"]} if row["logs"] else {}),
        }

    # -- lifecycle: reaper, supervision, adoption ---------------------------

    def reap(self, log: Log | None = None) -> list[str]:
        """Destroys expired previews, supervises running ones, and watches starting ones; returns what it removed."""
        log = log or (lambda message: self.log.info(message))
        removed = []
        now = time.time()
        for row in self._owned_active():
            with self._busy_lock:
                busy = row["id"] in self._busy
            try:
                if row["expires_at"] <= now:
                    self.destroy(row["id"], log, reason="expired")
                    self._note_on_run(row, f"preview {row['name']} expired (TTL {row['ttl_seconds']} s)", "expired")
                    removed.append(row["id"])
                elif busy:
                    continue
                elif row["placement"] is None:
                    limit = (
                        self.settings.previews.preview_ready_timeout_seconds
                        + self.settings.previews.preview_install_timeout_seconds
                    )
                    if self._run_finished(row["run_id"]) or now - row["created_at"] > limit:
                        self._finish(row["id"], "failed", detail="its creation was interrupted")
                        removed.append(row["id"])
                elif row["status"] == "starting":
                    self._check_starting(row, log)
                elif not self.provider.alive(self._spec(row), Placement.from_json(row["placement"])):
                    self._supervise(row, log)
            except Exception:  # noqa: BLE001 - one bad preview must not stop the reaper
                self.log.exception("reaping a preview failed", preview_id=row["id"])
        return removed

    def _supervise(self, row: dict[str, Any], log: Log) -> None:
        with self._guard(row["id"]):
            current = self._row(row["id"])
            spec, placement = self._spec(row), Placement.from_json(row["placement"])
            if current["status"] != "ready" or current["placement"] != row["placement"]:
                return  # destroyed or restarted meanwhile
            if self.provider.alive(spec, placement):
                return
            logs = self._logs(spec, placement)
            restarted = self.provider.restart(spec, placement, log)
            if restarted is not None:
                log(f"preview {row['name']} exited; restarted it ({restarted.state.get('restarts')} restarts)")
                with self.engine.begin() as conn:
                    kept = conn.execute(
                        update(previews_table)
                        .where(and_(previews_table.c.id == row["id"], previews_table.c.status == "ready"))
                        .values(status="starting", placement=restarted.to_json())
                    ).rowcount
                if not kept:  # destroyed meanwhile (perhaps by another replica): undo the restart
                    self.provider.destroy(spec, restarted, log)
                return
            self.provider.destroy(spec, placement, log)
            self._finish(row["id"], "failed", detail="the service exited and was not restarted", logs=logs)
        self._note_on_run(row, f"preview {row['name']} failed: the service exited", "failed")

    def adopt(self, log: Log | None = None) -> tuple[list[str], list[str]]:
        """At start-up: adopts the previews still answering /readyz, cleans up the rest.

        A preview still starting is left to the reaper (ready, or failed at its timeout); one whose
        creation was cut short (its run ended without it) is failed and its leftovers swept.
        """
        log = log or (lambda message: self.log.info(message))
        adopted, cleaned = [], []
        for row in self._owned_active():
            spec = self._spec(row)
            placement = Placement.from_json(row["placement"])
            if row["placement"] is None:
                if self._run_finished(row["run_id"]):
                    self._finish(row["id"], "failed", detail="its creation was interrupted by a restart")
                    cleaned.append(row["id"])
                continue
            alive = self.provider.alive(spec, placement)
            probe = self.provider.probe(spec, placement) if alive else None
            if probe is not None and probe.status == "ready":
                if row["status"] != "ready":
                    self._mark_ready(row)
                adopted.append(row["id"])
                log(f"adopted preview {row['name']} (still answering at {row['url']})")
                continue
            if probe is not None and probe.status == "starting" and row["status"] == "starting":
                continue  # the reaper sees it ready, or fails it at its timeout
            logs = probe.logs if probe is not None else self._logs(spec, placement)
            self.provider.destroy(spec, placement, log)
            self._finish(
                row["id"],
                "failed",
                detail="the server restarted and the preview was not answering /readyz, so it was stopped and cleaned up",
                logs=logs,
            )
            self._note_on_run(row, f"preview {row['name']} was cleaned up after a restart", "failed")
            cleaned.append(row["id"])
            log(f"cleaned up preview {row['name']} (not answering after the restart)")
        keep = {row["id"] for row in self._owned_active()}
        cleaned += self.provider.sweep(keep, log)
        return adopted, cleaned

    def _run_finished(self, run_id: str | None) -> bool:
        if run_id is None:
            return True
        with self.engine.connect() as conn:
            status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
        return status is None or status in RUN_TERMINAL

    def gc(self, log: Log | None = None) -> list[str]:
        """`pltf previews gc`: the reaper's pass, plus leftovers no active preview owns."""
        log = log or (lambda message: self.log.info(message))
        removed = self.reap(log)
        keep = {row["id"] for row in self._owned_active()}
        removed += self.provider.sweep(keep, log)
        return removed

    # -- storage helpers ----------------------------------------------------

    def _owned_active(self) -> list[dict[str, Any]]:
        query = select(previews_table).where(previews_table.c.status.in_(ACTIVE))
        if self.provider.name == "local":
            # Processes live on the replica that started them; only it can stop or adopt them.
            query = query.where(previews_table.c.replica == self.replica)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def _active(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(previews_table).where(previews_table.c.active_name == name)).first()
        return dict(row._mapping) if row is not None else None

    def _row(self, preview_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(previews_table).where(previews_table.c.id == preview_id)).first()
        if row is None:
            raise not_found(f"no preview {preview_id!r}")
        return dict(row._mapping)

    def _find(self, key: str, viewer: Caller | None = None) -> dict[str, Any]:
        """By id, else the active preview of that name, else the latest of that name."""
        visible = _visible(viewer)
        with self.engine.connect() as conn:
            row = conn.execute(visible.where(previews_table.c.id == key)).first()
            if row is None:
                row = conn.execute(
                    visible.where(previews_table.c.name == key)
                    .order_by(previews_table.c.active_name.is_(None), previews_table.c.created_at.desc())
                    .limit(1)
                ).first()
        if row is None:
            raise not_found(f"no preview {key!r}")
        return dict(row._mapping)

    def _spec(self, row: dict[str, Any]) -> PreviewSpec:
        labels = {
            "pltf.dev/owner": _label(row["owner"].split("/")[-1].split(":")[-1]),
            "pltf.dev/service": row["service"],
            "pltf.dev/environment": "preview",
            "pltf.dev/ttl": f"{row['ttl_seconds']}s",
            "pltf.dev/expires": str(int(row["expires_at"])),
            "pltf.dev/experiment": _label(row["experiment"] or "none"),
            "pltf.dev/preview-id": row["id"],
            "app.kubernetes.io/managed-by": "pltf",
        }
        return from_row(PreviewSpec, row, labels=labels)

    def _mark_ready(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(previews_table)
                .where(and_(previews_table.c.id == row["id"], previews_table.c.status == "starting"))
                .values(status="ready", ready_at=time.time(), detail=None)
            ).rowcount
        if changed:
            self.log.info("preview ready", preview_id=row["id"], name=row["name"])
            self._publish("preview.deployed", row)
            self._note_on_run(row, f"preview {row['name']} is ready at {row['url']}", "ready")

    def _publish(self, kind: str, row: dict[str, Any]) -> None:
        now = time.time()
        self.events.publish(
            kind,
            {
                "service": row["service"],
                "previewId": row["id"],
                "url": row["url"],
                "environment": "preview",
                "timestamp": iso(now),
                "deliveryId": f"{kind}:{row['id']}",
            },
        )

    def _finish(self, preview_id: str, status: str, detail: str | None = None, logs: list[str] | None = None) -> None:
        values: dict[str, Any] = {"status": status, "active_name": None, "finished_at": time.time(), "detail": detail}
        if logs is not None:
            values["logs"] = [self.redactor(line) for line in logs]
        with self.engine.begin() as conn:
            finished = conn.execute(
                update(previews_table)
                .where(and_(previews_table.c.id == preview_id, previews_table.c.status.in_(ACTIVE)))
                .values(**values)
            ).rowcount
        if finished:
            self._publish("preview.destroyed", self._row(preview_id))

    def _note_on_run(self, row: dict[str, Any], message: str, status: str) -> None:
        """After its run has answered, a preview's readiness (or failure) shows on that run too."""
        run_id = row.get("run_id")
        if not run_id:
            return
        with self.engine.begin() as conn:
            run = conn.execute(select(runs.c.status, runs.c.output).where(runs.c.id == run_id)).first()
            if run is None or run.status not in RUN_TERMINAL:
                return  # still running: the handler reports it itself
            last = conn.execute(select(func.max(run_logs.c.seq)).where(run_logs.c.run_id == run_id)).scalar()
            conn.execute(
                insert(run_logs).values(
                    run_id=run_id,
                    seq=(last or 0) + 1,
                    time=time.time(),
                    level="error" if status == "failed" else "info",
                    step="preview",
                    message=message,
                    fields={"previewId": row["id"], "status": status},
                )
            )
            output = dict(run.output) if isinstance(run.output, dict) else None
            if output is not None:
                if output.get("previewId") == row["id"]:
                    output["status"] = status
                elif output.get("previewUrl") == row["url"] and "previewStatus" in output:
                    output["previewStatus"] = status
                else:
                    return
                conn.execute(update(runs).where(runs.c.id == run_id).values(output=output))

    def _guard(self, preview_id: str) -> threading.Lock:
        with self._busy_lock:
            return self._guards.setdefault(preview_id, threading.Lock())

    def _mark_busy(self, preview_id: str, busy: bool) -> None:
        with self._busy_lock:
            if busy:
                self._busy.add(preview_id)
            else:
                self._busy.discard(preview_id)


def _visible(viewer: Caller | None) -> Select[Any]:
    """The previews `viewer` may see: those made by runs it may see (visibility.py); all without one."""
    return only_visible(select(previews_table), viewer, previews_table.c.run_id)


def _label(value: str) -> str:
    """A Kubernetes label value: at most 63 characters of [-A-Za-z0-9_.], alphanumeric at the ends."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in value)[:63].strip("-_.")
    return cleaned or "none"


async def preview_loop(manager: PreviewManager, reap_seconds: float) -> None:
    """The server's: adopts or cleans up the previews a previous run of it left, then reaps periodically."""
    log = get_logger(component="previews", replica=manager.replica)
    try:
        adopted, cleaned = await anyio.to_thread.run_sync(manager.adopt)
        if adopted or cleaned:
            log.info("previews recovered", adopted=len(adopted), cleaned=len(cleaned))
    except Exception:  # noqa: BLE001 - the reaper below retries what it can
        log.exception("adopting previews failed")
    while True:
        await asyncio.sleep(reap_seconds)
        try:
            await anyio.to_thread.run_sync(manager.reap)
        except Exception:  # noqa: BLE001 - a database blip must not stop the reaper
            log.exception("reaping previews failed")
