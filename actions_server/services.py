"""The composition of the parts every action and endpoint uses, built once per process.

The one place that knows them all: it builds each part from the settings and
subscribes the portal to the event bus, so that lower layers need not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from .catalog import Catalog, open_catalog
from .config import Settings
from .db import connect, metadata
from .events import EventBus
from .forges import ForgeRegistry
from .portal.events import platform_event_recorder
from .previews import PreviewHub
from .redact import Redactor
from .templates.catalog import TemplateCatalog
from .workspaces import WorkspaceStore


@dataclass
class Services:
    settings: Settings
    engine: Engine
    redactor: Redactor
    templates: TemplateCatalog
    workspaces: WorkspaceStore
    forges: ForgeRegistry
    catalog: Catalog
    previews: PreviewHub = field(default_factory=PreviewHub)
    events: EventBus = field(default_factory=EventBus)
    _unsubscribe: Callable[[], None] = field(default=lambda: None, repr=False)

    @classmethod
    def create(cls, settings: Settings, redactor: Redactor | None = None, events: EventBus | None = None) -> Services:
        # cookiecutter changes the working directory while rendering, so every
        # path we keep must be absolute.
        settings.data_dir = settings.data_dir.resolve()
        settings.templates_dir = settings.templates_dir.resolve()
        if settings.workspace_dir is not None:
            settings.workspace_dir = settings.workspace_dir.resolve()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        redactor = redactor or Redactor()
        if settings.api_token is not None:
            redactor.add([settings.api_token.get_secret_value()])
        engine = connect(settings.resolved_database_url)
        services = cls(
            settings=settings,
            engine=engine,
            redactor=redactor,
            templates=TemplateCatalog(settings),
            workspaces=WorkspaceStore(engine, settings.workspace_dir),
            catalog=open_catalog(settings, engine, redactor),
            forges=ForgeRegistry(settings, redactor),
            events=events or EventBus(),
        )
        services._unsubscribe = services.events.subscribe(platform_event_recorder(services))
        return services

    def close(self) -> None:
        self._unsubscribe()
        self.forges.close()
        self.catalog.close()
        self.engine.dispose()


def declared_tables() -> MetaData:
    """Every table the code declares, for comparing with what the revisions in migrations/ make.

    One `MetaData` (db.py's): each part declares its tables on it when imported,
    and this module imports every part.
    """
    return metadata
