"""The golden-path template renders valid, production-shaped repositories.

Every rendering (the defaults, and variants that change every choice at least
once) must pass every validator of `pltf templates check`; each validator must
also catch a deliberately broken file, so none can pass silently.  Needs the
tools from `make validators` (.ci/install-validators).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions_server.slo import (
    MULTIWINDOW_POLICY,
    SLI_WINDOWS,
    burn_rate_rules,
    error_budget,
    service_slo_rules,
)
from actions_server.templates import check as tc

TEMPLATE = Path(__file__).resolve().parents[1] / "cookiecutters" / "python-service"

# Every choice is changed at least once (see test_variants_cover_every_choice);
# the last variant also moves the free-form values off their defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "postgres-gitlab": {"python_version": "3.13", "database": "postgres", "ci_provider": "gitlab-ci"},
    "custom-values": {
        "python_version": "3.11",
        "name": "orders-api-v2",
        "description": 'Orders, with "quotes" & <brackets>',
        "owner": "group:commerce/orders-team",
        "system": "commerce",
        "http_port": 9000,
        "container_registry": "registry.example.com:5000/commerce",
        "preview_domain": "dev.acme.io",
        "github_org": "Acme-Corp",
        "alert_target": "orders-pager",
        "availability_slo": 99.5,
        "latency_slo": 95.0,
        "latency_slo_threshold_ms": 1000,
        "forge": "embedded",
        "repository_url": "http://127.0.0.1:8787/git/commerce/orders-api-v2/tree/main",
        "preview_url": "http://orders-api-v2.preview.localhost:8787/",
    },
}


@pytest.fixture(scope="module")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    render = tc.default_render()
    return {
        label: render(TEMPLATE, dict(values), tmp_path_factory.mktemp(f"render-{label}"))
        for label, values in VARIANTS.items()
    }


@pytest.fixture
def broken(renderings: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the default rendering, for a test to break."""
    copy = tmp_path / renderings["defaults"].name
    shutil.copytree(renderings["defaults"], copy)
    return copy


def context_of(project: Path) -> dict[str, Any]:
    import json

    context: dict[str, Any] = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    return context


def errors(findings: list[tc.Finding]) -> list[str]:
    return [str(f) for f in findings if f.severity == tc.ERROR]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# ----------------------------------------------------------------- the template


