"""Actions and their runs: list and describe actions, start, follow, list and cancel runs."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from ..config import Settings
from ..errors import FieldError, PltfError, invalid_input
from ..runs import STATUSES, TERMINAL
from .deps import Authed, EngineDep, SettingsDep
from .models import ActionList, Run, RunList, errors

MAX_WAIT_SECONDS = 600.0
# Log sequence numbers are stored as 64-bit integers; a larger id can only be hostile.
EVENT_ID = re.compile(r"[0-9]{1,19}")
MAX_EVENT_ID = 2**63 - 1
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

router = APIRouter()


@router.get("/v1/actions", tags=["actions"], response_model=ActionList, responses=errors(401))
async def list_actions(_: Authed, engine: EngineDep) -> dict[str, Any]:
    found = engine.actions.values()
    return {"actions": await anyio.to_thread.run_sync(lambda: [a.describe() for a in found])}


@router.get("/v1/actions/{action_id}", tags=["actions"], response_model=ActionList, responses=errors(401, 404))
async def get_action(action_id: str, _: Authed, engine: EngineDep) -> dict[str, Any]:
    action = engine.action(action_id)
    return {"actions": [await anyio.to_thread.run_sync(action.describe)]}


@router.post(
    "/v1/actions/{action_id}/runs",
    tags=["actions"],
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": RUN_BODY_SCHEMA}}}},
    response_model=Run,
    responses={
        202: {"model": Run, "description": "Still running; follow Location"},
        **errors(401, 403, 404, 408, 409, 413, 422),
    },
)
async def start_run(
    action_id: str,
    request: Request,
    who: Authed,
    run_engine: EngineDep,
    settings: SettingsDep,
    wait: Annotated[str | None, Query(description="false, true, or seconds to wait")] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    action = run_engine.action(action_id)
    if not who.may_run(action.id):
        raise PltfError(f"this token may not run {action.id}", 403, "forbidden")
    seconds = _wait_seconds(wait, settings.runs.run_wait_seconds)
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


@router.get(
    "/v1/runs", tags=["runs"], response_model=RunList, response_model_exclude_unset=True, responses=errors(401, 422)
)
async def list_runs(
    who: Authed,
    engine: EngineDep,
    settings: SettingsDep,
    action: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="nextCursor of the page before")] = None,
) -> dict[str, Any]:
    """The runs this token may see, newest first."""
    if status is not None and status not in STATUSES:
        raise invalid_input(f"unknown status {status!r}", [])
    found = await anyio.to_thread.run_sync(engine.list_runs, action, status, limit, who, cursor)
    return {"runs": [_with_links(run, settings) for run in found.items], "nextCursor": found.next_cursor}


@router.get(
    "/v1/runs/{run_id}",
    tags=["runs"],
    response_model=Run,
    response_model_exclude_unset=True,
    responses=errors(401, 404),
)
async def get_run(run_id: str, who: Authed, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    return _with_links(await anyio.to_thread.run_sync(engine.get, run_id, True, who), settings)


@router.post(
    "/v1/runs/{run_id}/cancel",
    tags=["runs"],
    response_model=Run,
    response_model_exclude_unset=True,
    responses=errors(401, 403, 404, 409),
)
async def cancel_run(run_id: str, who: Authed, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    return _with_links(await anyio.to_thread.run_sync(engine.cancel, run_id, who), settings)


@router.get(
    "/v1/runs/{run_id}/events",
    tags=["runs"],
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "log events, then a completion event"},
        **errors(401, 404, 422),
    },
)
async def run_events(
    run_id: str,
    who: Authed,
    engine: EngineDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    after = _last_event_id(last_event_id)
    stream = engine.events(run_id, after, who)
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
    base = f"{settings.server.base_url}/v1/runs/{run['id']}"
    return {**run, "links": {"self": base, "events": f"{base}/events"}}
