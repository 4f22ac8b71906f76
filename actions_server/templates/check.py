"""Validation of cookiecutter templates and of what they render: `pltf templates check [NAME]`.

`check_rendered` runs every validator a generated repository is held to; the
external tools are the ones `.ci/install-validators` (`make validators`)
installs.  A tool that is missing or crashes becomes a Finding, never a
traceback, so the command always ends with a readable report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .hostile_values import TOOL as HOSTILE_TOOL
from .hostile_values import HostileReport, hostile_values_check

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_VALIDATORS = REPO_ROOT / "tools" / "validators"
INSTALL_HINT = "run `make validators` (.ci/install-validators)"
KUBERNETES_VERSION = "1.33.0"
# Helm 3 still ships `helm lint` with this default; keep the chart installable there.
HELM_KUBE_VERSION = "v1.33.0"
TOOL_TIMEOUT_SECONDS = 300

YAMLLINT_CONFIG = """\
extends: default
yaml-files: ["*.yaml", "*.yml", ".yamllint"]
ignore: |
  charts/*/templates/
  node_modules/
  .venv/
rules:
  # PromQL does not wrap: generated rule files and SLO specs may run long.
  line-length:
    max: 160
    ignore: |
      charts/*/files/
      slo/
  document-start: disable
  comments: {min-spaces-from-content: 1}
  comments-indentation: disable
  # `on:` in GitHub workflows is quoted; values must be real booleans.
  truthy: {allowed-values: ["true", "false"], check-keys: true}
  indentation: {spaces: 2, indent-sequences: consistent}
  braces: {max-spaces-inside: 1}
  brackets: {max-spaces-inside: 1}
"""

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    tool: str
    path: str
    message: str
    severity: str = ERROR
    variant: str = ""
    line: int | None = None
    field: str = ""

    def __str__(self) -> str:
        where = f"{self.variant}: " if self.variant else ""
        location = f"{self.path}: " if self.path else ""
        return f"{self.severity.upper()} [{self.tool}] {where}{location}{self.message}"


@dataclass
class CheckTiming:
    """Seconds spent per tool, for `--timings` and the benchmarks."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, tool: str, seconds: float) -> None:
        self.seconds[tool] = self.seconds.get(tool, 0.0) + seconds


class ToolMissingError(Exception):
    def __init__(self, tool: str, how: str = INSTALL_HINT) -> None:
        super().__init__(f"{tool} is not installed: {how}")
        self.tool = tool


# --------------------------------------------------------------------------- tools


def find_tool(name: str) -> str:
    """A tool from the active virtualenv first (where pip installs them), then PATH."""
    in_venv = Path(sys.executable).parent / name
    if in_venv.is_file() and os.access(in_venv, os.X_OK):
        return str(in_venv)
    found = shutil.which(name)
    if found is None:
        raise ToolMissingError(name)
    return found


def _tool_env() -> dict[str, str]:
    # actionlint finds shellcheck on PATH; put the venv's bin first.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_tool(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        env=_tool_env(),
        check=False,
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- GitHub Actions

ONELINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$")


def check_workflows(directory: Path) -> list[Finding]:
    workflows = sorted(
        p for pattern in ("*.yaml", "*.yml") for p in (directory / ".github" / "workflows").glob(pattern)
    )
    if not workflows:
        return []
    result = run_tool([find_tool("actionlint"), "-oneline", "-no-color", *map(str, workflows)], directory)
    findings = []
    for line in result.stdout.splitlines():
        match = ONELINE.match(line)
        if match:
            findings.append(
                Finding(
                    "actionlint",
                    _relative(Path(match["path"]).absolute(), directory.absolute()),
                    f"line {match['line']}: {match['message']}",
                )
            )
        elif line.strip():
            findings.append(Finding("actionlint", "", line.strip()))
    if result.returncode not in (0, 1) or (result.returncode == 1 and not findings):
        findings.append(
            Finding("actionlint", "", f"actionlint failed (exit {result.returncode}): {result.stderr.strip()}")
        )
    return findings


# --------------------------------------------------------------------- GitLab CI

GITLAB_RESERVED = {
    "default", "include", "stages", "variables", "workflow", "image", "services", "cache",
    "before_script", "after_script", "spec",
}  # fmt: skip


