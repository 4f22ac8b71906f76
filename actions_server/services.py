"""The shared parts every action and endpoint uses, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from .catalog import Catalog, open_catalog
from .config import Settings
from .db import connect
from .forges import ForgeRegistry
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

    @classmethod
    def create(cls, settings: Settings, redactor: Redactor | None = None) -> Services:
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
        return cls(
            settings=settings,
            engine=engine,
            redactor=redactor,
            templates=TemplateCatalog(settings),
            workspaces=WorkspaceStore(engine, settings.workspace_dir),
            catalog=open_catalog(settings, engine, redactor),
            forges=ForgeRegistry(settings, redactor),
        )

    def close(self) -> None:
        self.forges.close()
        self.catalog.close()
        self.engine.dispose()
