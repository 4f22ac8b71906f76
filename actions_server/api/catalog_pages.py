"""The `/catalog` pages (catalog/pages.py renders them): readable by anyone unless catalog reads need a token.

`/catalog` lists entities, filterable by kind, owner, system and tag.
`/catalog/{namespace}/{kind}/{name}` (Backstage's own URL shape) shows one entity.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from ..catalog.embedded import EmbeddedCatalog
from ..catalog.pages import entity_html, list_html, missing_html
from ..config import Settings
from ..http_cache import cached_response
from .deps import CatalogDep, CatalogSnapshotsDep, PortalPartsDep, SettingsDep, catalog_read_access

HTML = "text/html; charset=utf-8"

router = APIRouter(prefix="/catalog", include_in_schema=False, dependencies=[Depends(catalog_read_access)])


def html_page(request: Request, settings: Settings, html: str) -> Response:
    public = settings.catalog.catalog_public_reads
    return cached_response(request, html.encode(), HTML, settings.portal.portal_cache_seconds, public=public)


@router.get("", response_class=HTMLResponse)
async def entity_list(
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    services: PortalPartsDep,
    snapshots: CatalogSnapshotsDep,
    kind: Annotated[str, Query(max_length=100)] = "",
    owner: Annotated[str, Query(max_length=300)] = "",
    system: Annotated[str, Query(max_length=300)] = "",
    tag: Annotated[str, Query(max_length=100)] = "",
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
) -> Response:
    """The list as stored until the embedded catalog's entities change (the store's fingerprint reads them).

    A Backstage catalog changes without telling us: its pages are computed per view.
    """
    if not isinstance(catalog, EmbeddedCatalog):
        return html_page(request, settings, await list_html(catalog, kind, owner, system, tag, cursor))

    async def body() -> bytes:
        return (await list_html(catalog, kind, owner, system, tag, cursor)).encode()

    found = await snapshots.get(services, f"{request.url.path}?{request.url.query}", body, slides=False)
    max_age, public = settings.portal.portal_cache_seconds, settings.catalog.catalog_public_reads
    return cached_response(request, found.body, HTML, max_age, public=public, etag=found.etag)


@router.get("/{namespace}/{kind}/{name}", response_class=HTMLResponse)
async def entity_page(
    request: Request, namespace: str, kind: str, name: str, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    entity = await anyio.to_thread.run_sync(catalog.entity, kind, namespace, name)
    if entity is None:
        return HTMLResponse(missing_html(kind, namespace, name), status_code=404)
    return html_page(request, settings, entity_html(entity, settings))
