"""The typed dependencies the routers declare: who is calling, and the one part each route needs.

The application (app.py) puts the parts on `app.state` when it starts; a route
names what it uses (`engine: EngineDep`, `templates: TemplatesDep`) and gets
only that.

A dependency that neither blocks nor waits is still an `async def`: FastAPI
runs a plain function in its thread pool, one round trip to a worker thread per
dependency per request (six for a portal page), which under 50 concurrent GETs
cost the event loop more than serving the stored pages did. A dependency that
may block (building the preview manager) stays a plain function.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.engine import Engine

from ..auth import Caller, TokenRegistry, token_from_authorization
from ..catalog import Catalog
from ..config import Settings
from ..errors import PltfError
from ..events import EventBus
from ..metrics import Metrics
from ..portal.parts import PortalParts
from ..previews import PreviewManager
from ..runs import RunEngine
from ..services import Services
from ..snapshots import Snapshots
from ..templates.catalog import TemplateCatalog
from ..workspaces import WorkspaceStore
from .backstage_auth import BackstageTokens


async def bearer_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    tokens: TokenRegistry = request.app.state.tokens
    found = tokens.authenticate(token_from_authorization(authorization))
    if found is None:
        raise PltfError("a valid API token is required (Authorization: Bearer <token>)", 401, "unauthorized")
    return found


Authed = Annotated[Caller, Depends(bearer_caller)]


def _state(path: str) -> Callable[[Request], Any]:
    """The dependency that answers what the application keeps at `app.state.<path>` (put there at start-up)."""
    read = attrgetter(path)

    async def part(request: Request) -> Any:
        return read(request.app.state)

    return part


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
MetricsDep = Annotated[Metrics, Depends(_state("metrics"))]
TokensDep = Annotated[TokenRegistry, Depends(_state("tokens"))]
EngineDep = Annotated[RunEngine, Depends(_state("engine"))]
DatabaseDep = Annotated[Engine, Depends(_state("services.engine"))]
TemplatesDep = Annotated[TemplateCatalog, Depends(_state("services.templates"))]
WorkspacesDep = Annotated[WorkspaceStore, Depends(_state("services.workspaces"))]
CatalogDep = Annotated[Catalog, Depends(_state("services.catalog"))]
EventsDep = Annotated[EventBus, Depends(_state("services.events"))]
BackstageTokensDep = Annotated[BackstageTokens, Depends(_state("backstage_tokens"))]
# The computed pages kept until their inputs change (app.py makes one store for each).
PortalSnapshotsDep = Annotated[Snapshots[PortalParts], Depends(_state("portal_snapshots"))]
CatalogSnapshotsDep = Annotated[Snapshots[PortalParts], Depends(_state("catalog_snapshots"))]
# What the portal's figures and the stored pages' fingerprints read (portal/parts.py names it).
PortalPartsDep = Annotated[PortalParts, Depends(_state("services"))]


def preview_manager(state: Any) -> PreviewManager:
    """The process's preview manager, built on first use (the preview proxy asks for it too)."""
    services: Services = state.services
    return services.previews.get(services)


def _previews(request: Request) -> PreviewManager:
    return preview_manager(request.app.state)


PreviewsDep = Annotated[PreviewManager, Depends(_previews)]


async def catalog_read_access(
    request: Request, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Lets catalog reads through when they are public (PLTF_CATALOG_PUBLIC_READS); otherwise asks for
    a token, as `Authed` does."""
    if not settings.catalog.catalog_public_reads:
        await bearer_caller(request, authorization)
