"""Change requests of the embedded forge over the API: list, read, merge (see `forges/changes.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter

from ..config import Settings
from ..errors import PltfError, not_found
from ..forges.changes import get_change, list_changes, merge_change
from ..forges.embedded import git_root, read_metadata, repository_dir
from ..forges.permissions import may_read, push_refusal
from ..updates.fleet import after_merge
from .deps import Authed, CatalogDep, EventsDep, SettingsDep
from .models import ChangeRequest, ChangeRequestList, MergedChangeRequest, errors

router = APIRouter()


def _readable(owner: str, name: str, who: Any, settings: Settings) -> Path:
    repo = repository_dir(git_root(settings), owner, name)
    # A repository the caller may not read is as absent as one that does not exist.
    if repo is None or not repo.is_dir() or not may_read(who, read_metadata(repo), settings):
        raise not_found(f"no repository {owner}/{name}")
    return repo


def _with_url(change: dict[str, Any], owner: str, name: str, settings: Settings) -> dict[str, Any]:
    return {**change, "url": f"{settings.server.base_url}/git/{owner}/{name}/changes/{change['number']}"}


@router.get(
    "/v1/repositories/{owner}/{name}/changes",
    tags=["changes"],
    response_model=ChangeRequestList,
    responses=errors(401, 404, 422),
)
async def list_change_requests(owner: str, name: str, who: Authed, settings: SettingsDep) -> dict[str, Any]:
    repo = _readable(owner, name, who, settings)
    changes = await anyio.to_thread.run_sync(list_changes, repo)
    return {"changes": [_with_url(change, owner, name, settings) for change in changes]}


@router.get(
    "/v1/repositories/{owner}/{name}/changes/{number}",
    tags=["changes"],
    response_model=ChangeRequest,
    responses=errors(401, 404, 422),
)
async def get_change_request(owner: str, name: str, number: int, who: Authed, settings: SettingsDep) -> dict[str, Any]:
    repo = _readable(owner, name, who, settings)
    return _with_url(await anyio.to_thread.run_sync(get_change, repo, number), owner, name, settings)


@router.post(
    "/v1/repositories/{owner}/{name}/changes/{number}/merge",
    tags=["changes"],
    response_model=MergedChangeRequest,
    responses=errors(401, 403, 404, 409, 422),
)
async def merge_change_request(
    owner: str, name: str, number: int, who: Authed, settings: SettingsDep, catalog: CatalogDep, events: EventsDep
) -> dict[str, Any]:
    repo = _readable(owner, name, who, settings)
    refusal = push_refusal(who, owner, name, read_metadata(repo), settings)
    if refusal is not None:
        raise PltfError(refusal, 403, "forbidden")
    merged = await anyio.to_thread.run_sync(merge_change, repo, number, who.name)
    refreshed = await anyio.to_thread.run_sync(after_merge, settings, catalog, events, owner, name, merged, who)
    return {**_with_url(merged, owner, name, settings), "refreshedEntities": refreshed}
