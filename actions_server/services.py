"""The composition of the parts every action and endpoint uses, built once per process.

The one place that knows them all: it builds each part from the settings,
subscribes the portal to the event bus, so that lower layers need not import it,
and hands each action and the run engine the parts they use, by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from .action import Action
from .actions.catalog_register import create_catalog_register_action
from .actions.cookiecutter_render import create_cookiecutter_render_action
from .actions.preview_create import create_preview_create_action
from .actions.preview_destroy import create_preview_destroy_action
from .actions.repo_create import create_repo_create_action
from .actions.service_create import create_service_create_action
from .actions.service_policies import create_service_policies_action
from .actions.service_provision import create_service_provision_action
from .actions.template_services import create_template_services_action
from .actions.template_update import create_template_update_action
from .catalog import Catalog, open_catalog
from .config import PROJECT_ROOT, Settings
from .db import connect, metadata
from .errors import PltfError
from .events import EventBus
from .forges import ForgeRegistry
from .logs import get_logger
from .metrics import Metrics
from .portal.events import platform_event_recorder
from .previews import PreviewHub, PreviewManager
from .redact import Redactor
from .runs import RunEngine
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

    def preview_manager(self) -> PreviewManager:
        """The process's preview manager, built on first use (its provider may start a Kubernetes client)."""
        return self.previews.get(self)

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


def built_in_actions(parts: Services) -> dict[str, Action[Any, Any]]:
    """Every action, each given the parts it uses: one line per action registers it."""
    p = parts
    actions: list[Action[Any, Any]] = [
        create_catalog_register_action(catalog=p.catalog, settings=p.settings),
        create_cookiecutter_render_action(templates=p.templates, workspaces=p.workspaces, settings=p.settings),
        create_preview_create_action(previews=p.preview_manager, settings=p.settings, database=p.engine),
        create_preview_destroy_action(previews=p.preview_manager),
        create_repo_create_action(forges=p.forges, workspaces=p.workspaces, events=p.events, settings=p.settings),
        create_service_create_action(
            templates=p.templates, forges=p.forges, previews=p.preview_manager, settings=p.settings
        ),
        create_service_policies_action(settings=p.settings),
        create_service_provision_action(settings=p.settings, redactor=p.redactor, events=p.events, catalog=p.catalog),
        create_template_services_action(templates=p.templates, settings=p.settings),
        create_template_update_action(
            settings=p.settings, templates=p.templates, forges=p.forges, redactor=p.redactor, events=p.events
        ),
    ]
    registry = {action.id: action for action in actions}
    if len(registry) != len(actions):
        raise RuntimeError("two actions share an id")
    return registry


def run_engine(
    parts: Services, metrics: Metrics | None = None, actions: dict[str, Action[Any, Any]] | None = None
) -> RunEngine:
    """The run engine, with the parts and the few settings it uses; the built-in actions unless given others."""
    settings = parts.settings
    return RunEngine(
        database=parts.engine,
        redactor=parts.redactor,
        workspaces=parts.workspaces,
        actions=built_in_actions(parts) if actions is None else actions,
        metrics=metrics,
        replica=settings.server.replica,
        max_concurrent_runs=settings.runs.max_concurrent_runs,
        stale_run_seconds=settings.runs.stale_run_seconds,
        heartbeat_seconds=settings.runs.heartbeat_seconds,
        scratch_root=settings.runs.scratch_root,
        max_working_runs=settings.runs.working_runs(settings.forges.forge),
    )


def declared_tables() -> MetaData:
    """Every table the code declares, for comparing with what the revisions in migrations/ make.

    One `MetaData` (db.py's): each part declares its tables on it when imported,
    and this module imports every part.
    """
    return metadata
