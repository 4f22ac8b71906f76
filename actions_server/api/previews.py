"""The previews a token can see (`GET /v1/previews[/{id}]`) and collecting what is left over (`POST /v1/previews/gc`)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query

from ..errors import PltfError, invalid_input
from ..previews.manager import STATUSES
from .deps import Authed, PreviewsDep
from .models import Preview, PreviewCollection, PreviewList, errors

router = APIRouter(prefix="/v1/previews", tags=["previews"])


@router.get("", response_model=PreviewList, response_model_exclude_unset=True, responses=errors(401, 422))
async def list_previews(
    who: Authed,
    previews: PreviewsDep,
    status: Annotated[str | None, Query(description="starting, ready, failed, destroyed, expired or active")] = None,
    service: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="nextCursor of the page before")] = None,
) -> dict[str, Any]:
    """The previews this token may see, newest first."""
    if status is not None and status not in (*STATUSES, "active"):
        raise invalid_input(f"unknown status {status!r}", [])
    found = await anyio.to_thread.run_sync(previews.list_previews, status, service, limit, who, cursor)
    return {"previews": found.items, "nextCursor": found.next_cursor}


@router.get("/{preview_id}", response_model=Preview, response_model_exclude_unset=True, responses=errors(401, 404))
async def get_preview(preview_id: str, who: Authed, previews: PreviewsDep) -> dict[str, Any]:
    return await anyio.to_thread.run_sync(previews.get, preview_id, who)


@router.post("/gc", response_model=PreviewCollection, responses=errors(401, 403))
async def collect(who: Authed, previews: PreviewsDep) -> dict[str, Any]:
    if not who.may_run("preview:destroy"):
        raise PltfError("this token may not run preview:destroy", 403, "forbidden")
    lines: list[str] = []
    removed = await anyio.to_thread.run_sync(previews.gc, lines.append)
    return {"removed": removed, "log": lines}