def test_cookiecutter_json_asks_what_the_backstage_templates_pass() -> None:
    import json

    context = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    public = [key for key in context if not key.startswith("_")]
    assert public[:4] == ["name", "description", "owner", "system"]
    assert context["database"] == ["none", "postgres"]
    assert context["ci_provider"] == ["github-actions", "gitlab-ci"]
    assert set(context["__prompts__"]) == set(public)
    assert context["_pltf"]["schema"]["name"] == {"pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
    assert re.fullmatch(r"\d+\.\d+\.\d+", context["_pltf"]["version"])
    assert not (TEMPLATE / "hooks").exists(), "hooks would run code at render time"


def test_variants_cover_every_choice() -> None:
    import json

    context = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    for key, options in context.items():
        if isinstance(options, list) and not key.startswith("_"):
            rendered = {variant.get(key, options[0]) for variant in VARIANTS.values()}
            assert rendered == set(options), f"{key}: {set(options) - rendered} never rendered"
    derived = [{**variant} for variant in tc.default_variants(TEMPLATE)]
    for key, options in context.items():
        if isinstance(options, list) and not key.startswith("_"):
            assert {variant.get(key, options[0]) for variant in derived} == set(options)


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendering_has_the_promised_files(renderings: dict[str, Path], variant: str) -> None:
    project = renderings[variant]
    name = VARIANTS[variant].get("name", "payments-api")
    assert project.name == name
    for path in [
        "pyproject.toml", "requirements.txt", "requirements-dev.txt", "Dockerfile", ".dockerignore",
        f"charts/{name}/Chart.yaml", f"charts/{name}/values-preview.yaml", f"charts/{name}/values-prod.yaml",
        "slo/sloth.yaml", "slo/rules_test.yaml", f"charts/{name}/files/slo-rules.yaml",
        f"dashboards/{name}.json", "catalog-info.yaml", "mkdocs.yml", "docs/index.md", "docs/runbook.md",
        "docs/openapi.json", "README.md", "CODEOWNERS", ".gitignore", ".cruft.json", "deploy/argocd/application.yaml",
    ]:  # fmt: skip
        assert (project / path).is_file(), path
    github = VARIANTS[variant].get("ci_provider", "github-actions") == "github-actions"
    assert (project / ".github/workflows/ci.yaml").is_file() == github
    assert (project / ".gitlab-ci.yml").is_file() == (not github)
    answers = context_of(project)
    assert {k: answers[k] for k in VARIANTS[variant]} == VARIANTS[variant]
    catalog = list(yaml.safe_load_all((project / "catalog-info.yaml").read_text()))
    annotations = catalog[0]["metadata"]["annotations"]
    # An entity ref Backstage can follow; the version has an annotation of its own.
    assert annotations["backstage.io/source-template"] == "template:default/python-service"
    assert annotations["pltf.dev/template-version"] == "1.0.0"
    on_github = VARIANTS[variant].get("forge", "github") == "github"
    assert ("github.com/project-slug" in annotations) == on_github
    if "preview_url" in VARIANTS[variant]:
        assert annotations["pltf.dev/preview-url"] == VARIANTS[variant]["preview_url"]
    links = {link["title"]: link["url"] for link in catalog[0]["metadata"]["links"]}
    repository = VARIANTS[variant].get("repository_url", f"https://github.com/acme/{name}/tree/main")
    assert links["Source"] == repository and links["Runbook"] == f"{repository}/docs/runbook.md"
    assert ("Preview" in links) == ("preview_url" in VARIANTS[variant])
    for annotation in (
        "backstage.io/techdocs-ref",
        "backstage.io/kubernetes-id",
        "argocd/app-name",
    ):
        assert annotations[annotation]
    leftovers = [
        str(p.relative_to(project))
        for p in project.rglob("*")
        if p.is_file() and "templates" not in p.parts and re.search(r"\{\{-? *cookiecutter|\{%", p.read_text())
    ]
    assert leftovers == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_validator_passes(renderings: dict[str, Path], variant: str) -> None:
    assert [str(f) for f in tc.check_rendered(renderings[variant], run_service_tests=False)] == []


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_generated_service_tests_pass_in_a_fresh_venv(renderings: dict[str, Path], variant: str) -> None:
    assert [str(f) for f in tc.check_service_tests(renderings[variant])] == []


def test_check_template_renders_and_checks_through_the_default_renderer() -> None:
    assert tc.check_template(TEMPLATE, variants=[{"database": "postgres"}], run_service_tests=False) == []


def test_check_template_reports_a_template_that_does_not_render(tmp_path: Path) -> None:
    def failing(template: Path, values: dict[str, Any], output: Path) -> Path:
        raise ValueError("boom")

    findings = tc.check_template(TEMPLATE, variants=[{"database": "postgres"}], render=failing)
    assert [(f.tool, f.variant, f.message) for f in findings] == [("render", "database=postgres", "ValueError: boom")]


def test_a_missing_tool_is_a_finding_with_the_install_command(broken: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing_installed(name: str) -> str:
        raise tc.ToolMissingError(name)

    monkeypatch.setattr(tc, "find_tool", nothing_installed)
    findings = tc.check_rendered(broken, run_service_tests=False)
    missing = {f.tool for f in findings if "make validators" in f.message}
    assert {"actionlint", "hadolint", "yamllint", "promtool", "node"} <= missing


# ------------------------------------------------- each validator catches breakage


def test_hadolint_catches_an_unpinned_base_image(broken: Path) -> None:
    dockerfile = broken / "Dockerfile"
    dockerfile.write_text(
        re.sub(r"^FROM \S+ AS runtime", "FROM python:latest AS runtime", dockerfile.read_text(), flags=re.M)
    )
    found = errors(tc.check_dockerfile(broken))
    assert any("[hadolint]" in f and "DL3007" in f for f in found)
    assert any("[dockerfile-policy]" in f and "python:latest" in f for f in found)


def test_hadolint_catches_running_as_root(broken: Path) -> None:
    edit(broken / "Dockerfile", "USER 10001:10001", "USER root")
    found = errors(tc.check_dockerfile(broken))
    assert any("DL3002" in f for f in found)


def test_dockerfile_policy_catches_a_missing_user_and_healthcheck(broken: Path) -> None:
    dockerfile = broken / "Dockerfile"
    text = re.sub(r"^USER .*\n", "", dockerfile.read_text(), flags=re.M)
    dockerfile.write_text(re.sub(r"^HEALTHCHECK (.*\\\n)*.*\n", "", text, flags=re.M))
    found = errors(tc.check_dockerfile(broken))
    assert any("no USER" in f for f in found)
    assert any("no HEALTHCHECK" in f for f in found)


def test_actionlint_catches_a_typo_in_a_workflow(broken: Path) -> None:
    edit(broken / ".github/workflows/ci.yaml", "needs: [lint, test]", "needs: [lint, tests]")
    found = errors(tc.check_workflows(broken))
    assert any("[actionlint]" in f and "tests" in f for f in found), found


def test_actionlint_catches_script_injection_and_old_actions(broken: Path) -> None:
    workflow = broken / ".github/workflows/ci.yaml"
    edit(workflow, "      - run: pytest", '      - run: echo "${{ github.event.pull_request.title }}"')
    edit(workflow, "actions/checkout@v5", "actions/checkout@v4")
    found = errors(tc.check_workflows(broken))
    assert any("github.event.pull_request.title" in f and "untrusted" in f for f in found), found
    assert any("actions/checkout@v4" in f for f in found), found


def test_gitlab_ci_check_catches_dangling_references(renderings: dict[str, Path], tmp_path: Path) -> None:
    project = tmp_path / "gitlab"
    shutil.copytree(renderings["postgres-gitlab"], project)
    edit(project / ".gitlab-ci.yml", "on_stop: preview-teardown", "on_stop: preview-cleanup")
    edit(project / ".gitlab-ci.yml", "needs: [build]", "needs: [biuld]")
    found = errors(tc.check_gitlab_ci(project))
    assert any("preview-cleanup" in f for f in found) and any("biuld" in f for f in found), found


def test_yamllint_catches_a_duplicate_key(broken: Path) -> None:
    values = broken / "charts/payments-api/values.yaml"
    values.write_text(values.read_text() + "replicaCount: 3\n")
    found = errors(tc.check_yaml(broken))
    assert any("[yamllint]" in f and "duplication" in f for f in found), found


def test_helm_catches_a_template_that_does_not_render(broken: Path) -> None:
    edit(
        broken / "charts/payments-api/templates/service.yaml", "{{ .Values.service.type }}", "{{ .Values.service.type "
    )
    findings: list[tc.Finding] = []
    tc.render_charts(broken, findings)
    assert any(f.tool in ("helm", "helm lint") for f in findings), findings


def test_kubernetes_validate_catches_an_unknown_field(broken: Path) -> None:
    edit(broken / "charts/payments-api/templates/deployment.yaml", "revisionHistoryLimit: 5", "revisionHistoryLimt: 5")
    found = errors(tc.check_rendered(broken, run_service_tests=False))
    assert any("[kubernetes-validate]" in f and "revisionHistoryLimt" in f for f in found), found


def test_kubernetes_models_catches_a_bad_enum_and_quantity(broken: Path) -> None:
    edit(broken / "charts/payments-api/templates/networkpolicy.yaml", "- Egress\n---", "- Sideways\n---")
    edit(broken / "charts/payments-api/values.yaml", "memory: 256Mi", "memory: lots")
    found = errors(tc.check_rendered(broken, run_service_tests=False))
    assert any("[kubernetes-models]" in f and "policyTypes" in f for f in found), found
    assert any("[kubernetes-models]" in f and "quantity" in f for f in found), found


def test_kubernetes_models_catches_a_bad_argo_cd_application(broken: Path) -> None:
    edit(broken / "deploy/argocd/application.yaml", "  destination:", "  destinations:")
    found = errors(tc.check_kubernetes_models(tc.plain_manifests(broken)))
    assert any("Application/payments-api" in f and "destination" in f for f in found), found


def test_kubernetes_models_catches_a_bad_servicemonitor(broken: Path) -> None:
    edit(
        broken / "charts/payments-api/templates/servicemonitor.yaml",
        "      path: /metrics",
        "      path: 42\n      scheme: gopher",
    )
    found = errors(tc.check_rendered(broken, run_service_tests=False))
    assert any("[kubernetes-models]" in f and "ServiceMonitor" in f for f in found), found


def test_promtool_catches_bad_promql_in_the_chart_and_the_dashboard(broken: Path) -> None:
    edit(
        broken / "charts/payments-api/templates/prometheusrule.yaml",
        "> {{ .Values.alerts.errorRatioThreshold }}",
        "> > 1",
    )
    dashboard = broken / "dashboards/payments-api.json"
    dashboard.write_text(dashboard.read_text().replace("histogram_quantile(0.5,", "histogram_quantile(0.5,,", 1))
    manifests = tc.render_charts(broken, [])
    found = errors(tc.check_prometheus(broken, manifests))
    assert any("[promtool check rules]" in f and "PrometheusRule" in f for f in found), found
    assert any("[promtool check rules]" in f and "dashboards/payments-api.json" in f for f in found), found


def test_promtool_unit_tests_catch_a_weakened_burn_rate_alert(broken: Path) -> None:
    rules = broken / "charts/payments-api/files/slo-rules.yaml"
    rules.write_text(
        rules.read_text().replace("(14.4 * 0.001)", "(144 * 0.001)").replace("(6 * 0.001)", "(60 * 0.001)")
    )
    found = errors(tc.check_prometheus(broken, []))
    assert any("[promtool test rules]" in f and "SLOErrorBudgetBurnPage" in f for f in found), found


def test_backstage_catches_a_bad_entity_name_and_a_missing_api_definition(broken: Path) -> None:
    edit(broken / "catalog-info.yaml", 'name: "payments-api"', 'name: "Payments API!"')
    edit(broken / "catalog-info.yaml", "$text: ./docs/openapi.json", "$text: ./docs/missing.json")
    found = errors(tc.check_catalog(broken))
    assert any("Payments API!" in f and "metadata.name" in f for f in found), found
    assert any("missing.json" in f for f in found), found


@pytest.mark.slow
def test_service_tests_catch_a_failing_test(broken: Path) -> None:
    edit(broken / "tests/test_app.py", '"name": "example"}', '"name": "changed"}')
    found = errors(tc.check_service_tests(broken))
    assert len(found) == 1 and "pytest failed" in found[0] and "test_example_endpoint" in found[0], found


# ----------------------------------------------------------- burn-rate correctness


@pytest.mark.parametrize("variant", VARIANTS)
def test_checked_in_slo_rules_are_what_slo_py_generates(renderings: dict[str, Path], variant: str) -> None:
    project = renderings[variant]
    answers = context_of(project)
    name = answers["name"]
    rendered = yaml.safe_load((project / f"charts/{name}/files/slo-rules.yaml").read_text())
    team = answers["owner"].split("/")[-1].split(":")[-1]
    expected = service_slo_rules(
        name,
        float(answers["availability_slo"]),
        float(answers["latency_slo"]),
        int(answers["latency_slo_threshold_ms"]),
        runbook_url=f"https://github.com/{answers['github_org']}/{name}/blob/main/docs/runbook.md#slo-error-budget-burn",
        extra_labels={"team": team, "receiver": answers["alert_target"]},
    )
    assert rendered == expected


CONDITION = re.compile(
    r"max\(slo:sli_error:ratio_rate(?P<window>\w+)\{[^}]*\} > \((?P<factor>[\d.]+) \* (?P<budget>[\d.e-]+)\)\)"
)


@pytest.mark.parametrize("objective", [99.9, 99.5, 99.95, 99.0, 95.0, 99.99])
def test_burn_rate_thresholds_follow_the_objective(objective: float) -> None:
    rules = burn_rate_rules("svc", objective)
    budget = 1 - objective / 100
    assert error_budget(objective) == pytest.approx(budget, abs=1e-12)
    alerts = {rule["alert"]: rule for rule in rules["groups"][2]["rules"]}
    expected_pairs = {
        "SLOErrorBudgetBurnPage": [("5m", 14.4), ("1h", 14.4), ("30m", 6.0), ("6h", 6.0)],
        "SLOErrorBudgetBurnTicket": [("2h", 3.0), ("1d", 3.0), ("6h", 1.0), ("3d", 1.0)],
    }
    for name, pairs in expected_pairs.items():
        conditions = [m.groupdict() for m in CONDITION.finditer(alerts[name]["expr"])]
        assert [(c["window"], float(c["factor"])) for c in conditions] == pairs
        for condition in conditions:
            assert float(condition["budget"]) == pytest.approx(budget, rel=1e-9)
            threshold = float(condition["factor"]) * float(condition["budget"])
            assert threshold == pytest.approx(float(condition["factor"]) * (1 - objective / 100), rel=1e-9)
        # Both windows of a pair must burn: "and" inside a pair, "or" between pairs.
        assert alerts[name]["expr"].count(" and\n") == 2 and alerts[name]["expr"].count("\nor\n") == 1
        assert alerts[name]["labels"]["severity"] == name.removeprefix("SLOErrorBudgetBurn").lower()
    meta = {rule["record"]: rule["expr"] for rule in rules["groups"][1]["rules"]}
    assert float(meta["slo:error_budget:ratio"].removeprefix("vector(").removesuffix(")")) == pytest.approx(budget)
    assert float(meta["slo:objective:ratio"].removeprefix("vector(").removesuffix(")")) == pytest.approx(
        objective / 100
    )


def test_the_policy_is_the_sre_workbook_one() -> None:
    assert [(a.severity, a.factor, a.long_window, a.short_window) for a in MULTIWINDOW_POLICY] == [
        ("page", 14.4, "1h", "5m"),
        ("page", 6, "6h", "30m"),
        ("ticket", 3, "1d", "2h"),
        ("ticket", 1, "3d", "6h"),
    ]
    windows = {w for a in MULTIWINDOW_POLICY for w in (a.long_window, a.short_window)}
    assert windows <= set(SLI_WINDOWS)
    recorded = {r["record"] for r in burn_rate_rules("svc", 99.9)["groups"][0]["rules"]}
    assert {f"slo:sli_error:ratio_rate{w}" for w in windows} <= recorded


def test_sli_queries_fill_the_window_placeholder() -> None:
    rules = burn_rate_rules(
        "svc", 99.9, errors_query="sum(rate(e[{{.window}}]))", total_query="sum(rate(t[{{.window}}]))"
    )
    first = rules["groups"][0]["rules"][0]
    assert first["expr"] == "(sum(rate(e[5m])))\n/\n(sum(rate(t[5m])))\n"
    assert all("{{.window}}" not in r["expr"] for g in rules["groups"] for r in g["rules"])


@pytest.mark.parametrize("objective", [0, 100, -1, 150])
def test_an_impossible_objective_is_refused(objective: float) -> None:
    with pytest.raises(ValueError, match="objective"):
        burn_rate_rules("svc", objective)
