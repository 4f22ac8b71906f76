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
from .config import PROJECT_ROOT, Settings
from .db import connect, metadata
from .errors import PltfError
from .events import EventBus
from .forges import ForgeRegistry
from .logs import get_logger
from .portal.events import platform_event_recorder
from .previews import PreviewHub
from .redact import Redactor
from .templates.catalog import TemplateCatalog
from .workspaces import WorkspaceStore

PLATFORM_CATALOG_FILE = PROJECT_ROOT / "catalog-info" / "catalog-info.yaml"


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
        # Every path kept is absolute already (config.py resolves them): cookiecutter changes the working directory.
        settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
        redactor = redactor or Redactor()
        # The one place the configured secrets are registered: each `SecretStr` setting, whatever its section.
        redactor.add(settings.secret_values())
        engine = connect(settings.storage.resolved_database_url)
        services = cls(
            settings=settings,
            engine=engine,
            redactor=redactor,
            templates=TemplateCatalog(settings),
            workspaces=WorkspaceStore(engine, settings.storage.workspace_dir),
            catalog=open_catalog(settings, engine, redactor),
            forges=ForgeRegistry(settings, redactor),
            events=events or EventBus(),
        )
        services._unsubscribe = services.events.subscribe(platform_event_recorder(services))
        return services

    def register_platform_entities(self) -> None:
        """Registers catalog-info/ unless it is registered already (PLTF_REGISTER_PLATFORM_ENTITIES): the
        team, systems and template a new service refers to must exist on a fresh install."""
        # A Backstage catalog reads this repository's catalog-info/ from its own app-config instead.
        if not self.settings.catalog.register_platform_entities or self.catalog.kind != "embedded":
            return
        target = f"file:{PLATFORM_CATALOG_FILE}"
        log = get_logger()
        try:
            if not self.catalog.register(target, dry_run=True).exists:
                self.catalog.register(target)
                log.info("registered the platform's own entities", location=target)
        except PltfError as exc:
            if exc.code != "location_exists":  # another replica was first
                log.warning("could not register the platform's own entities", location=target, error=exc.message)

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