def check_gitlab_ci(directory: Path) -> list[Finding]:
    """Structural checks: no offline GitLab CI linter exists, so references are checked here."""
    path = directory / ".gitlab-ci.yml"
    if not path.is_file():
        return []
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [Finding("gitlab-ci", path.name, f"not YAML: {exc}")]
    if not isinstance(config, dict):
        return [Finding("gitlab-ci", path.name, "must be a mapping of jobs")]
    stages = config.get("stages", ["build", "test", "deploy"])
    jobs = {k: v for k, v in config.items() if k not in GITLAB_RESERVED and isinstance(v, dict)}
    findings = []
    for name, job in jobs.items():
        if name.startswith("."):
            continue
        if not any(key in job for key in ("script", "extends", "trigger")):
            findings.append(Finding("gitlab-ci", path.name, f"job {name!r} has no script, extends or trigger"))
        if "stage" in job and job["stage"] not in stages:
            findings.append(Finding("gitlab-ci", path.name, f"job {name!r} uses undeclared stage {job['stage']!r}"))
        for parent in [job["extends"]] if isinstance(job.get("extends"), str) else job.get("extends", []):
            if parent not in jobs:
                findings.append(Finding("gitlab-ci", path.name, f"job {name!r} extends unknown {parent!r}"))
        for need in job.get("needs", []):
            needed = need.get("job") if isinstance(need, dict) else need
            if needed not in jobs:
                findings.append(Finding("gitlab-ci", path.name, f"job {name!r} needs unknown job {needed!r}"))
        stop = (job.get("environment") or {}).get("on_stop") if isinstance(job.get("environment"), dict) else None
        if stop is not None and stop not in jobs:
            findings.append(Finding("gitlab-ci", path.name, f"job {name!r}: on_stop job {stop!r} does not exist"))
    return findings


# -------------------------------------------------------------------- Dockerfile

FROM_LINE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)(?:\s+AS\s+(?P<alias>\S+))?", re.I | re.M)
USER_LINE = re.compile(r"^\s*USER\s+(?P<user>\S+)", re.I | re.M)


def check_dockerfile(directory: Path) -> list[Finding]:
    path = directory / "Dockerfile"
    if not path.is_file():
        return []
    findings = dockerfile_policy(path.read_text(), path.name)
    result = run_tool([find_tool("hadolint"), "--no-color", "--format", "json", str(path)], directory)
    try:
        reports = json.loads(result.stdout or "[]")
    except ValueError:
        return [*findings, Finding("hadolint", path.name, f"hadolint failed: {result.stderr.strip() or result.stdout}")]
    for report in reports:
        findings.append(
            Finding("hadolint", path.name, f"line {report.get('line')}: {report.get('code')} {report.get('message')}")
        )
    return findings


def dockerfile_policy(text: str, name: str = "Dockerfile") -> list[Finding]:
    """What hadolint does not insist on: multi-stage, pinned bases, a non-root final user, a HEALTHCHECK."""
    findings = []
    stages = list(FROM_LINE.finditer(text))
    aliases = {m["alias"] for m in stages if m["alias"]}
    if len(stages) < 2:
        findings.append(Finding("dockerfile-policy", name, "the build must be multi-stage"))
    for match in stages:
        image = match["image"]
        if image in aliases or image.startswith("$"):
            continue
        tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest" or not re.search(r"\d+\.\d+\.\d+", tag)):
            findings.append(
                Finding("dockerfile-policy", name, f"base image {image} is not pinned to a patch release or digest")
            )
    final_stage = text[stages[-1].start() :] if stages else text
    users = [m["user"] for m in USER_LINE.finditer(final_stage)]
    if not users:
        findings.append(Finding("dockerfile-policy", name, "the final stage has no USER: it would run as root"))
    elif users[-1].split(":")[0] in ("root", "0"):
        findings.append(Finding("dockerfile-policy", name, f"the final stage runs as {users[-1]}"))
    if not re.search(r"^\s*HEALTHCHECK\s+(?!NONE)", text, re.I | re.M):
        findings.append(Finding("dockerfile-policy", name, "no HEALTHCHECK"))
    return findings


# ------------------------------------------------------------------------- YAML

YAMLLINT_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): \[(?P<level>\w+)\] (?P<message>.*)$")


