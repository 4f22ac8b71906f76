"""Templates (their values and schemas) and the workspaces runs leave behind."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import Response

from ..templates.catalog import find_template_or_404
from .deps import Authed, SettingsDep, TemplatesDep, WorkspacesDep
from .models import Template, TemplateList, Workspace, errors

router = APIRouter()


@router.get("/v1/templates", tags=["templates"], response_model=TemplateList, responses=errors(401))
async def list_templates(_: Authed, templates: TemplatesDep) -> dict[str, Any]:
    found = await anyio.to_thread.run_sync(templates.list)
    return {"templates": [t.to_json() for t in found]}


@router.get("/v1/templates/{name}", tags=["templates"], response_model=Template, responses=errors(401, 404))
async def get_template(name: str, _: Authed, templates: TemplatesDep) -> dict[str, Any]:
    return find_template_or_404(templates, name).to_json()


@router.get("/v1/workspaces/{workspace_id}", tags=["workspaces"], response_model=Workspace, responses=errors(401, 404))
async def get_workspace(
    workspace_id: str, who: Authed, workspaces: WorkspacesDep, settings: SettingsDep
) -> dict[str, Any]:
    info = await anyio.to_thread.run_sync(workspaces.info, workspace_id, who)
    info["archiveUrl"] = f"{settings.server.base_url}/v1/workspaces/{workspace_id}/archive"
    return info


@router.get(
    "/v1/workspaces/{workspace_id}/archive",
    tags=["workspaces"],
    responses={200: {"content": {"application/gzip": {}}}, **errors(401, 404)},
)
async def download_workspace(workspace_id: str, who: Authed, store: WorkspacesDep) -> Response:
    info = await anyio.to_thread.run_sync(store.info, workspace_id, who)
    data = await anyio.to_thread.run_sync(store.archive, workspace_id, who)
    filename = f"{info['directory']}.tar.gz"
    return Response(
        data, media_type="application/gzip", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
