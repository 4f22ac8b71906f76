"""`service:policies`: the policies `service:provision` applies, as this server has them (`pltf policies list`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..action import Action, Example, RunContext
from ..config import Settings
from ..specs.policy import load_policies


class PoliciesInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoliciesOutput(BaseModel):
    sources: list[str] = Field(description="The policy files, the default first, then the org's.")
    policies: list[dict[str, Any]] = Field(description="Each rule: id, severity, phase, when, message, fix, source.")
    settings: dict[str, Any] = Field(description="Tiers, allow-lists, secret store and the other settings.")
    teams: dict[str, Any] = Field(description="Team limits and cost centers, by owner ref.")


def create_service_policies_action(*, settings: Settings) -> Action[PoliciesInput, PoliciesOutput]:
    def handler(ctx: RunContext, params: PoliciesInput) -> PoliciesOutput:
        policies = load_policies(settings)
        ctx.logger.info(f"{len(policies.rules)} policies from {', '.join(policies.sources)}")
        return PoliciesOutput.model_validate(policies.to_json())

    return Action(
        id="service:policies",
        description="Lists the service-spec policies (rules, severities, fixes), tiers and team limits in force.",
        handler=handler,
        examples=[Example("List the policies", {})],
    )