def check_yaml(directory: Path) -> list[Finding]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
        config.write(YAMLLINT_CONFIG)
    try:
        result = run_tool([find_tool("yamllint"), "-c", config.name, "-f", "parsable", "."], directory)
    finally:
        os.unlink(config.name)
    findings = []
    for line in result.stdout.splitlines():
        match = YAMLLINT_LINE.match(line)
        if match:
            severity = ERROR if match["level"] == "error" else WARNING
            path = match["path"].removeprefix("./")
            findings.append(Finding("yamllint", path, f"line {match['line']}: {match['message']}", severity))
    if result.returncode not in (0, 1) or (result.returncode == 1 and not findings):
        findings.append(Finding("yamllint", "", f"yamllint failed (exit {result.returncode}): {result.stderr.strip()}"))
    return findings


# ------------------------------------------------------------------- Helm chart


@dataclass
class Manifest:
    source: str
    obj: dict[str, Any]


def _load_helm() -> Any:
    try:
        import helm_python
    except ImportError:
        raise ToolMissingError("helm-python-sdk") from None
    return helm_python


def chart_value_files(chart: Path) -> list[Path | None]:
    """None stands for the chart's defaults alone; then every values-<env>.yaml."""
    return [None, *sorted(chart.glob("values-*.yaml"))]


def render_charts(directory: Path, findings: list[Finding], charts: list[Path] | None = None) -> list[Manifest]:
    """Lints and renders every chart under charts/ (or `charts`) with each environment's values."""
    if charts is None:
        charts = sorted(p.parent for p in (directory / "charts").glob("*/Chart.yaml"))
    if not charts:
        return []
    helm = _load_helm()
    manifests: list[Manifest] = []
    for chart in charts:
        rel = _relative(chart, directory)
        for values_file in chart_value_files(chart):
            label = values_file.name if values_file else "values.yaml"
            try:
                values = (yaml.safe_load(values_file.read_text()) or {}) if values_file else {}
            except yaml.YAMLError as exc:
                findings.append(Finding("helm", f"{rel}/{label}", f"not YAML: {exc}"))
                continue
            try:
                report = helm.lint(str(chart), values, strict=True, kube_version=HELM_KUBE_VERSION)
            except helm.HelmError as exc:
                findings.append(Finding("helm", rel, f"lint with {label} failed: {exc}"))
                continue
            # --strict: warnings (2) fail like errors (3); infos (1), such as "icon is recommended", are dropped.
            for message in report.get("messages", []):
                if message.get("severity", 0) >= 2:
                    text = f"{label}: {message.get('path')}: {message.get('error')}"
                    findings.append(Finding("helm lint", rel, text))
            # Previews are released as pr-<n>-<name>, production as <name>.
            release = f"pr-1-{chart.name}" if label == "values-preview.yaml" else chart.name
            try:
                with helm.Chart.load(str(chart)) as loaded:
                    rendered = loaded.render(values, name=release[:53], namespace=release[:63], is_install=True)
            except helm.HelmError as exc:
                findings.append(Finding("helm", rel, f"render with {label} failed: {exc}"))
                continue
            for template, text in sorted(rendered.items()):
                if not template.endswith((".yaml", ".yml")) or not text.strip():
                    continue
                try:
                    documents = list(yaml.safe_load_all(text))
                except yaml.YAMLError as exc:
                    findings.append(Finding("helm", f"{template} ({label})", f"renders invalid YAML: {exc}"))
                    continue
                manifests.extend(
                    Manifest(f"{template} ({label})", doc) for doc in documents if isinstance(doc, dict) and doc
                )
    return manifests


def plain_manifests(directory: Path) -> list[Manifest]:
    """Kubernetes objects checked in outside charts, e.g. deploy/argocd/application.yaml."""
    manifests = []
    for path in sorted((directory / "deploy").rglob("*.y*ml")) if (directory / "deploy").is_dir() else []:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                manifests.append(Manifest(_relative(path, directory), doc))
    return manifests


def check_kubernetes_validate(manifests: list[Manifest]) -> list[Finding]:
    """kubernetes-validate --strict: the Kubernetes OpenAPI schemas, unknown fields included."""
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        raise ToolMissingError("kubernetes-validate") from None
    findings = []
    for manifest in manifests:
        if not is_builtin_api(manifest.obj.get("apiVersion", "")):
            continue  # a CRD kind: only the npm validators hold its schema
        try:
            kubernetes_validate.validate(manifest.obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path) if getattr(exc, "path", None) else ""
            findings.append(
                Finding("kubernetes-validate", manifest.source, f"{_describe(manifest.obj)}: {where}: {exc.message}")
            )
        except kubernetes_validate.SchemaNotFoundError:
            findings.append(Finding("kubernetes-validate", manifest.source, f"{_describe(manifest.obj)}: unknown kind"))
    return findings


