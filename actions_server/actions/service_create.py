"""`service:create`: the golden path in one run: render, repository, catalog, preview.

Each verb is its own action, run here as a step of one run with its own log
lines. A verb whose action is not installed is skipped, and the log says so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..action import Action, Example, RunContext
from ..config import Settings
from ..forges import ForgeRegistry
from ..names import DNS_LABEL, ENTITY_REF, owner_slug
from ..previews import PreviewManager
from ..templates.catalog import TemplateCatalog
from .cookiecutter_render import RenderInput, check_render
from .repo_create import planned_repository

# The actions whose results the template links to (a check runs before the registry is at hand).
ACTIONS_USED = ("repo:create", "preview:create")


class ServiceCreateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=DNS_LABEL.pattern, max_length=63, description="DNS-safe service name, e.g. users-api")
    owner: str = Field(max_length=253, description="Owning group, as a catalog ref: group:default/platform-team")
    description: str | None = Field(None, max_length=1000)
    system: str | None = Field(None, max_length=253)
    template: str = Field("python-service", max_length=500, description="Template in cookiecutters/")
    values: dict[str, Any] = Field(default_factory=dict, description="Extra template values")
    repoUrl: str | None = Field(
        None, max_length=500, description="RepoUrlPicker form host?owner=o&repo=r; default: the embedded forge"
    )
    preview: bool = Field(True, description="Wire a preview environment")

    @field_validator("owner")
    @classmethod
    def _owner_is_entity_ref(cls, owner: str) -> str:
        if not ENTITY_REF.match(owner):
            raise ValueError("must be a catalog entity ref such as group:default/platform-team")
        return owner


class Link(BaseModel):
    title: str
    url: str


class ServiceCreateOutput(BaseModel):
    name: str
    workspaceId: str | None = None
    remoteUrl: str | None = None
    repoContentsUrl: str | None = None
    commitHash: str | None = None
    catalogInfoUrl: str | None = None
    entityRef: str | None = None
    entityUrl: str | None = Field(None, description="The entity's page in the catalog")
    previewId: str | None = Field(None, description="What preview:destroy takes to stop the preview")
    previewUrl: str | None = None
    previewStatus: str | None = None
    links: list[Link] = Field(default_factory=list, description="Ready for a Backstage template's output.links")
    skipped: list[str] = Field(default_factory=list, description="Steps whose actions are not installed")


def repository_target(params: ServiceCreateInput) -> dict[str, Any]:
    if params.repoUrl:
        return {"repoUrl": params.repoUrl}
    return {"provider": "embedded", "owner": owner_slug(params.owner), "name": params.name}


@dataclass(frozen=True)
class Where:
    """What the template's links are worked out from: where `repo:create` and `preview:create` would put things."""

    templates: TemplateCatalog
    forges: ForgeRegistry
    previews: Callable[[], PreviewManager]
    settings: Settings


def where_values(params: ServiceCreateInput, where: Where, installed: Collection[str]) -> dict[str, Any]:
    """Where the repository and the preview will be, for the template's links: it is rendered before
    either exists, and would otherwise link to its own placeholders."""
    values: dict[str, Any] = {}
    if "repo:create" in installed:
        repository = planned_repository(repository_target(params), where.forges, where.settings)
        values["forge"] = repository.provider
        values["repository_url"] = repository.contents_url
        values["runbook_url"] = f"{repository.contents_url}/docs/runbook.md"
    if params.preview and "preview:create" in installed:
        values["preview_url"] = where.previews().url_for(params.name)
    return values


def template_values(params: ServiceCreateInput, where: Where, installed: Collection[str]) -> dict[str, Any]:
    declared = where.templates.get(params.template).public_keys
    found = {key: value for key, value in where_values(params, where, installed).items() if key in declared}
    values = {**found, **params.values, "name": params.name, "owner": params.owner}
    if params.description is not None:
        values["description"] = params.description
    if params.system is not None:
        values["system"] = params.system
    return values


