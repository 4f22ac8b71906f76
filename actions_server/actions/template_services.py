"""`template:services`: the repositories made from a template, the version each is on, and their update
requests; what `pltf update --all` updates."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..action import Action, Example, RunContext
from ..config import Settings
from ..templates.catalog import TEMPLATE_NAME, TemplateCatalog
from ..updates.fleet import services_made_from


class ServicesInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(pattern=TEMPLATE_NAME.pattern, max_length=100, description="A template's name")


class ServicesOutput(BaseModel):
    template: str
    latestVersion: str
    services: list[dict[str, Any]]


def create_template_services_action(
    *, templates: TemplateCatalog, settings: Settings
) -> Action[ServicesInput, ServicesOutput]:
    def handler(ctx: RunContext, params: ServicesInput) -> ServicesOutput:
        latest = templates.get(params.template).version
        found = services_made_from(settings, params.template, ctx.caller)
        ctx.logger.info(f"{len(found)} repositories were made from {params.template}")
        return ServicesOutput(
            template=params.template, latestVersion=latest, services=[service.to_json() for service in found]
        )

    return Action(
        id="template:services",
        description="Lists the repositories made from a template, the version each is on and their update requests.",
        handler=handler,
        examples=[Example("The services made from python-service", {"template": "python-service"})],
    )
