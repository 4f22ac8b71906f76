"""From a spec file to a commit in the GitOps repository, in one pass.

    parts = SpecParts(settings, redactor, events, catalog)
    result = provision(parts, text, "spec.yaml", submitter, dry_run=True)   # pltf plan
    for finding in result.findings: print(finding)
    print(result.diff.text)
    result = provision(parts, text, "spec.yaml", submitter, dry_run=False)  # pltf apply
    print(result.commit)                                                    # None: nothing changed

For each spec: find its owner (the spec; else the catalog entity of the same
name; else the submitter's `--owner`; else the caller token's team), look for
another team's service of the same name (catalog, GitOps repository), run the
spec policies (which fill the gaps with safe fixes), render the manifests, and
run the manifest policies. Nothing is written when any finding blocks: one file
is one commit, or none.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from ..catalog.base import Catalog
from ..config import Settings
from ..errors import FieldError, PltfError
from ..events import EventBus
from ..forges.base import GitAuthor
from ..gitops import Changes, Diff, GitOpsRepository
from ..mappings import deep_merge
from ..names import owner_slug
from ..redact import Redactor
from .manifests import Context, directory, dump, quantity, render
from .model import Spec, SpecDocument, normalise_owner, parse_documents
from .policy import Finding, PolicySet, evaluate, load_policies

OWNER_SOURCES = {
    "spec": "the spec",
    "catalog": "the catalog entity {name}",
    "cli": "the submitter (--owner)",
    "token": "the team of the caller's token ({caller})",
}


@dataclass(frozen=True)
class SpecParts:
    """What provisioning uses: the settings (policies, the GitOps repository), the redactor (git's errors),
    the event bus (`spec.applied`) and the catalog, when there is one (owners)."""

    settings: Settings
    redactor: Redactor
    events: EventBus
    catalog: Catalog | None = None


@dataclass(frozen=True)
class Submitter:
    """Who is asking: `owner` from --owner (or the action's input), `team` from their token."""

    caller: str = "cli"
    owner: str | None = None
    team: str | None = None


@dataclass
class ServicePlan:
    spec: Spec
    source: str
    owner_source: str | None
    findings: list[Finding]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        return any(f.severity == "block" for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.spec.key,
            "namespace": self.spec.namespace,
            "source": self.source,
            "owner": self.spec.owner,
            "ownerSource": self.owner_source,
            "blocked": self.blocked,
            "directory": directory(self.spec),
            "spec": self.spec.document(),
        }


@dataclass
class ProvisionResult:
    services: list[ServicePlan]
    diff: Diff
    commit: str | None
    repository: str
    branch: str
    applied: bool

    @property
    def findings(self) -> list[Finding]:
        return [f for plan in self.services for f in plan.findings]

    @property
    def blocked(self) -> bool:
        return any(plan.blocked for plan in self.services)


def provision(
    parts: SpecParts,
    text: str,
    filename: str,
    submitter: Submitter,
    *,
    dry_run: bool,
    fmt: Literal["yaml", "hcl", "auto"] = "auto",
    policies: PolicySet | None = None,
    repository: GitOpsRepository | None = None,
) -> ProvisionResult:
    """Plans (dry_run) or applies a spec file. Blocked specs raise a 422 on apply and write nothing."""
    documents = parse_documents(text, filename, fmt)
    policies = policies or load_policies(parts.settings)
    repo = repository or GitOpsRepository.from_settings(parts.settings, parts.redactor)
    plans = [plan_service(parts, doc, submitter, policies, repo) for doc in documents]
    files: dict[str, str | None] = {path: content for plan in plans for path, content in plan.files.items()}
    changes = Changes(files, replace=tuple(directory(plan.spec) for plan in plans if plan.files))
    blocked = [f for plan in plans for f in plan.findings if f.severity == "block"]
    if dry_run:
        return ProvisionResult(plans, repo.diff(changes), None, repo.url, repo.branch, False)
    if blocked:
        raise blocked_error(blocked)
    message = commit_message(plans, submitter)
    author = GitAuthor(name=f"pltf ({submitter.caller})", email=f"pltf@{socket.gethostname() or 'localhost'}")
    commit, diff = repo.apply_with_diff(changes, message, author)
    if commit is not None:
        _publish_applied(parts.events, plans, commit)
    return ProvisionResult(plans, diff, commit, repo.url, repo.branch, True)


def _publish_applied(events: EventBus, plans: list[ServicePlan], commit: str) -> None:
    """Each applied service's env, team and budget, as a platform event (the portal's cost shows budgets against it)."""
    for plan in plans:
        spec = plan.spec
        budget = spec.budget.model_dump(exclude_none=True) if spec.budget else {}
        events.publish(
            "spec.applied",
            {
                "service": spec.name,
                "env": spec.env,
                "team": spec.owner,
                "namespace": spec.namespace,
                "experiment": spec.experiment,
                "budget": budget,
                "deliveryId": f"spec:{spec.key}:{commit}",
            },
        )


def blocked_error(blocked: list[Finding]) -> PltfError:
    first = blocked[0]
    more = f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else ""
    fix = f"; fix: {first.fix}" if first.fix else ""
    return PltfError(
        f"blocked by policy {first.rule}: {first.service}: {first.message}{fix}{more}",
        422,
        "policy_blocked",
        [
            FieldError(f"policy:{f.rule}", f"{f.service}: {f.message}" + (f" (fix: {f.fix})" if f.fix else ""))
            for f in blocked
        ],
    )


def commit_message(plans: list[ServicePlan], submitter: Submitter) -> str:
    names = ", ".join(plan.spec.key for plan in plans)
    lines = [f"Provision {names}", ""]
    for plan in plans:
        for finding in plan.findings:
            lines.append(f"- {finding}")
    lines += ["", f"Submitted by {submitter.caller} with pltf apply / service:provision."]
    return "\n".join(lines).strip() + "\n"


# ------------------------------------------------------------------ one service


def plan_service(
    parts: SpecParts, doc: SpecDocument, submitter: Submitter, policies: PolicySet, repo: GitOpsRepository
) -> ServicePlan:
    spec = doc.spec
    owner, source, catalog_owner = resolve_owner(parts.catalog, spec, submitter)
    refuse_another_teams(spec, owner, submitter)
    facts: dict[str, Any] = {
        "spec": spec.model_dump(mode="json", exclude_none=True),
        "owner": {},
        "exposure": spec.effective_exposure,
        "collision": {},
        "settings": policies.settings,
    }
    if owner is not None and source is not None:
        facts["owner"] = {
            "ref": owner,
            "name": owner_slug(owner),
            "source": source,
            "source_description": OWNER_SOURCES[source].format(name=spec.name, caller=submitter.caller),
        }
        facts["collision"] = find_collision(spec, owner, catalog_owner, repo)

    def refresh(current: dict[str, Any]) -> None:
        derive(current, policies)

    derive(facts, policies)
    findings = evaluate(policies, facts, "spec", spec.key, refresh)
    if any(f.severity == "block" for f in findings):
        return ServicePlan(spec, doc.source, source, findings)
    try:
        fixed = Spec.model_validate(facts["spec"])
    except ValidationError as exc:
        raise PltfError(
            f"the policies' defaults make {spec.key} invalid (check settings.tiers in the policy file): {exc}",
            500,
            "policy_file_invalid",
        ) from None
    team = facts.get("team") or {}
    context = Context(
        settings=policies.settings,
        cost_center=str(team.get("costCenter") or owner_slug(fixed.owner or "unknown")),
        repo_url=repo.url,
        branch=repo.branch,
        owner_source=source or "unknown",
    )
    rendered = render(fixed, context)
    facts["manifests"] = [obj for objects in rendered.values() for obj in objects]
    findings += evaluate(policies, facts, "manifests", spec.key)
    base = directory(fixed)
    files = {f"{base}/{name}": dump(fixed, objects) for name, objects in rendered.items()}
    return ServicePlan(fixed, doc.source, source, findings, files)


def derive(facts: dict[str, Any], policies: PolicySet) -> None:
    """The facts that follow from the spec as fixed so far: tier, team limits, budget numbers."""
    spec = facts["spec"]
    tiers = policies.settings.get("tiers") or {}
    facts["tier"] = tiers.get(spec.get("tier"), {}) if spec.get("tier") else {}
    owner_ref = (facts.get("owner") or {}).get("ref") or spec.get("owner")
    team = dict(policies.teams.get("*", {}))
    if owner_ref:
        team = deep_merge(team, policies.teams.get(owner_ref, {}))
    limits = dict(team.get("limits") or {})
    for key, unit in (("cpu", "cpu_cores"), ("memory", "memory_bytes")):
        if limits.get(key) is not None:
            limits[unit] = quantity(limits[key])
    team["limits"] = limits
    facts["team"] = team
    budget = spec.get("budget") or {}
    facts["budget"] = {
        unit: quantity(budget[key])
        for key, unit in (("cpu", "cpu_cores"), ("memory", "memory_bytes"))
        if budget.get(key) is not None
    }


def resolve_owner(
    catalog: Catalog | None, spec: Spec, submitter: Submitter
) -> tuple[str | None, str | None, str | None]:
    """(owner, where it came from, the catalog entity's owner if there is one)."""
    catalog_owner = catalog_entity_owner(catalog, spec.name)
    if spec.owner:
        return spec.owner, "spec", catalog_owner
    if catalog_owner:
        return catalog_owner, "catalog", catalog_owner
    for value, source in ((submitter.owner, "cli"), (submitter.team, "token")):
        if value:
            try:
                return normalise_owner(value), source, catalog_owner
            except ValueError as exc:
                raise PltfError(str(exc), 422, "invalid_input", [FieldError("owner", str(exc))]) from None
    return None, None, catalog_owner


def refuse_another_teams(spec: Spec, owner: str | None, submitter: Submitter) -> None:
    """A team's token plans and writes its own team's services only (admin tokens have no team).

    Naming another owner in the spec would otherwise rewrite that team's manifests in the GitOps
    repository: the collision check only compares the spec's owner with earlier claims.
    """
    if submitter.team is None or owner is None:
        return
    try:
        team = normalise_owner(submitter.team)
    except ValueError:
        team = submitter.team
    if owner != team:
        raise PltfError(
            f"{spec.key} belongs to {owner}; a token of {team} may provision only its own team's services",
            403,
            "forbidden",
            [FieldError("owner", f"not this token's team ({team})")],
        )


def catalog_entity_owner(catalog: Catalog | None, name: str) -> str | None:
    """The owner of the catalog's Component (or System) named `name`, when a catalog is there.

    The catalog is optional: a server without one (or an older one) just has no
    entity to offer, and the owner comes from the submitter.
    """
    if catalog is None:
        return None
    for kind in ("component", "system"):
        try:
            entity = catalog.entity(kind, "default", name)
        except PltfError:
            return None  # the catalog is there but cannot answer (e.g. Backstage down): no opinion
        owner = ((entity or {}).get("spec") or {}).get("owner")
        if isinstance(owner, str) and owner:
            try:
                return normalise_owner(owner)
            except ValueError:
                return None
    return None


def find_collision(spec: Spec, owner: str, catalog_owner: str | None, repo: GitOpsRepository) -> dict[str, Any]:
    """Another team's claim on this name, from the catalog or the GitOps repository; {} when there is none."""
    if catalog_owner and catalog_owner != owner:
        return {"owner": catalog_owner, "where": f"catalog entity {spec.name}"}
    for path, text in repo.files(f"envs/*/{spec.name}/namespace.yaml").items():
        try:
            namespace = yaml.safe_load(text.split("\n", 1)[1] if text.startswith("#") else text)
        except yaml.YAMLError:
            continue
        existing = ((namespace or {}).get("metadata", {}).get("annotations") or {}).get("pltf.io/owner-ref")
        if isinstance(existing, str) and existing != owner:
            return {"owner": existing, "where": f"{path.rsplit('/', 1)[0]} in the GitOps repository"}
    return {}
