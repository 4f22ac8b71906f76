"""Service specs as code: `service:provision`, `pltf plan` / `pltf apply` and the policies."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from actions_server.app import create_app
from actions_server.auth import hash_token
from actions_server.config import Settings
from actions_server.services import Services
from actions_server.slo import MULTIWINDOW_POLICY, service_slo_rules
from actions_server.specs import SpecParts, Submitter, load_policies, parse_specs, provision
from actions_server.templates.check import (
    Manifest,
    ToolMissingError,
    check_kubernetes_models,
    check_kubernetes_validate,
)
from conftest import TOKEN, make_settings, pltf

# The seed article's spec, and its Terraform form, word for word.
SEED_YAML = "kind: service\nname: promoapi\nenv: prod\npolicy: pii=false\n"
SEED_TF = 'module "promo" { source = "app/platform/service" name = "promoapi" env = "prod" }\n'
# The same module as `terraform fmt` writes it.
SEED_TF_FORMATTED = 'module "promo" {\n  source = "app/platform/service"\n  name   = "promoapi"\n  env    = "prod"\n}\n'

FULL_YAML = """\
kind: service
name: checkout
env: prod
owner: group:default/payments
tier: critical
policy: {pii: true, exposure: internal}
slo: {availability: 99.95, latency_p99_ms: 250}
budget: {monthly_usd: 900, cpu: "4", memory: 8Gi}
secrets:
  - {name: db-password, path: prod/checkout/db, property: password}
  - {name: stripe, path: prod/checkout/stripe}
dependsOn: [promoapi]
experiment: spring-sale
"""
FULL_TF = """\
# The same service, for people who live in Terraform.
module "checkout" {
  source = "app/platform/service"
  name   = "checkout"
  env    = "prod"
  owner  = "group:default/payments"
  tier   = "critical"
  policy = {
    pii      = true
    exposure = "internal"
  }
  slo = {
    availability   = 99.95
    latency_p99_ms = 250
  }
  budget = { monthly_usd = 900, cpu = "4", memory = "8Gi" }
  secrets = [
    { name = "db-password", path = "prod/checkout/db", property = "password" },
    { name = "stripe", path = "prod/checkout/stripe" },
  ]
  dependsOn  = ["promoapi"]
  experiment = "spring-sale"
}

module "vpc" {
  source = "terraform-aws-modules/vpc/aws"
  name   = "not-ours"
}
"""

ORG_POLICY = """\
settings:
  piiEgressAllowList:
    - {name: egress-gateway, namespace: egress-gateway, ports: [443]}
    - {name: payment-processor, cidr: 203.0.113.0/24, ports: [443]}
teams:
  group:default/growth:
    costCenter: cc-4711
    limits: {monthly_usd: 1000, cpu: "4", memory: 8Gi}
policies:
  - id: budget-missing
    severity: info
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    policy_file = tmp_path / "org-policies.yaml"
    policy_file.write_text(ORG_POLICY)
    return make_settings(tmp_path, spec_policy_file=policy_file)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    created = Services.create(settings)
    yield created
    created.close()


def spec_parts(services: Services) -> SpecParts:
    """What `service:provision` hands provisioning (services.built_in_actions)."""
    return SpecParts(services.settings, services.redactor, services.events, services.catalog)


def gitops_bare(settings: Settings) -> Path:
    return settings.storage.data_dir / "git" / "platform" / "gitops.git"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def post(client: TestClient, spec: str, *, dry_run: bool, filename: str = "spec.yaml", **extra: Any) -> Any:
    return client.post(
        "/v1/actions/service:provision/runs",
        json={"input": {"spec": spec, "filename": filename, **extra}, "dryRun": dry_run},
    )


def plan_files(services: Services, text: str, filename: str, owner: str = "group:default/growth") -> dict[str, str]:
    result = provision(spec_parts(services), text, filename, Submitter(owner=owner), dry_run=True)
    assert not result.blocked, [str(f) for f in result.findings]
    return {path: content for plan in result.services for path, content in plan.files.items()}


def objects(files: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]


# ------------------------------------------------------------------ the seed


