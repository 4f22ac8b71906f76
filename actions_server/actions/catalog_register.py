"""`catalog:register`: registers a catalog file's location, with Backstage's input and output.

The catalog is the embedded one, or Backstage when `PLTF_BACKSTAGE_URL` is
set. Registering a location twice is a 409, unless `optional` is set (then
the run succeeds and reports the entity, as Backstage's action does).
A dry run reads and validates the entities and stores nothing.

A file of this server's forge that the caller's token may not read (a private
repository of another team) is refused as if it did not exist (404,
`location_not_found`), dry run or not: the catalog is readable by anyone, so
registering must not publish what the caller could not read, and a 404 does
not confirm that the repository exists.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..action import Action, Example, RunContext
from ..catalog import Catalog, preferred_entity_ref
from ..catalog.embedded import EmbeddedCatalog
from ..catalog.model import page_url
from ..config import PROJECT_ROOT, Settings
from ..errors import FieldError, PltfError, invalid_input


class RegisterInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    catalogInfoUrl: str | None = Field(
        None, min_length=1, max_length=2000, description="URL of the catalog-info.yaml to register."
    )
    repoContentsUrl: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="Browsable URL of a repository's tree (publish:* and repo:create output), with catalogInfoPath.",
    )
    catalogInfoPath: str = Field(
        "/catalog-info.yaml", min_length=1, max_length=500, description="Path of the catalog file in repoContentsUrl."
    )
    optional: bool = Field(False, description="An already registered location is not an error.")

    @model_validator(mode="after")
    def _one_form(self) -> RegisterInput:
        if (self.catalogInfoUrl is None) == (self.repoContentsUrl is None):
            raise ValueError("give exactly one of catalogInfoUrl, or repoContentsUrl (with catalogInfoPath)")
        return self

    def url(self) -> str:
        if self.catalogInfoUrl is not None:
            return self.catalogInfoUrl
        assert self.repoContentsUrl is not None  # noqa: S101 - guaranteed by _one_form
        return f"{self.repoContentsUrl.rstrip('/')}/{self.catalogInfoPath.lstrip('/')}"


class RegisterOutput(BaseModel):
    entityRef: str | None = Field(
        None, description="The Component (not generated-*) the location holds, or its first entity."
    )
    catalogInfoUrl: str
    entityUrl: str | None = Field(None, description="The entity's page on this server's /catalog (embedded catalog).")


def check_location(params: RegisterInput, catalog: Catalog) -> None:
    # Backstage reads locations itself, with its own integrations; only ours has rules to check here.
    if not isinstance(catalog, EmbeddedCatalog):
        return
    try:
        catalog.reader.check(params.url())
    except PltfError as exc:
        field = "catalogInfoUrl" if params.catalogInfoUrl is not None else "repoContentsUrl"
        raise invalid_input(exc.message, [FieldError(field, exc.message)]) from None


# The platform's own entities, shipped in catalog-info/ (an allowed file root by
# default), so the examples run on any installation with nothing else set up.
OWN_CATALOG = (PROJECT_ROOT / "catalog-info").as_uri()


def create_catalog_register_action(*, catalog: Catalog, settings: Settings) -> Action[RegisterInput, RegisterOutput]:
    def handler(ctx: RunContext, params: RegisterInput) -> RegisterOutput:
        url = params.url()
        if ctx.dry_run:
            ctx.logger.info(f"dry run: reading and validating {url} in {catalog.title}; nothing is stored")
            entities = catalog.entities_at(url, ctx.caller)
        else:
            ctx.logger.info(f"registering {url} in {catalog.title}")
            try:
                entities = catalog.register(url, caller=ctx.caller).entities
            except PltfError as exc:
                if exc.code != "location_exists" or not params.optional:
                    raise
                ctx.logger.info(f"{url} is registered already; optional is set, so that is fine")
                entities = []
            if not entities:
                # Backstage ingests asynchronously and answers with no entities; find them as its action does.
                entities = catalog.entities_at(url, ctx.caller)
        refs = [
            f"{e['kind']}:{e['metadata'].get('namespace') or 'default'}/{e['metadata']['name']}".lower()
            for e in entities
        ]
        ctx.logger.info(f"{len(refs)} entities: {', '.join(refs) or 'none'}")
        entity_ref = preferred_entity_ref(entities)
        entity_url = None
        if entity_ref is not None and catalog.kind == "embedded" and not ctx.dry_run:
            entity_url = settings.server.base_url + page_url(entity_ref)
        return RegisterOutput(entityRef=entity_ref, catalogInfoUrl=url, entityUrl=entity_url)

    return Action(
        id="catalog:register",
        description=(
            "Registers a catalog-info.yaml location in the software catalog (embedded, or Backstage when configured) "
            "and returns the main entity's ref. Same input and output as Backstage's catalog:register."
        ),
        handler=handler,
        check=lambda params: check_location(params, catalog),
        examples=[
            Example("Register the platform's own catalog file", {"catalogInfoUrl": f"{OWN_CATALOG}/catalog-info.yaml"}),
            Example(
                "Validate a repository's catalog file without registering it",
                {"repoContentsUrl": OWN_CATALOG, "catalogInfoPath": "/catalog-info.yaml"},
                dry_run=True,
            ),
            Example(
                "Register, and accept a location that is registered already",
                {"catalogInfoUrl": f"{OWN_CATALOG}/catalog-info.yaml", "optional": True},
            ),
        ],
    )
