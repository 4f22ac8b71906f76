"""The HTTP API (v1). HTTP only: every decision is made in the run engine and the services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import anyio
import structlog
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .access import Authed
from .auth import load_tokens, read_generated_token
from .backstage_actions import backstage_actions_router
from .catalog.api import catalog_api
from .catalog.pages import catalog_pages
from .config import Settings
from .errors import FieldError, PltfError, invalid_input, pydantic_field_errors
from .forges.git_http import git_routes
from .logs import configure_logging, get_logger
from .metrics import Metrics
from .portal.routes import portal_router
from .previews.api import PreviewRouter, preview_loop, preview_routes
from .redact import Redactor
from .runs import STATUSES, TERMINAL, RunEngine
from .sandbox import sandbox_summary
from .services import Services
from .storage import storage_problem
from .templates import find_template_or_404

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
MAX_WAIT_SECONDS = 600.0
# Log sequence numbers are stored as 64-bit integers; a larger id can only be hostile.
EVENT_ID = re.compile(r"[0-9]{1,19}")
MAX_EVENT_ID = 2**63 - 1
# Parsers recurse per level; real documents (catalog entities, webhooks) stay far below this.
MAX_JSON_DEPTH = 64
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
OPENERS = frozenset(b"[{")
STORAGE_PROBE_SECONDS = 1.0
RUN_BODY_SCHEMA = {
    "type": "object",
    "properties": {
        "input": {"type": "object", "description": "The action's input; see GET /v1/actions/{id}."},
        "dryRun": {"type": "boolean", "default": False},
        "secrets": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Redacted everywhere.",
        },
    },
    "additionalProperties": False,
}


def error_response(error: PltfError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error.to_json()}, status_code=error.status, headers=headers)


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`, found without recursing."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for byte in JSON_STRING.sub(b"", body).translate(None, NOT_BRACKETS):
        depth += 1 if byte in OPENERS else -1
        if depth > limit:
            return True
    return False


class RequestContextMiddleware:
    """Request ids, access logs, request metrics and the bounds on request bodies.

    The size limit answers 413 only after reading the whole body, because a
    server that replies and closes mid-upload makes clients see a reset
    connection instead of the error. A body that stalls, or trickles in slower
    than `min_body_bytes_per_second` allows, gets 408 (the headers' bound is in
    http_timeouts, below the ASGI layer), and JSON nested too deep
    for the parsers gets 422.
    """

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        receive = self._bounded_wait(receive)
        try:
            if scope["method"] in ("POST", "PUT", "PATCH") and not scope["path"].startswith("/git/"):
                limited = await self._limited(receive, send_with_id)
                if limited is None:
                    return
                receive = limited
            await self.app(scope, receive, send_with_id)
        finally:
            status = status_holder["status"]
            self.metrics.requests.labels(scope["method"], str(status)).inc()
            if scope["path"] not in ("/healthz", "/readyz", "/metrics"):
                get_logger().info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
            structlog.contextvars.unbind_contextvars("request_id")

    def _bounded_wait(self, receive: Receive) -> Receive:
        """`receive`, raising a 408 PltfError when the client sends no body for too long."""
        seconds = self.settings.body_timeout_seconds
        body_done = False

        async def bounded() -> Message:
            nonlocal body_done
            if body_done:  # later calls wait for a disconnect (streams do), which may take for ever
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), seconds)
            except TimeoutError:
                raise PltfError(f"no part of the request body arrived for {seconds:g} s", 408, "body_timeout") from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return bounded

    async def _limited(self, receive: Receive, send: Send) -> Receive | None:
        limit = self.settings.max_body_bytes
        # The gap bound alone lets a byte every few seconds hold the connection for ever.
        allowed = self.settings.body_timeout_seconds + limit / self.settings.min_body_bytes_per_second
        deadline = time.monotonic() + allowed
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except (PltfError, TimeoutError) as exc:
                error = (
                    exc
                    if isinstance(exc, PltfError)
                    else PltfError(f"the request body did not arrive within {allowed:g} s", 408, "body_timeout")
                )
                await error_response(error, {"Connection": "close"})({"type": "http"}, receive, send)
                return None
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            if size <= limit:
                chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if size > limit:
            error = PltfError(f"the request body is {size} bytes; the limit is {limit}", 413, "body_too_large")
            response = error_response(error)
            await response({"type": "http"}, receive, send)
            return None
        body = b"".join(chunks)
        if json_too_deep(body, MAX_JSON_DEPTH):
            error = invalid_input(
                f"the body nests deeper than {MAX_JSON_DEPTH} levels",
                [FieldError("(body)", f"at most {MAX_JSON_DEPTH} levels of arrays and objects")],
            )
            await error_response(error)({"type": "http"}, receive, send)
            return None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    redactor = Redactor()
    if settings.api_token is not None:
        redactor.add([settings.api_token.get_secret_value()])
    configure_logging(redactor, settings.log_level)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.create(settings, redactor)
        tokens, generated = load_tokens(settings)
        if generated is not None:  # the local token is as secret as a configured one
            redactor.add([read_generated_token(generated) or ""])
        engine = RunEngine(services, metrics)
        interrupted = await anyio.to_thread.run_sync(engine.recover, True)
        # Probed once, here: which isolation hooks and previews get (or why they will be refused).
        sandbox = await anyio.to_thread.run_sync(sandbox_summary, settings)
        state.update(services=services, engine=engine)
        app.state.tokens = tokens
        app.state.services = services
        log = get_logger(replica=engine.replica)
        log.info(
            "pltf started",
            url=settings.base_url,
            data_dir=str(settings.data_dir),
            database=settings.resolved_database_url.split("://", 1)[0],
            token_file=str(generated) if generated else None,
            interrupted_runs=len(interrupted),
            **sandbox,
        )
        keep_alive = asyncio.create_task(engine.keep_alive())
        # Previews: adopt or clean up what a previous run left, then reap; stops with keep_alive.
        previews_task = asyncio.create_task(preview_loop(services))
        keep_alive.add_done_callback(lambda _: previews_task.cancel())
        try:
            yield
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
            await engine.drain()
            services.close()

    app = FastAPI(
        title="pltf action server",
        version=__version__,
        description="Self-describing platform actions, run with streamed logs. See README.md.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestContextMiddleware, settings=settings, metrics=metrics)
    app.mount("/git", git_routes(settings))
    # Previews: clean URLs (by Host), /previews/<id>/, /v1/previews.
    app.add_middleware(PreviewRouter, settings=settings, state=state)
    app.include_router(preview_routes(state))

    def engine() -> RunEngine:
        return state["engine"]  # type: ignore[no-any-return]

    def services() -> Services:
        return state["services"]  # type: ignore[no-any-return]

    app.include_router(portal_router(services))  # Portal: /, /services, /teams, /v1/dora…, webhooks, prober

    app.include_router(catalog_api(services))
    app.include_router(catalog_pages(services))
    app.include_router(backstage_actions_router(settings, engine, services))  # Backstage's actions registry

    @app.exception_handler(PltfError)
    async def on_pltf_error(_: Request, exc: PltfError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 408:  # the rest of the request may never come; do not wait to read it
            headers = {"Connection": "close"}
        return error_response(exc, headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(invalid_input("invalid request", pydantic_field_errors(list(exc.errors()))))

    @app.exception_handler(Exception)
    async def on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        get_logger().error("unhandled error", error_type=type(exc).__name__, exc_info=exc)
        return error_response(PltfError("internal error; the server log has the details", 500, "internal"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(PltfError(str(exc.detail), exc.status_code, code))

    # -- open endpoints -----------------------------------------------------

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Cached briefly: probes come every few seconds from each load balancer.
    storage_checked: dict[str, Any] = {"at": float("-inf"), "problem": None}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        def ping() -> None:
            with services().engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        # A missing sandbox does not make the server unready: everything but hooks and previews works,
        # and those fail with a clear sandbox_unavailable error. Readiness shows it, for the operator.
        sandbox = await anyio.to_thread.run_sync(sandbox_summary, settings)
        try:
            await anyio.to_thread.run_sync(ping)
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__, **sandbox}, status_code=503)
        if time.monotonic() - storage_checked["at"] >= STORAGE_PROBE_SECONDS:
            problem = await anyio.to_thread.run_sync(storage_problem, settings)
            storage_checked.update(at=time.monotonic(), problem=problem)
        if storage_checked["problem"] is not None:
            return JSONResponse(
                {"status": "unavailable", "reason": storage_checked["problem"], **sandbox}, status_code=503
            )
        return JSONResponse({"status": "ready", **sandbox})

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- actions and runs ---------------------------------------------------

    @app.get("/v1/actions", tags=["actions"])
    async def list_actions(_: Authed) -> dict[str, Any]:
        found = services().actions.values()
        return {"actions": await anyio.to_thread.run_sync(lambda: [a.describe(services()) for a in found])}

    @app.get("/v1/actions/{action_id}", tags=["actions"])
    async def get_action(action_id: str, _: Authed) -> dict[str, Any]:
        action = engine().action(action_id)
        return {"actions": [await anyio.to_thread.run_sync(action.describe, services())]}

    @app.post(
        "/v1/actions/{action_id}/runs",
        tags=["actions"],
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": RUN_BODY_SCHEMA}}}},
        responses={202: {"description": "Still running; follow Location"}, 422: {"description": "Invalid input"}},
    )
    async def start_run(
        action_id: str,
        request: Request,
        who: Authed,
        wait: Annotated[str | None, Query(description="false, true, or seconds to wait")] = None,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        run_engine = engine()
        action = run_engine.action(action_id)
        if not who.may_run(action.id):
            raise PltfError(f"this token may not run {action.id}", 403, "forbidden")
        seconds = _wait_seconds(wait, settings.run_wait_seconds)
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise invalid_input(f"the body is not valid JSON: {exc}") from None
        prepared = await anyio.to_thread.run_sync(run_engine.prepare, action.id, body)
        run_id, created = await run_engine.submit(prepared, who, idempotency_key)
        run = await run_engine.wait(run_id, seconds)
        headers = {"Location": f"/v1/runs/{run_id}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        status = 202 if seconds == 0 else _run_status(run)
        return JSONResponse(_with_links(run, settings), status_code=status, headers=headers)

    @app.get("/v1/runs", tags=["runs"])
    async def list_runs(
        who: Authed,
        action: str | None = None,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise invalid_input(f"unknown status {status!r}", [])
        found = await anyio.to_thread.run_sync(engine().list_runs, action, status, limit, who)
        return {"runs": [_with_links(run, settings) for run in found]}

    @app.get("/v1/runs/{run_id}", tags=["runs"])
    async def get_run(run_id: str, who: Authed) -> dict[str, Any]:
        return _with_links(await anyio.to_thread.run_sync(engine().get, run_id, True, who), settings)

    @app.post("/v1/runs/{run_id}/cancel", tags=["runs"])
    async def cancel_run(run_id: str, who: Authed) -> dict[str, Any]:
        return _with_links(await anyio.to_thread.run_sync(engine().cancel, run_id, who), settings)

    @app.get(
        "/v1/runs/{run_id}/events",
        tags=["runs"],
        response_class=EventSourceResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "log events, then a completion event"}},
    )
    async def run_events(
        run_id: str,
        who: Authed,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventSourceResponse:
        after = _last_event_id(last_event_id)
        stream = engine().events(run_id, after, who)
        first = await anext(stream)  # raises 404 now rather than inside the stream

        async def frames() -> AsyncIterator[dict[str, Any]]:
            pending: tuple[str, dict[str, Any]] | None = first
            while pending is not None:
                kind, body = pending
                if kind == "log":
                    yield {
                        "event": "log",
                        "id": str(body["seq"]),
                        "data": json.dumps({"type": "log", "runId": run_id, "body": body}),
                    }
                else:
                    yield {
                        "event": "completion",
                        "data": json.dumps({"type": "completion", "runId": run_id, "body": body}),
                    }
                pending = await anext(stream, None)

        return EventSourceResponse(frames(), ping=15)

    # -- templates and workspaces -------------------------------------------

    @app.get("/v1/templates", tags=["templates"])
    async def list_templates(_: Authed) -> dict[str, Any]:
        found = await anyio.to_thread.run_sync(services().templates.list)
        return {"templates": [t.to_json() for t in found]}

    @app.get("/v1/templates/{name}", tags=["templates"])
    async def get_template(name: str, _: Authed) -> dict[str, Any]:
        return find_template_or_404(services().templates, name).to_json()

    @app.get("/v1/workspaces/{workspace_id}", tags=["workspaces"])
    async def get_workspace(workspace_id: str, who: Authed) -> dict[str, Any]:
        info = await anyio.to_thread.run_sync(services().workspaces.info, workspace_id, who)
        info["archiveUrl"] = f"{settings.base_url}/v1/workspaces/{workspace_id}/archive"
        return info

    @app.get(
        "/v1/workspaces/{workspace_id}/archive",
        tags=["workspaces"],
        responses={200: {"content": {"application/gzip": {}}}},
    )
    async def download_workspace(workspace_id: str, who: Authed) -> Response:
        store = services().workspaces
        info = await anyio.to_thread.run_sync(store.info, workspace_id, who)
        data = await anyio.to_thread.run_sync(store.archive, workspace_id, who)
        filename = f"{info['directory']}.tar.gz"
        return Response(
            data, media_type="application/gzip", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )

    return app


def _wait_seconds(wait: str | None, default: float) -> float:
    if wait is None or wait.lower() == "true":
        return default
    if wait.lower() == "false":
        return 0.0
    try:
        seconds = float(wait)
    except ValueError:
        raise invalid_input("wait must be true, false or a number of seconds", []) from None
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise invalid_input(f"wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds", [])
    return seconds


def _last_event_id(value: str | None) -> int:
    """The log line a reconnecting client saw last; 0 (from the start) when it sends none."""
    if not value:
        return 0
    if not EVENT_ID.fullmatch(value) or int(value) > MAX_EVENT_ID:
        raise invalid_input(
            "Last-Event-ID must be the id of an event this stream sent",
            [FieldError("Last-Event-ID", f"must be a whole number from 0 to {MAX_EVENT_ID}")],
        )
    return int(value)


def _run_status(run: dict[str, Any]) -> int:
    if run["status"] not in TERMINAL:
        return 202
    if run["status"] == "succeeded":
        return 200
    error = run.get("error") or {}
    status = error.get("status", 500)
    return status if isinstance(status, int) and 400 <= status <= 599 else 500


def _with_links(run: dict[str, Any], settings: Settings) -> dict[str, Any]:
    base = f"{settings.base_url}/v1/runs/{run['id']}"
    return {**run, "links": {"self": base, "events": f"{base}/events"}}