def test_the_seed_spec_and_its_terraform_form_plan_apply_and_agree(client: TestClient, settings: Settings) -> None:
    planned = post(client, SEED_YAML, dry_run=True, owner="group:default/growth")
    assert planned.status_code == 200, planned.text
    output = planned.json()["output"]
    assert output["applied"] is False and output["blocked"] is False and output.get("commit") is None
    assert {f["path"].rsplit("/", 1)[1] for f in output["changedFiles"]} == {
        "namespace.yaml", "networkpolicy.yaml", "resourcequota.yaml", "limitrange.yaml",
        "prometheusrule.yaml", "dashboard.yaml", "application.yaml",
    }  # fmt: skip
    assert all(f["path"].startswith("envs/prod/promoapi/") for f in output["changedFiles"])
    assert "+++ b/envs/prod/promoapi/namespace.yaml" in output["diff"]
    assert not gitops_bare(settings).exists(), "a plan writes nothing"
    (service,) = output["services"]
    assert service["owner"] == "group:default/growth" and service["ownerSource"] == "cli"
    # The safe fixes were applied and reported: tier, SLO and limits from the tier's defaults.
    fixed = {f["rule"]: f for f in output["findings"] if f["fixed"]}
    assert {"tier-default", "slo-missing", "limits-missing", "budget-missing", "owner-inferred"} <= set(fixed)
    assert fixed["slo-missing"]["severity"] == "warn"
    assert "slo.availability: 99.9" in fixed["slo-missing"]["fix"]
    assert service["spec"]["slo"] == {"availability": 99.9, "latency_p99_ms": 500}
    assert service["spec"]["budget"] == {"monthly_usd": 500, "cpu": "2", "memory": "4Gi"}

    for tf in (SEED_TF, SEED_TF_FORMATTED):
        tf_plan = post(client, tf, dry_run=True, filename="promo.tf", owner="group:default/growth")
        assert tf_plan.json()["output"]["diff"] == output["diff"], "the Terraform form must give the same result"

    applied = post(client, SEED_YAML, dry_run=False, owner="group:default/growth")
    assert applied.status_code == 200, applied.text
    commit = applied.json()["output"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert git(gitops_bare(settings), "rev-parse", "main").strip() == commit

    # Applying again, in either form, changes nothing and makes no commit.
    for text, filename in ((SEED_YAML, "spec.yaml"), (SEED_TF, "promo.tf")):
        again = post(client, text, dry_run=False, filename=filename, owner="group:default/growth")
        assert again.status_code == 200, again.text
        assert again.json()["output"].get("commit") is None
        assert again.json()["output"]["changedFiles"] == [] and again.json()["output"]["diff"] == ""
    assert git(gitops_bare(settings), "rev-list", "--count", "main").strip() == "1"


def test_the_seeds_one_line_terraform_is_read_as_written() -> None:
    assert parse_specs(SEED_TF, "seed.tf") == parse_specs(SEED_TF_FORMATTED, "seed.tf")
    (spec,) = parse_specs(SEED_TF, "seed.tf")
    assert (spec.kind, spec.name, spec.env) == ("service", "promoapi", "prod")


def test_terraform_and_yaml_forms_give_exactly_the_same_spec_and_manifests(services: Services) -> None:
    assert parse_specs(FULL_TF, "checkout.tf") == parse_specs(FULL_YAML, "checkout.yaml")
    yaml_result = provision(spec_parts(services), FULL_YAML, "checkout.yaml", Submitter(), dry_run=True)
    tf_result = provision(spec_parts(services), FULL_TF, "checkout.tf", Submitter(), dry_run=True)
    assert [f.to_json() for f in yaml_result.findings] == [f.to_json() for f in tf_result.findings]
    assert yaml_result.diff.text == tf_result.diff.text and yaml_result.diff.files
    assert len(tf_result.services) == 1, "a module with another source is not a service spec"


def test_several_documents_make_one_commit(client: TestClient, settings: Settings) -> None:
    text = SEED_YAML + "---\n" + SEED_YAML.replace("env: prod", "env: staging")
    response = post(client, text, dry_run=False, owner="growth")
    assert response.status_code == 200, response.text
    paths = {f["path"] for f in response.json()["output"]["changedFiles"]}
    assert {p.split("/")[1] for p in paths} == {"prod", "staging"}
    assert git(gitops_bare(settings), "rev-list", "--count", "main").strip() == "1"


# ------------------------------------------------------------------ guardrails


def test_a_public_pii_service_is_blocked_with_an_explanation(client: TestClient, settings: Settings) -> None:
    spec = "kind: service\nname: signup\nenv: prod\nowner: growth\npolicy: pii=true, exposure=public\n"
    planned = post(client, spec, dry_run=True).json()["output"]
    assert planned["blocked"] is True
    (block,) = [f for f in planned["findings"] if f["severity"] == "block"]
    assert block["rule"] == "pii-public-needs-data-protection"
    assert "personal data" in block["message"] and "publicly" in block["message"]
    assert "pltf.io/data-protection-review" in block["fix"] and "exposure: internal" in block["fix"]

    applied = post(client, spec, dry_run=False)
    assert applied.status_code == 422, applied.text
    error = applied.json()["error"]
    assert error["code"] == "policy_blocked"
    assert "pii-public-needs-data-protection" in error["message"] and "fix:" in error["message"]
    assert error["fields"][0]["field"] == "policy:pii-public-needs-data-protection"
    assert not gitops_bare(settings).exists(), "a blocked apply writes nothing"

    reviewed = spec + "annotations:\n  pltf.io/data-protection-review: https://wiki.example.com/dpia/signup\n"
    ok = post(client, reviewed, dry_run=False)
    assert ok.status_code == 200, ok.text
    namespace = yaml.safe_load(git(gitops_bare(settings), "show", "main:envs/prod/signup/namespace.yaml"))
    assert namespace["metadata"]["annotations"]["pltf.io/data-protection-review"].endswith("/dpia/signup")
    assert namespace["metadata"]["labels"]["pltf.io/pii"] == "true"


def test_no_owner_blocks_and_says_how_to_give_one(client: TestClient) -> None:
    output = post(client, SEED_YAML, dry_run=True).json()["output"]
    (block,) = [f for f in output["findings"] if f["severity"] == "block"]
    assert block["rule"] == "owner-required" and "--owner" in block["fix"]
    assert output["services"][0]["ownerSource"] is None


def test_owner_comes_from_the_tokens_team_and_says_so(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.yaml"
    token_file.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"name": "growth-ci", "sha256": hash_token("growth-token-123"), "team": "group:default/growth"}
                ]
            }
        )
    )
    settings = make_settings(tmp_path, api_token=None, token_file=token_file)
    with TestClient(create_app(settings), headers={"Authorization": "Bearer growth-token-123"}) as client:
        output = post(client, SEED_YAML, dry_run=True).json()["output"]
    (service,) = output["services"]
    assert service["owner"] == "group:default/growth" and service["ownerSource"] == "token"
    (inferred,) = [f for f in output["findings"] if f["rule"] == "owner-inferred"]
    assert "the team of the caller's token (growth-ci)" in inferred["message"]


