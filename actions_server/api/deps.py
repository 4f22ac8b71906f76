"""The typed dependencies the routers declare: who is calling, and the one part each route needs.

The application (app.py) puts the parts on `app.state` when it starts; a route
names what it uses (`engine: EngineDep`, `templates: TemplatesDep`) and gets
only that.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.engine import Engine

from ..auth import Caller, TokenRegistry, token_from_authorization
from ..catalog import Catalog
from ..config import Settings
from ..errors import PltfError
from ..events import EventBus
from ..metrics import Metrics
from ..runs import RunEngine
from ..templates.catalog import TemplateCatalog
from ..workspaces import WorkspaceStore


def bearer_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    tokens: TokenRegistry = request.app.state.tokens
    found = tokens.authenticate(token_from_authorization(authorization))
    if found is None:
        raise PltfError("a valid API token is required (Authorization: Bearer <token>)", 401, "unauthorized")
    return found


Authed = Annotated[Caller, Depends(bearer_caller)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _run_engine(request: Request) -> RunEngine:
    engine: RunEngine = request.app.state.engine
    return engine


def _database(request: Request) -> Engine:
    database: Engine = request.app.state.services.engine
    return database


def _templates(request: Request) -> TemplateCatalog:
    templates: TemplateCatalog = request.app.state.services.templates
    return templates


def _workspaces(request: Request) -> WorkspaceStore:
    workspaces: WorkspaceStore = request.app.state.services.workspaces
    return workspaces


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.services.catalog
    return catalog


def _events(request: Request) -> EventBus:
    events: EventBus = request.app.state.services.events
    return events


SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
EngineDep = Annotated[RunEngine, Depends(_run_engine)]
DatabaseDep = Annotated[Engine, Depends(_database)]
TemplatesDep = Annotated[TemplateCatalog, Depends(_templates)]
WorkspacesDep = Annotated[WorkspaceStore, Depends(_workspaces)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
EventsDep = Annotated[EventBus, Depends(_events)]
