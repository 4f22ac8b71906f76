"""HTTP endpoints for previews, and the server's preview loop (adoption at start, then the reaper).

app.include_router(preview_routes(state))          # GET /v1/previews, GET /v1/previews/{id}, POST /v1/previews/gc
task = asyncio.create_task(preview_loop(services))  # in the lifespan
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query

from ..api.deps import Authed
from ..api.models import Preview, PreviewCollection, PreviewList, errors
from ..errors import PltfError, invalid_input
from ..logs import get_logger
from ..services import Services
from .manager import STATUSES
from .proxy import PreviewRouter

__all__ = ["PreviewRouter", "preview_loop", "preview_routes"]


def preview_routes(state: dict[str, Any]) -> APIRouter:
    router = APIRouter(prefix="/v1/previews", tags=["previews"])

    def services() -> Services:
        return state["services"]  # type: ignore[no-any-return]

    @router.get("", response_model=PreviewList, response_model_exclude_unset=True, responses=errors(401, 422))
    async def list_previews(
        who: Authed,
        status: Annotated[
            str | None, Query(description="starting, ready, failed, destroyed, expired or active")
        ] = None,
        service: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        if status is not None and status not in (*STATUSES, "active"):
            raise invalid_input(f"unknown status {status!r}", [])
        manager = services().previews.get(services())
        return {"previews": await anyio.to_thread.run_sync(manager.list_previews, status, service, limit, who)}

    @router.get("/{preview_id}", response_model=Preview, response_model_exclude_unset=True, responses=errors(401, 404))
    async def get_preview(preview_id: str, who: Authed) -> dict[str, Any]:
        manager = services().previews.get(services())
        return await anyio.to_thread.run_sync(manager.get, preview_id, who)

    @router.post("/gc", response_model=PreviewCollection, responses=errors(401, 403))
    async def collect(who: Authed) -> dict[str, Any]:
        if not who.may_run("preview:destroy"):
            raise PltfError("this token may not run preview:destroy", 403, "forbidden")
        manager = services().previews.get(services())
        lines: list[str] = []
        removed = await anyio.to_thread.run_sync(manager.gc, lines.append)
        return {"removed": removed, "log": lines}

    return router


async def preview_loop(services: Services) -> None:
    """Adopts or cleans up the previews a previous run of this server left, then reaps periodically."""
    manager = services.previews.get(services)
    log = get_logger(component="previews", replica=manager.replica)
    try:
        adopted, cleaned = await anyio.to_thread.run_sync(manager.adopt)
        if adopted or cleaned:
            log.info("previews recovered", adopted=len(adopted), cleaned=len(cleaned))
    except Exception:  # noqa: BLE001 - the reaper below retries what it can
        log.exception("adopting previews failed")
    while True:
        await asyncio.sleep(services.settings.previews.preview_reap_seconds)
        try:
            await anyio.to_thread.run_sync(manager.reap)
        except Exception:  # noqa: BLE001 - a database blip must not stop the reaper
            log.exception("reaping previews failed")
