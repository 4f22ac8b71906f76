"""`service:provision`: a service spec (YAML or Terraform) becomes manifests in the GitOps repository.

A dry run is `pltf plan`: the findings and the diff, nothing written. A real
run is `pltf apply`: one commit, or none when nothing changed; a spec that a
policy blocks fails with 422 and writes nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..action import Action, Example, RunContext
from ..catalog import Catalog
from ..config import Settings
from ..errors import FieldError, PltfError
from ..events import EventBus
from ..redact import Redactor
from ..specs.model import MAX_SPEC_BYTES, normalise_owner, parse_documents
from ..specs.provision import SpecParts, Submitter, provision

EXAMPLE_SPEC = "kind: service\nname: promoapi\nenv: prod\npolicy: pii=false\n"


class ProvisionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field(
        min_length=1,
        max_length=MAX_SPEC_BYTES,
        description="The spec file's text: YAML (one or more documents) or Terraform (a module block).",
    )
    format: Literal["auto", "yaml", "hcl"] = Field(
        "auto", description="auto: HCL when the filename ends in .tf or .hcl, else YAML."
    )
    filename: str = Field(
        "spec.yaml",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The file's name, for error messages (and the format, when auto).",
    )
    owner: str | None = Field(
        None,
        max_length=200,
        description="The submitter's team (`--owner`), used when the spec names no owner and the catalog has none.",
    )


class FindingOut(BaseModel):
    rule: str
    severity: Literal["info", "warn", "block"]
    message: str
    fix: str | None = None
    fixed: bool = False
    service: str


class ChangedFile(BaseModel):
    path: str
    status: Literal["added", "modified", "deleted"]


class ProvisionOutput(BaseModel):
    applied: bool = Field(description="False on a dry run (a plan).")
    blocked: bool = Field(description="A finding blocks: nothing can be applied until it is fixed.")
    commit: str | None = Field(None, description="The commit made; absent when nothing changed or on a plan.")
    repository: str = Field(description="The GitOps repository's URL.")
    branch: str
    services: list[dict[str, Any]] = Field(description="Each spec as fixed: owner and where it came from, directory.")
    findings: list[FindingOut]
    changedFiles: list[ChangedFile]
    diff: str = Field(description="Unified diff of the GitOps repository.")


def check_spec(params: ProvisionInput) -> None:
    parse_documents(params.spec, params.filename, params.format)
    if params.owner is not None:
        try:
            normalise_owner(params.owner)
        except ValueError as exc:
            raise PltfError(str(exc), 422, "invalid_input", [FieldError("input.owner", str(exc))]) from None


def create_service_provision_action(
    *, settings: Settings, redactor: Redactor, events: EventBus, catalog: Catalog
) -> Action[ProvisionInput, ProvisionOutput]:
    parts = SpecParts(settings, redactor, events, catalog)

    def handler(ctx: RunContext, params: ProvisionInput) -> ProvisionOutput:
        submitter = Submitter(caller=ctx.caller.name, owner=params.owner, team=ctx.caller.team)
        ctx.logger.info(f"{'planning' if ctx.dry_run else 'applying'} {params.filename}")
        result = provision(parts, params.spec, params.filename, submitter, dry_run=ctx.dry_run, fmt=params.format)
        for plan in result.services:
            if plan.spec.owner:
                ctx.logger.info(f"{plan.spec.key}: owner {plan.spec.owner} (from {plan.owner_source})")
            else:
                ctx.logger.info(f"{plan.spec.key}: no owner found (the spec, the catalog and the caller name none)")
        for finding in result.findings:
            level = ctx.logger.info if finding.severity == "info" else ctx.logger.warning
            level(str(finding), rule=finding.rule)
        if result.commit:
            ctx.logger.info(f"committed {result.commit[:12]} to {result.repository} ({len(result.diff.files)} files)")
        elif result.applied:
            ctx.logger.info("nothing changed: no commit")
        else:
            ctx.logger.info(f"{len(result.diff.files)} files would change" + (" (blocked)" if result.blocked else ""))
        return ProvisionOutput(
            applied=result.applied,
            blocked=result.blocked,
            commit=result.commit,
            repository=result.repository,
            branch=result.branch,
            services=[plan.to_json() for plan in result.services],
            findings=[FindingOut.model_validate(f.to_json()) for f in result.findings],
            changedFiles=[ChangedFile(path=f.path, status=f.status) for f in result.diff.files],
            diff=result.diff.text,
        )

    return Action(
        id="service:provision",
        description="Turns a service spec (YAML or Terraform) into namespace, network policy, budget, secrets, SLO "
        "alerts, dashboard and Argo CD Application in the GitOps repository, with guardrails. A dry run plans.",
        handler=handler,
        check=check_spec,
        examples=[
            Example(
                "Plan the seed's spec (owner from the submitter)",
                {"spec": EXAMPLE_SPEC, "owner": "group:default/growth"},
                dry_run=True,
            ),
            Example(
                "Provision it from its Terraform form",
                {
                    "spec": 'module "promo" {\n  source = "app/platform/service"\n  name   = "promoapi"\n  env    = "prod"\n}\n',
                    "filename": "promo.tf",
                    "owner": "group:default/growth",
                },
            ),
        ],
    )