BUILTIN_GROUPS = {"apps", "batch", "policy", "autoscaling"}


def is_builtin_api(api_version: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or group in BUILTIN_GROUPS or group.endswith(".k8s.io")


def _describe(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def _node_script(name: str) -> tuple[str, Path]:
    node = find_tool("node")
    script = NODE_VALIDATORS / name
    if not (NODE_VALIDATORS / "node_modules").is_dir():
        raise ToolMissingError(f"npm packages in {_relative(NODE_VALIDATORS, REPO_ROOT)}")
    return node, script


def check_kubernetes_models(manifests: list[Manifest]) -> list[Finding]:
    """The Ajv schemas of kubernetes-models and the CRD packages: enums, quantities, required fields."""
    if not manifests:
        return []
    node, script = _node_script("validate-k8s.js")
    payload = json.dumps([{"source": m.source, "object": m.obj} for m in manifests])
    result = run_tool([node, str(script)], NODE_VALIDATORS, stdin=payload)
    if result.returncode != 0:
        return [
            Finding("kubernetes-models", "", f"validator failed (exit {result.returncode}): {result.stderr.strip()}")
        ]
    return [
        Finding("kubernetes-models", r["source"], f"{r.get('kind')}/{r.get('name')}: {r['message']}")
        for r in json.loads(result.stdout)
        if not r["ok"]
    ]


# ------------------------------------------------------------------- Prometheus


def _is_rule_file(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("groups"), list) and "apiVersion" not in doc


def _is_rule_test(doc: Any) -> bool:
    return isinstance(doc, dict) and "rule_files" in doc and "tests" in doc


def _yaml_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*.y*ml")):
        parts = path.relative_to(directory).parts
        if "templates" in parts or ".venv" in parts or "node_modules" in parts:
            continue
        yield path


def check_prometheus(directory: Path, manifests: list[Manifest]) -> list[Finding]:
    """`promtool check rules` on rule files and rendered PrometheusRules; `promtool test rules` on unit tests."""
    rule_files: list[Path] = []
    tests: list[Path] = []
    for path in _yaml_files(directory):
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # yamllint reports it
        if _is_rule_file(doc):
            rule_files.append(path)
        elif _is_rule_test(doc):
            tests.append(path)
    rules_in_chart = [m for m in manifests if m.obj.get("kind") == "PrometheusRule"]
    dashboards = sorted((directory / "dashboards").glob("*.json")) if (directory / "dashboards").is_dir() else []
    if not (rule_files or tests or rules_in_chart or dashboards):
        return []
    promtool = find_tool("promtool")
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="pltf-promtool-") as scratch:
        targets = [(p, _relative(p, directory)) for p in rule_files]
        seen: set[str] = set()
        for index, manifest in enumerate(rules_in_chart):
            spec = json.dumps(manifest.obj.get("spec") or {}, sort_keys=True)
            if spec in seen:
                continue  # the same rules rendered with another values file
            seen.add(spec)
            extracted = Path(scratch) / f"prometheusrule-{index}.yaml"
            extracted.write_text(yaml.safe_dump(manifest.obj.get("spec") or {}))
            targets.append((extracted, f"{manifest.source} {_describe(manifest.obj)}"))
        for dashboard in dashboards:
            queries, dashboard_findings = dashboard_rule_file(dashboard, Path(scratch), directory)
            findings.extend(dashboard_findings)
            if queries is not None:
                targets.append((queries, _relative(dashboard, directory)))
        for target, label in targets:
            result = run_tool([promtool, "check", "rules", str(target)], directory)
            if result.returncode != 0:
                output = (result.stderr + result.stdout).replace(str(target), label).strip()
                findings.append(Finding("promtool check rules", label, output))
        for test in tests:
            result = run_tool([promtool, "test", "rules", test.name], test.parent)
            if result.returncode != 0:
                findings.append(
                    Finding("promtool test rules", _relative(test, directory), (result.stdout + result.stderr).strip())
                )
    return findings


GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def dashboard_rule_file(dashboard: Path, scratch: Path, directory: Path) -> tuple[Path | None, list[Finding]]:
    """Turns a Grafana dashboard's queries into recording rules, so promtool parses their PromQL."""
    rel = _relative(dashboard, directory)
    try:
        data = json.loads(dashboard.read_text())
    except ValueError as exc:
        return None, [Finding("grafana-dashboard", rel, f"not JSON: {exc}")]
    findings = []
    if not isinstance(data, dict) or not data.get("panels") or not data.get("title") or not data.get("uid"):
        findings.append(Finding("grafana-dashboard", rel, "a dashboard needs a uid, a title and panels"))
        return None, findings
    exprs = []
    for panel in _panels(data["panels"]):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr:
                findings.append(
                    Finding("grafana-dashboard", rel, f"panel {panel.get('title')!r} has a target without expr")
                )
                continue
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(re.sub(r"\$\{?(\w+)\}?", r"\1", expr))
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    target_file = scratch / f"dashboard-{dashboard.stem}.yaml"
    target_file.write_text(yaml.safe_dump(rules))
    return target_file, findings


def _panels(panels: list[Any]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        if isinstance(panel, dict):
            yield panel
            yield from _panels(panel.get("panels", []))


# --------------------------------------------------------------------- Backstage


def check_catalog(directory: Path) -> list[Finding]:
    path = directory / "catalog-info.yaml"
    if not path.is_file():
        return [
            Finding("backstage catalog-model", "catalog-info.yaml", "missing: the service would not be in the catalog")
        ]
    node, script = _node_script("validate-catalog.js")
    result = run_tool([node, str(script), str(path)], directory)
    if result.returncode != 0:
        return [
            Finding(
                "backstage catalog-model",
                path.name,
                f"validator failed (exit {result.returncode}): {result.stderr.strip()}",
            )
        ]
    return [
        Finding("backstage catalog-model", path.name, f"{r.get('kind')}/{r.get('name')}: {r['message']}")
        for r in json.loads(result.stdout)
        if not r["ok"]
    ]


# ------------------------------------------------------------- the service's tests


def check_service_tests(directory: Path) -> list[Finding]:
    """Installs the generated service into a fresh virtualenv and runs its linters and pytest."""
    if not (directory / "pyproject.toml").is_file():
        return []
    requirements = next(
        (directory / n for n in ("requirements-dev.txt", "requirements.txt") if (directory / n).is_file()), None
    )
    with tempfile.TemporaryDirectory(prefix="pltf-service-venv-") as venv_dir:
        venv = Path(venv_dir)
        python = venv / "bin" / "python"
        steps: list[tuple[str, list[str]]]
        try:
            uv = find_tool("uv")
        except ToolMissingError:
            uv = None
        # uv's shared cache makes a fresh venv per variant take seconds, not a minute.
        if uv:
            install = [uv, "pip", "install", "--quiet", "--python", str(python)]
            steps = [("create venv", [uv, "venv", "--quiet", "--python", sys.executable, str(venv)])]
        else:
            install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            steps = [("create venv", [sys.executable, "-m", "venv", str(venv)])]
        if requirements is not None:
            steps.append(("install pinned requirements", [*install, "-r", requirements.name]))
        steps += [
            ("install the service", [*install, "--no-deps", "-e", "."]),
            ("ruff check", [str(venv / "bin" / "ruff"), "check", "--no-cache", "."]),
            (
                "pytest",
                [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"],
            ),
        ]
        for label, command in steps:
            if label == "ruff check" and not Path(command[0]).exists():
                continue  # ruff is not among the service's pins
            result = (
                _run_generated_tests(command, directory, venv) if label == "pytest" else run_tool(command, directory)
            )
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip()
                return [Finding("service tests", "", f"{label} failed (exit {result.returncode}):\n{output[-4000:]}")]
    return []


def _run_generated_tests(command: list[str], directory: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """The generated service's tests are code from a template: they run in the sandbox, like hooks do."""
    from ..config import Settings
    from ..sandbox import Jail, Sandbox

    sandbox = Sandbox(Settings())
    env = sandbox.environment(directory, {"VIRTUAL_ENV": str(venv)})
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    with sandbox.lend(directory, venv):
        return sandbox.run(Jail(command, directory, env, writable=[directory, venv]), TOOL_TIMEOUT_SECONDS)


# -------------------------------------------------------------------- orchestration

Check = Callable[[Path], list[Finding]]


def check_rendered(
    directory: Path, *, run_service_tests: bool = True, timing: CheckTiming | None = None
) -> list[Finding]:
    """Every validator a generated repository must pass; an empty list means it is valid."""
    directory = Path(directory).resolve()
    findings: list[Finding] = []
    timing = timing or CheckTiming()

    def guarded(tool: str, check: Callable[[], list[Finding]]) -> None:
        started = time.perf_counter()
        try:
            findings.extend(check())
        except ToolMissingError as exc:
            findings.append(Finding(exc.tool, "", str(exc)))
        except subprocess.TimeoutExpired as exc:
            findings.append(Finding(tool, "", f"timed out after {exc.timeout:.0f}s"))
        except Exception as exc:  # noqa: BLE001 - a crashing validator is a finding, not a traceback
            findings.append(Finding(tool, "", f"crashed: {type(exc).__name__}: {exc}"))
        finally:
            timing.add(tool, time.perf_counter() - started)

    guarded("actionlint", lambda: check_workflows(directory))
    guarded("gitlab-ci", lambda: check_gitlab_ci(directory))
    guarded("hadolint", lambda: check_dockerfile(directory))
    guarded("yamllint", lambda: check_yaml(directory))
    manifests: list[Manifest] = []

    def render() -> list[Finding]:
        chart_findings: list[Finding] = []
        manifests.extend(render_charts(directory, chart_findings))
        manifests.extend(plain_manifests(directory))
        return chart_findings

    guarded("helm", render)
    guarded("kubernetes-validate", lambda: check_kubernetes_validate(manifests))
    guarded("kubernetes-models", lambda: check_kubernetes_models(manifests))
    guarded("promtool", lambda: check_prometheus(directory, manifests))
    guarded("backstage catalog-model", lambda: check_catalog(directory))
    if run_service_tests:
        guarded("service tests", lambda: check_service_tests(directory))
    return findings


Render = Callable[[Path, dict[str, Any], Path], Path]


def default_render() -> Render:
    """The action server's renderer when it is there (user values as data), else plain cookiecutter."""
    try:
        from actions_server.templates.render import render_template
    except ImportError:
        return cookiecutter_render
    return render_template


def cookiecutter_render(template_dir: Path, values: dict[str, Any], output_dir: Path) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(template_dir), no_input=True, extra_context=values, output_dir=str(output_dir)))


def default_variants(template_dir: Path) -> list[dict[str, Any]]:
    """The defaults, then enough variants that every choice's every option is rendered once."""
    context = json.loads((Path(template_dir) / "cookiecutter.json").read_text())
    choices = {k: v for k, v in context.items() if not k.startswith("_") and isinstance(v, list) and len(v) > 1}
    variants: list[dict[str, Any]] = [{}]
    for index in range(1, max((len(v) for v in choices.values()), default=1)):
        variants.append({key: options[index] for key, options in choices.items() if index < len(options)})
    return variants


def variant_label(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items()) or "defaults"


def check_template(
    template_dir: Path,
    variants: list[dict[str, Any]] | None = None,
    render: Render | None = None,
    *,
    run_service_tests: bool = True,
) -> list[Finding]:
    """Renders the template with each variant of values and checks every rendering."""
    template_dir = Path(template_dir).resolve()
    render = render or default_render()
    findings: list[Finding] = []
    for values in variants if variants is not None else default_variants(template_dir):
        label = variant_label(values)
        with tempfile.TemporaryDirectory(prefix="pltf-template-check-") as output:
            try:
                project = render(template_dir, dict(values), Path(output))
            except Exception as exc:  # noqa: BLE001 - a template that does not render is the finding
                findings.append(Finding("render", "", f"{type(exc).__name__}: {exc}", ERROR, label))
                continue
            for finding in check_rendered(project, run_service_tests=run_service_tests):
                findings.append(Finding(finding.tool, finding.path, finding.message, finding.severity, label))
    return findings


def check_hostile_values(
    template_dir: Path, variants: list[dict[str, Any]] | None = None, render: Render | None = None
) -> tuple[list[Finding], HostileReport]:
    """The hostile-values check (hostile_values.py) of each variant, as Findings."""
    template_dir = Path(template_dir).resolve()
    report = hostile_values_check(
        template_dir,
        variants if variants is not None else default_variants(template_dir),
        render or default_render(),
        variant_label=variant_label,
    )
    findings = [Finding(HOSTILE_TOOL, f.path, f.message, ERROR, f.variant, f.line, f.field) for f in report.findings]
    return findings, report
