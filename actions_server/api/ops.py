"""Open endpoints for the operator and the load balancer: /healthz, /readyz, /metrics."""

from __future__ import annotations

import time
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text

from ..forges.embedded import git_root
from ..sandbox import sandbox_summary
from ..storage import storage_problem
from .deps import DatabaseDep, MetricsDep, SettingsDep
from .models import Readiness

STORAGE_PROBE_SECONDS = 1.0

router = APIRouter()


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _storage_checked(request: Request) -> dict[str, Any]:
    # Cached briefly, per application: probes come every few seconds from each load balancer.
    state = request.app.state
    if not hasattr(state, "storage_checked"):
        state.storage_checked = {"at": float("-inf"), "problem": None}
    checked: dict[str, Any] = state.storage_checked
    return checked


@router.get(
    "/readyz",
    tags=["ops"],
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready; reason says why"}},
)
async def readyz(request: Request, settings: SettingsDep, database: DatabaseDep) -> JSONResponse:
    def ping() -> None:
        with database.connect() as conn:
            conn.execute(text("SELECT 1"))

    storage_checked = _storage_checked(request)
    # A missing sandbox does not make the server unready: everything but hooks and previews works,
    # and those fail with a clear sandbox_unavailable error. Readiness shows it, for the operator.
    sandbox = await anyio.to_thread.run_sync(sandbox_summary, settings)
    try:
        await anyio.to_thread.run_sync(ping)
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return JSONResponse({"status": "unavailable", "reason": type(exc).__name__, **sandbox}, status_code=503)
    if time.monotonic() - storage_checked["at"] >= STORAGE_PROBE_SECONDS:
        problem = await anyio.to_thread.run_sync(storage_problem, settings, git_root(settings))
        storage_checked.update(at=time.monotonic(), problem=problem)
    if storage_checked["problem"] is not None:
        return JSONResponse({"status": "unavailable", "reason": storage_checked["problem"], **sandbox}, status_code=503)
    return JSONResponse({"status": "ready", **sandbox})


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