class FakeCatalog:
    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners

    def entity(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        owner = self.owners.get(name) if kind == "component" else None
        return {"kind": "Component", "metadata": {"name": name}, "spec": {"owner": owner}} if owner else None


def test_owner_from_the_catalog_and_collisions_with_other_teams(services: Services, monkeypatch: Any) -> None:
    monkeypatch.setattr(services, "catalog", FakeCatalog({"promoapi": "group:default/growth"}), raising=False)
    result = provision(
        spec_parts(services), SEED_YAML, "spec.yaml", Submitter(owner="group:default/payments"), dry_run=True
    )
    assert result.services[0].spec.owner == "group:default/growth"
    assert result.services[0].owner_source == "catalog"
    assert any("the catalog entity promoapi" in f.message for f in result.findings)

    # The spec names another team than the catalog's: the name is taken.
    stolen = SEED_YAML + "owner: group:default/payments\n"
    result = provision(spec_parts(services), stolen, "spec.yaml", Submitter(), dry_run=True)
    (block,) = [f for f in result.findings if f.severity == "block"]
    assert block.rule == "name-collision" and "group:default/growth" in block.message


def test_a_name_in_the_gitops_repository_belongs_to_its_team(services: Services) -> None:
    provision(spec_parts(services), SEED_YAML, "spec.yaml", Submitter(owner="growth"), dry_run=False)
    other_env = SEED_YAML.replace("env: prod", "env: dev")
    result = provision(spec_parts(services), other_env, "spec.yaml", Submitter(owner="payments"), dry_run=True)
    (block,) = [f for f in result.findings if f.severity == "block"]
    assert block.rule == "name-collision"
    assert "envs/prod/promoapi in the GitOps repository" in block.message
    # The owning team itself may add the env.
    assert not provision(spec_parts(services), other_env, "spec.yaml", Submitter(owner="growth"), dry_run=True).blocked


def test_budget_above_the_teams_limit_blocks_in_prod_only(services: Services) -> None:
    spec = SEED_YAML + "owner: growth\nbudget: {monthly_usd: 1500, cpu: '8', memory: 4Gi}\n"
    result = provision(spec_parts(services), spec, "spec.yaml", Submitter(), dry_run=True)
    blocks = {f.rule: f for f in result.findings if f.severity == "block"}
    assert set(blocks) == {"budget-over-team-limit", "quota-over-team-limit"}
    assert "$1500 is above group:default/growth's limit of $1000 in prod" in blocks["budget-over-team-limit"].message
    assert "8 CPU" in blocks["quota-over-team-limit"].message
    staging = spec.replace("env: prod", "env: staging")
    assert not provision(spec_parts(services), staging, "spec.yaml", Submitter(), dry_run=True).blocked


def test_a_budget_exactly_at_the_teams_limit_passes_and_one_dollar_more_blocks(client: TestClient) -> None:
    # ORG_POLICY gives growth a limit of $1000, 4 CPU and 8Gi in production.
    at_limit = SEED_YAML + "owner: growth\nbudget: {monthly_usd: 1000, cpu: '4', memory: 8Gi}\n"
    planned = post(client, at_limit, dry_run=True).json()["output"]
    assert planned["blocked"] is False, planned["findings"]
    assert [f for f in planned["findings"] if f["severity"] == "block"] == []

    over = at_limit.replace("monthly_usd: 1000", "monthly_usd: 1001")
    blocked = post(client, over, dry_run=True).json()["output"]
    assert blocked["blocked"] is True
    assert [f["rule"] for f in blocked["findings"] if f["severity"] == "block"] == ["budget-over-team-limit"]
    over_quota = at_limit.replace("cpu: '4'", "cpu: 4001m")
    blocked = post(client, over_quota, dry_run=True).json()["output"]
    assert [f["rule"] for f in blocked["findings"] if f["severity"] == "block"] == ["quota-over-team-limit"]


@contextmanager
def client_with_policies(tmp_path: Path, org_policy: str) -> Iterator[TestClient]:
    policy_file = tmp_path / "org-policies.yaml"
    policy_file.write_text(org_policy)
    settings = make_settings(tmp_path, spec_policy_file=policy_file)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def blocks(response: Any) -> list[str]:
    return [f["rule"] for f in response.json()["output"]["findings"] if f["severity"] == "block"]


PII_SPEC = "kind: service\nname: ledger\nenv: prod\nowner: growth\npolicy: pii=true, exposure=internal\n"


def test_an_allow_list_open_to_the_internet_blocks_pii_services_at_the_manifest_check(
    tmp_path: Path,
) -> None:
    # The spec is fine; the org's settings turn the generated NetworkPolicy into egress to anywhere.
    org = "settings:\n  piiEgressAllowList:\n    - {name: anywhere, cidr: 0.0.0.0/0}\n"
    with client_with_policies(tmp_path, org) as client:
        planned = post(client, PII_SPEC, dry_run=True)
        assert planned.status_code == 200, planned.text
        assert blocks(planned) == ["pii-egress-allow-list-only"]
        (finding,) = [f for f in planned.json()["output"]["findings"] if f["severity"] == "block"]
        assert finding["message"] == "a pii=true service must not have egress to 0.0.0.0/0"
        applied = post(client, PII_SPEC, dry_run=False)
        assert applied.status_code == 422, applied.text
        error = applied.json()["error"]
        assert error["code"] == "policy_blocked"
        assert [f["field"] for f in error["fields"]] == ["policy:pii-egress-allow-list-only"]
        assert not (tmp_path / "data" / "git" / "platform" / "gitops.git").exists(), "a blocked apply writes nothing"
        # Without personal data the same public egress is the ordinary one.
        assert blocks(post(client, PII_SPEC.replace("pii=true", "pii=false"), dry_run=True)) == []


REQUIRE_ALLOW_LIST = """\
policies:
  - id: pii-egress-needs-allow-list
    severity: block
    phase: manifests
    description: A pii=true service reaches the outside only through an allow-list policy.
    when:
      all:
        - {fact: spec.policy.pii, eq: true}
        - no_manifest:
            all:
              - {fact: manifest.kind, eq: NetworkPolicy}
              - {fact: manifest.metadata.name, eq: allow-egress-allow-list}
    message: "{spec.name} handles personal data and has no egress allow-list policy"
"""


@pytest.mark.parametrize(
    ("allow_list", "blocked"),
    [("", []), ("settings:\n  piiEgressAllowList: []\n", ["pii-egress-needs-allow-list"])],
    ids=["default-allow-list", "empty-allow-list"],
)
def test_an_org_rule_can_require_a_manifest(tmp_path: Path, allow_list: str, blocked: list[str]) -> None:
    with client_with_policies(tmp_path, allow_list + REQUIRE_ALLOW_LIST) as client:
        planned = post(client, PII_SPEC, dry_run=True)
        assert planned.status_code == 200, planned.text
        assert blocks(planned) == blocked
        if blocked:
            (finding,) = [f for f in planned.json()["output"]["findings"] if f["severity"] == "block"]
            assert finding["message"] == "ledger handles personal data and has no egress allow-list policy"


CONDITION_RULES = """\
policies:
  - {id: outside-prod, severity: info, message: m, when: {fact: spec.env, ne: prod}}
  - {id: not-an-api-name, severity: info, message: m, when: {not: {fact: spec.name, matches: "-api$"}}}
  - {id: pii-as-number, severity: info, message: m, when: {fact: spec.policy.pii, gt: 0}}
  - {id: name-as-number, severity: info, message: m, when: {fact: spec.name, gt: 0}}
  - {id: unlike-a-missing-fact, severity: info, message: m, when: {fact: spec.env, ne: {fact: settings.noSuchSetting}}}
  - {id: budget-at-least-500, severity: info, message: m, when: {fact: spec.budget.monthly_usd, ge: 500}}
  - {id: budget-under-500, severity: info, message: m, when: {fact: spec.budget.monthly_usd, lt: 500}}
  - {id: budget-at-most-500, severity: info, message: m, when: {fact: spec.budget.monthly_usd, le: 500}}
"""
# The standard tier's default budget, which the spec below gets: exactly on the boundary of the three.
AT_500 = {"budget-at-least-500", "budget-at-most-500"}


@pytest.mark.parametrize(
    ("name", "env", "fired"),
    [
        ("ledger-api", "prod", AT_500),
        ("ledger-api", "staging", {"outside-prod"} | AT_500),
        ("ledger", "prod", {"not-an-api-name"} | AT_500),
    ],
)
def test_the_condition_language_of_org_rules(tmp_path: Path, name: str, env: str, fired: set[str]) -> None:
    # `not`, `ne`, `matches`, `ge`, `lt` and `le` as documented in policies/default.yaml; neither a
    # boolean nor a name is a number, and a comparison with a fact that is not there never holds.
    spec = PII_SPEC.replace("name: ledger", f"name: {name}").replace("env: prod", f"env: {env}")
    with client_with_policies(tmp_path, CONDITION_RULES) as client:
        planned = post(client, spec, dry_run=True)
        assert planned.status_code == 200, planned.text
        own = {rule["id"] for rule in yaml.safe_load(CONDITION_RULES)["policies"]}
        assert {f["rule"] for f in planned.json()["output"]["findings"]} & own == fired


def test_policies_are_data_the_org_file_overrides_them(tmp_path: Path, services: Services) -> None:
    policies = load_policies(services.settings)
    rules = {rule.id: rule for rule in policies.rules}
    assert rules["budget-missing"].severity == "info" and rules["budget-missing"].source.endswith("org-policies.yaml")
    assert rules["pii-public-needs-data-protection"].source == "default"
    assert policies.teams["group:default/growth"]["costCenter"] == "cc-4711"
    # An org can turn a rule off and add its own.
    extra = tmp_path / "stricter.yaml"
    extra.write_text(
        "policies:\n"
        "  - {id: tier-default, enabled: false}\n"
        "  - id: experiments-not-in-prod\n"
        "    severity: block\n"
        "    when: {all: [{fact: spec.env, eq: prod}, {fact: spec.experiment, exists: true}]}\n"
        "    message: 'experiment {spec.experiment} does not belong in prod'\n"
    )
    stricter = load_policies(extra=extra)
    assert "tier-default" not in {rule.id for rule in stricter.rules}
    spec = SEED_YAML + "owner: growth\nexperiment: spring-sale\ntier: standard\n"
    result = provision(spec_parts(services), spec, "spec.yaml", Submitter(), dry_run=True, policies=stricter)
    (block,) = [f for f in result.findings if f.severity == "block"]
    assert block.message == "experiment spring-sale does not belong in prod"


# ------------------------------------------------------------------ bad specs


BAD_SPECS = [
    ("spec.yaml", SEED_YAML + "colour: blue\n", "colour", 5, "Extra inputs are not permitted"),
    ("spec.yaml", SEED_YAML + "slo:\n  availability: lots\n", "slo.availability", 6, "valid number"),
    ("spec.yaml", SEED_YAML.replace("promoapi", "Promo_API"), "name", 2, "not a valid service name"),
    ("spec.yaml", SEED_YAML + "budget: {cpu: many}\n", "budget.cpu", 5, "not a Kubernetes quantity"),
    ("spec.yaml", SEED_YAML + "secrets:\n  - {name: db, path: ../../etc}\n", "secrets[0].path", 6, "store path"),
    ("spec.yaml", SEED_YAML + "policy: pii=maybe\n", "policy", 5, "given twice"),
    ("spec.yaml", SEED_YAML.replace("pii=false", "pii=maybe"), "policy.pii", 4, "valid boolean"),
    ("spec.yaml", SEED_YAML + "---\nkind: service\nname: b\nenv: prod\ndependsOn: [b]\n", "(document)", 6, "itself"),
    ("spec.yaml", "kind: service\nname: [unclosed\n", "(yaml)", 3, "not valid YAML"),
    ("promo.tf", SEED_TF_FORMATTED.replace('"prod"', "var.env"), "env", 4, "not the expression"),
    ("promo.tf", SEED_TF_FORMATTED.replace('"promoapi"', "42"), "name", 3, "valid string"),
    ("promo.tf", 'module "promo" {\n  source = "app/platform/service"\n  name = \n}\n', "(hcl)", 3, "not valid HCL"),
]


@pytest.mark.parametrize(("filename", "text", "field", "line", "words"), BAD_SPECS)
def test_bad_specs_name_the_file_the_line_and_the_field(
    client: TestClient, filename: str, text: str, field: str, line: int, words: str
) -> None:
    response = post(client, text, dry_run=True, filename=filename)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_spec"
    found = [f for f in error["fields"] if f["field"] == field]
    assert found, error
    assert found[0]["message"].startswith(f"{filename}:{line}:"), found[0]
    assert words in found[0]["message"] or words in error["message"], error
    assert client.get("/v1/runs", params={"action": "service:provision"}).json()["runs"] == [], "no run is started"


# ------------------------------------------------------------------ the objects


def _cidr_has(cidr: str, ip: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


def _labels_match(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in ((selector or {}).get("matchLabels") or {}).items())


def _peer_matches(peer: dict[str, Any], own_ns: str, dest: dict[str, Any]) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        return _cidr_has(block["cidr"], dest["ip"]) and not any(
            _cidr_has(c, dest["ip"]) for c in block.get("except", [])
        )
    if "namespaceSelector" in peer:
        if dest.get("namespace") is None or not _labels_match(peer["namespaceSelector"], dest["nsLabels"]):
            return False
    elif dest.get("namespace") != own_ns:
        return False  # a podSelector alone means this namespace
    return _labels_match(peer.get("podSelector"), dest.get("podLabels", {}))


def allowed(
    policies: list[dict[str, Any]], direction: str, peer: dict[str, Any], port: int, proto: str = "TCP"
) -> bool:
    """Kubernetes NetworkPolicy semantics: isolated by any policy of the direction; allowed if any rule matches."""
    kind, key, peers_key = ("Egress", "egress", "to") if direction == "egress" else ("Ingress", "ingress", "from")
    selecting = [p for p in policies if kind in p["spec"]["policyTypes"] and p["spec"]["podSelector"] == {}]
    if not selecting:
        return True
    for policy in selecting:
        own_ns = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(key, []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == proto for p in ports):
                continue
            if peers_key not in rule or any(_peer_matches(p, own_ns, peer) for p in rule[peers_key]):
                return True
    return False


def external(ip: str) -> dict[str, Any]:
    return {"ip": ip, "namespace": None}


def pod(namespace: str, ip: str, ns_labels: dict[str, str] | None = None, **pod_labels: str) -> dict[str, Any]:
    labels = {"kubernetes.io/metadata.name": namespace, **(ns_labels or {})}
    return {"ip": ip, "namespace": namespace, "nsLabels": labels, "podLabels": pod_labels}


def network_policies(services: Services, text: str) -> list[dict[str, Any]]:
    return [o for o in objects(plan_files(services, text, "spec.yaml")) if o["kind"] == "NetworkPolicy"]


def test_the_pii_network_policy_denies_egress_beyond_the_allow_list(services: Services) -> None:
    pii = network_policies(services, FULL_YAML)
    assert {p["metadata"]["namespace"] for p in pii} == {"checkout-prod"}
    (deny,) = [p for p in pii if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Outside the cluster: only the allow-list, on its ports.
    assert allowed(pii, "egress", external("203.0.113.10"), 443)
    assert not allowed(pii, "egress", external("203.0.113.10"), 80)
    assert not allowed(pii, "egress", external("8.8.8.8"), 443)
    assert not allowed(pii, "egress", external("169.254.169.254"), 80)
    assert allowed(pii, "egress", pod("egress-gateway", "10.9.0.4"), 443)
    assert not allowed(pii, "egress", pod("egress-gateway", "10.9.0.4"), 25)
    # Inside: DNS, its own namespace and its declared dependencies; nothing else.
    assert allowed(pii, "egress", pod("kube-system", "10.0.0.10", **{"k8s-app": "kube-dns"}), 53, "UDP")
    assert not allowed(pii, "egress", pod("kube-system", "10.0.0.11", component="kube-apiserver"), 443)
    assert allowed(pii, "egress", pod("promoapi-prod", "10.2.0.5"), 8080)
    assert not allowed(pii, "egress", pod("promoapi-staging", "10.2.1.5"), 8080)
    assert not allowed(pii, "egress", pod("billing-prod", "10.3.0.5"), 8080)
    assert allowed(pii, "egress", pod("checkout-prod", "10.4.0.5"), 8080)
    # Ingress: from the ingress controller, monitoring and services that depend on it.
    assert allowed(pii, "ingress", pod("ingress-nginx", "10.5.0.2"), 8080)
    assert allowed(pii, "ingress", pod("monitoring", "10.5.0.3"), 8080)
    dependent = {"deps.pltf.io/checkout": "true", "pltf.io/env": "prod"}
    assert allowed(pii, "ingress", pod("cart-prod", "10.6.0.2", dependent), 8080)
    assert not allowed(pii, "ingress", pod("cart-dev", "10.6.1.2", {**dependent, "pltf.io/env": "dev"}), 8080)
    assert not allowed(pii, "ingress", pod("billing-prod", "10.3.0.5"), 8080)

    # A pii=false service may reach the internet, but still not other namespaces or the metadata service.
    public = network_policies(services, FULL_YAML.replace("pii: true", "pii: false"))
    assert allowed(public, "egress", external("8.8.8.8"), 443)
    assert not allowed(public, "egress", external("169.254.169.254"), 80)
    assert not allowed(public, "egress", pod("billing-prod", "10.3.0.5"), 8080)
    assert allowed(public, "egress", pod("promoapi-prod", "10.2.0.5"), 8080)


def test_the_burn_rate_alerts_are_the_right_ones_for_the_objective(services: Services) -> None:
    (rule,) = [o for o in objects(plan_files(services, FULL_YAML, "spec.yaml")) if o["kind"] == "PrometheusRule"]
    # The one generator (actions_server.slo), not a copy.
    assert rule["spec"] == service_slo_rules(
        "checkout", 99.95, 99.0, 250, extra_labels={"team": "payments", "env": "prod"}
    )
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    by_slo: dict[str, set[tuple[str, float, str, str]]] = {}
    burning = re.compile(r"slo:sli_error:ratio_rate(\w+)\{[^}]*sloth_slo=\"([\w-]+)\"\} > \(([\d.]+) \* ([\d.e-]+)\)")
    for alert in alerts:
        matches = burning.findall(alert["expr"])
        for short, long in zip(matches[::2], matches[1::2], strict=True):
            assert short[1:] == long[1:], "both windows of a pair use the same factor and budget"
            slo, factor, budget = short[1], float(short[2]), float(short[3])
            expected_budget = {"requests-availability": 1 - 0.9995, "requests-latency": 1 - 0.99}[slo]
            assert budget == pytest.approx(expected_budget, abs=1e-12)
            by_slo.setdefault(slo, set()).add((alert["labels"]["severity"], factor, short[0], long[0]))
    expected = {(a.severity, float(a.factor), a.short_window, a.long_window) for a in MULTIWINDOW_POLICY}
    assert expected == {("page", 14.4, "5m", "1h"), ("page", 6.0, "30m", "6h"), ("ticket", 3.0, "2h", "1d"),
                        ("ticket", 1.0, "6h", "3d")}  # fmt: skip
    assert by_slo == {"requests-availability": expected, "requests-latency": expected}
    recorded = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert {f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")} <= recorded
    latency_sli = next(
        r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]
        if r.get("record") == "slo:sli_error:ratio_rate5m" and r["labels"]["sloth_slo"] == "requests-latency"
    )  # fmt: skip
    assert 'le="0.25"' in latency_sli, "p99 under 250 ms counts requests above the 0.25 s bucket"


def test_the_other_objects(services: Services) -> None:
    found = {(o["kind"], o["metadata"]["name"]): o for o in objects(plan_files(services, FULL_YAML, "spec.yaml"))}
    namespace = found[("Namespace", "checkout-prod")]
    labels = namespace["metadata"]["labels"]
    assert labels["pltf.io/owner"] == "payments" and labels["pltf.io/env"] == "prod"
    assert labels["pltf.io/pii"] == "true" and labels["pltf.io/cost-center"] == "payments"
    assert labels["pltf.io/experiment"] == "spring-sale" and labels["deps.pltf.io/promoapi"] == "true"
    assert namespace["metadata"]["annotations"]["pltf.io/owner-source"] == "spec"
    quota = found[("ResourceQuota", "budget")]["spec"]["hard"]
    assert quota == {"requests.cpu": "4", "limits.cpu": "4", "requests.memory": "8Gi", "limits.memory": "8Gi"}
    limits = found[("LimitRange", "container-defaults")]["spec"]["limits"][0]
    assert limits["default"] == {"cpu": "500m", "memory": "512Mi"} and limits["max"] == {"cpu": "4", "memory": "8Gi"}
    secret = found[("ExternalSecret", "db-password")]["spec"]
    assert secret["data"] == [
        {"secretKey": "password", "remoteRef": {"key": "prod/checkout/db", "property": "password"}}
    ]
    assert found[("ExternalSecret", "stripe")]["spec"]["dataFrom"] == [{"extract": {"key": "prod/checkout/stripe"}}]
    assert not any(kind == "Secret" for kind, _ in found), "never a secret value"
    dashboard = found[("ConfigMap", "checkout-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["checkout-prod.json"])
    assert board["uid"] == "pltf-checkout-prod" and any("99.95" in p["title"] for p in board["panels"])
    app = found[("Application", "checkout-prod")]
    assert app["spec"]["source"]["path"] == "envs/prod/checkout"
    assert app["spec"]["source"]["repoURL"].endswith("/git/platform/gitops.git")
    assert app["spec"]["destination"]["namespace"] == "checkout-prod"


def test_every_manifest_validates_with_the_shared_validators(services: Services) -> None:
    files = plan_files(services, FULL_YAML, "spec.yaml") | plan_files(services, SEED_YAML, "spec.yaml")
    manifests = [Manifest(path, doc) for path, text in files.items() for doc in yaml.safe_load_all(text) if doc]
    assert {m.obj["kind"] for m in manifests} >= {
        "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "ExternalSecret", "PrometheusRule",
        "ConfigMap", "Application",
    }  # fmt: skip
    try:
        findings = check_kubernetes_validate(manifests) + check_kubernetes_models(manifests)
    except ToolMissingError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the validators are required in CI (.ci/install-validators): {exc}")
        pytest.skip(f"validators not installed locally ({exc}); `make validators` installs them")
    no_schema = [f for f in findings if "no schema for external-secrets.io/" in f.message]
    assert [str(f) for f in findings if f not in no_schema] == []
    if no_schema:
        reason = (
            "tools/validators has no @kubernetes-models/external-secrets (and validate-k8s.js does not load it), "
            "so the ExternalSecrets are not schema-checked"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


# ------------------------------------------------------------------ the CLI


def test_cli_plan_apply_and_policies(tmp_path: Path, settings: Settings) -> None:
    env = {"PLTF_DATA_DIR": str(tmp_path / "cli"), "PLTF_SPEC_POLICY_FILE": str(settings.gitops.spec_policy_file)}
    spec = tmp_path / "promo.tf"
    spec.write_text(SEED_TF_FORMATTED)

    blocked = pltf("plan", str(spec), env=env)
    assert blocked.returncode == 1 and "owner-required" in blocked.stdout
    assert "pltf: error: the plan is blocked by policy" in blocked.stderr

    planned = pltf("plan", str(spec), "--owner", "growth", env=env)
    assert planned.returncode == 0, planned.stderr
    assert "owner group:default/growth (from cli)" in planned.stdout
    assert "+++ b/envs/prod/promoapi/networkpolicy.yaml" in planned.stdout
    assert "plan: 7 files would change" in planned.stdout

    applied = pltf("apply", str(spec), "--owner", "growth", "--json", env=env)
    assert applied.returncode == 0, applied.stderr
    first = json.loads(applied.stdout)["output"]
    assert first["commit"] and first["services"][0]["ownerSource"] == "cli"
    again = pltf("apply", "-", "--owner", "growth", env=env, stdin=SEED_YAML)
    assert again.returncode == 0, again.stderr
    assert "applied: nothing changed, no commit" in again.stdout

    bad = pltf("plan", "-", env=env, stdin=SEED_YAML + "colour: blue\n")
    assert bad.returncode == 1
    assert bad.stderr.startswith("pltf: error: invalid service spec: stdin.yaml:5:")
    assert len(bad.stderr.strip().splitlines()) == 1

    listed = pltf("policies", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rules = {rule["id"]: rule for rule in json.loads(listed.stdout)["policies"]}
    assert rules["pii-public-needs-data-protection"]["severity"] == "block"
    assert rules["slo-missing"]["autoFix"] is True
    text = pltf("policies", "list", env=env)
    assert "block pii-public-needs-data-protection" in text.stdout and "tier standard: 99.9%" in text.stdout


# ------------------------------------------------------------------ the Backstage form


def test_the_backstage_template_plans_then_applies_with_pltfs_module() -> None:
    path = Path(__file__).resolve().parent.parent / "backstage-templates" / "provision-service.yaml"
    template = yaml.safe_load(path.read_text())
    assert (template["apiVersion"], template["kind"]) == ("scaffolder.backstage.io/v1beta3", "Template")
    plan, apply = template["spec"]["steps"]
    for step, dry_run in ((plan, True), (apply, False)):
        # The module keys each step's run by task and step id: a retried task never applies twice.
        assert step["action"] == "pltf:service:provision"
        assert step["input"].get("dryRun", False) is dry_run
    assert plan["input"]["spec"] == apply["input"]["spec"]
    # Every value goes into the spec JSON-encoded (`| dump`): data, never YAML syntax.
    spec_lines = [line for line in apply["input"]["spec"].splitlines() if "${{" in line]
    assert spec_lines and all(line.count("${{") == line.count("| dump }}") for line in spec_lines)
    # With the form's defaults filled in, the spec it builds is valid.
    form = {
        "name": "promoapi", "env": "prod", "owner": None, "tier": "standard", "pii": False, "exposure": "internal",
        "availability": 99.9, "latency_p99_ms": 500, "monthly_usd": 500, "cpu": "2", "memory": "4Gi",
        "dependsOn": [], "secrets": [{"name": "db", "path": "prod/promoapi/db"}], "experiment": None, "annotations": {},
    }  # fmt: skip
    rendered = re.sub(
        r"\$\{\{ \(?parameters\.(\w+)[^}]*\}\}|\$\{\{ \(\{[^}]*\} if [^}]*\}\) \| dump \}\}",
        lambda m: json.dumps(form[m.group(1)] if m.group(1) else form["annotations"]),
        apply["input"]["spec"],
    )
    (spec,) = parse_specs(rendered, "backstage-form.yaml")
    assert spec.name == "promoapi" and spec.secrets[0].path == "prod/promoapi/db"