def create_service_create_action(
    *,
    templates: TemplateCatalog,
    forges: ForgeRegistry,
    previews: Callable[[], PreviewManager],
    settings: Settings,
) -> Action[ServiceCreateInput, ServiceCreateOutput]:
    where = Where(templates, forges, previews, settings)

    def check(params: ServiceCreateInput) -> None:
        values = template_values(params, where, ACTIONS_USED)
        check_render(RenderInput(template=params.template, values=values), templates)

    def handler(ctx: RunContext, params: ServiceCreateInput) -> ServiceCreateOutput:
        installed = ctx.actions
        out = ServiceCreateOutput(name=params.name)

        ctx.logger.info(f"1/4 rendering {params.template} for {params.name}")
        values = template_values(params, where, installed)
        rendered = ctx.run_step("render", "cookiecutter:render", {"template": params.template, "values": values})
        out.workspaceId = rendered.get("workspaceId")

        if "repo:create" not in installed:
            out.skipped.append("repo:create")
            ctx.logger.warning("2/4 repository: skipped (repo:create is not installed)")
        elif ctx.dry_run:
            ctx.logger.info("2/4 repository: skipped on a dry run")
        else:
            ctx.logger.info("2/4 creating the repository and pushing the first commit")
            target = repository_target(params)
            published = ctx.run_step(
                "publish",
                "repo:create",
                {
                    "workspaceId": out.workspaceId,
                    **target,
                    # An admin's repository goes to the service's owner; a team token's stays its own team's.
                    **({"team": params.owner} if ctx.caller.is_admin else {}),
                    "description": params.description or f"{params.name}: created by pltf",
                    "commitMessage": f"Initial commit from template {params.template}",
                },
            )
            out.remoteUrl = published.get("remoteUrl")
            out.repoContentsUrl = published.get("repoContentsUrl")
            out.commitHash = published.get("commitHash")
            out.catalogInfoUrl = f"{published['rawUrlBase']}/catalog-info.yaml"
            # Visible at once to whoever follows the run: the catalog and preview steps may take a while.
            for name in ("remoteUrl", "repoContentsUrl", "commitHash", "catalogInfoUrl"):
                ctx.output(name, getattr(out, name))

        later_steps = (("catalog", "catalog:register", "3/4 catalog"), ("preview", "preview:create", "4/4 preview"))
        for step, action_id, label in later_steps:
            if step == "preview" and not params.preview:
                ctx.logger.info(f"{label}: not requested")
                continue
            if action_id not in installed:
                out.skipped.append(action_id)
                ctx.logger.warning(f"{label}: skipped ({action_id} is not installed)")
                continue
            if ctx.dry_run or out.remoteUrl is None:
                ctx.logger.info(f"{label}: skipped (no repository was created)")
                continue
            ctx.logger.info(f"{label}: running {action_id}")
            if step == "catalog":
                registered = ctx.run_step(step, action_id, {"catalogInfoUrl": out.catalogInfoUrl})
                out.entityRef = registered.get("entityRef")
                out.entityUrl = registered.get("entityUrl")
            else:
                preview = ctx.run_step(
                    step,
                    action_id,
                    # bestEffort: a preview that cannot start is reported (previewStatus "failed") without
                    # failing the run after the repository was made.
                    {"repoUrl": out.remoteUrl, "service": params.name, "owner": params.owner, "bestEffort": True},
                )
                out.previewId = preview.get("previewId")
                out.previewUrl = preview.get("previewUrl")
                out.previewStatus = preview.get("status")

        out.links = [
            Link(title=title, url=url)
            for title, url in (
                ("Repository", out.repoContentsUrl),
                ("Catalog entity", out.entityUrl),
                ("catalog-info.yaml", out.catalogInfoUrl),
                ("Preview", out.previewUrl),
                ("Run log", f"{settings.server.base_url}/v1/runs/{ctx.run_id}"),
            )
            if url
        ]
        return out

    return Action(
        id="service:create",
        description="The golden path: renders a template, creates the repository, registers it and wires a preview.",
        handler=handler,
        check=check,
        waits=True,  # on its steps, each of which takes its own turn at working
        examples=[
            Example(
                "Create a Python service owned by the platform team (dry run: nothing is created)",
                {"name": "users-api", "owner": "group:default/platform-team", "description": "Users API"},
                dry_run=True,
            ),
        ],
    )
