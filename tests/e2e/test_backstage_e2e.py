"""End to end through a real Backstage backend: the Create button, minus the browser.

A headless Backstage (catalog, scaffolder, proxy, Roadie's http:backstage:request;
tests/e2e/backstage/) runs our checked-in `backstage-templates/` against a real
`pltf serve` on the embedded defaults, through Backstage's own REST API.

Opt-in, because the npm install takes minutes the first time:

    PLTF_E2E_BACKSTAGE=1 .venv/bin/pytest tests/e2e

(`.ci/run` runs exactly that after the Python tests.) With the variable set, a
missing Node or a failed install fails the tests rather than skipping them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from backstage_harness import TEMPLATES_DIR, Backstage, TaskRefused, TaskResult, install, node_available

from conftest import ROOT, TOKEN, ServerProcess, need, wait_until

ENABLED = os.environ.get("PLTF_E2E_BACKSTAGE") == "1"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ENABLED, reason="Backstage e2e is opt-in: PLTF_E2E_BACKSTAGE=1 pytest tests/e2e"),
]

TEMPLATE_FILE = TEMPLATES_DIR / "python-service.yaml"
OWNER = "group:default/platform-team"


@pytest.fixture(scope="module")
def pltf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("pltf")
    server = ServerProcess(
        {
            "PLTF_DATA_DIR": str(work / "data"),
            "PLTF_TEMPLATES_DIR": str(ROOT / "cookiecutters"),
            "PLTF_API_TOKEN": TOKEN,
        },
        work / "pltf.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backstage(pltf: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backstage]:
    assert node_available(), "node and npm are needed for the Backstage end-to-end test (Node 20+)"
    install()
    instance = Backstage(pltf.url, TOKEN, tmp_path_factory.mktemp("backstage"), sorted(TEMPLATES_DIR.glob("*.yaml")))
    instance.start()
    try:
        # The backend is ready a moment before the catalog has read its locations.
        instance.wait_for_entity("template", "python-service")
        yield instance
    finally:
        instance.stop()


def forge_host(pltf: ServerProcess) -> str:
    return urlsplit(pltf.url).netloc


def all_values(pltf: ServerProcess, name: str, **overrides: Any) -> dict[str, Any]:
    """A value for every parameter: the REST API applies no form defaults."""
    values: dict[str, Any] = {
        "name": name,
        "description": "Checks that Create in Backstage makes a real service",
        "owner": OWNER,
        "system": "system:default/payments",
        "python_version": "3.13",
        "http_port": 9090,
        "container_registry": "ghcr.io/acme",
        "preview_domain": "preview.example.com",
        "github_org": "acme",
        "alert_target": "payments-oncall",
        "availability_slo": 99.5,
        "latency_slo": 99.0,
        "latency_slo_threshold_ms": 250,
        # "postgres" would render fine, but a local preview has no database to become ready with.
        "database": "none",
        "ci_provider": "gitlab-ci",
        "repoUrl": f"{forge_host(pltf)}?owner=platform-team&repo={name}",
        "preview": True,
    }
    values.update(overrides)
    return values


def template_parameters(path: Path) -> set[str]:
    document = yaml.safe_load(path.read_text())
    return {key for page in document["spec"]["parameters"] for key in page.get("properties", {})}


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def pltf_actions(pltf: ServerProcess) -> set[str]:
    with pltf.client() as client:
        response = client.get("/v1/actions")
        response.raise_for_status()
        return {action["id"] for action in response.json()["actions"]}


def create_and_follow(backstage: Backstage, values: dict[str, Any]) -> TaskResult:
    return backstage.follow(backstage.create_task("python-service", values), timeout=150)


def error_bodies(result: TaskResult) -> list[dict[str, Any]]:
    """The response bodies the Roadie action logged for a 4xx/5xx answer."""
    found = []
    for line in result.log.splitlines():
        _, marker, rest = line.partition("Response body: ")
        if marker:
            found.append(json.loads(rest))
    return found


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # an auth challenge fails at once instead of prompting
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def created(backstage: Backstage, pltf: ServerProcess) -> tuple[dict[str, Any], TaskResult]:
    """One service created through Backstage, shared by the checks that read it."""
    values = all_values(pltf, unique_name("e2e"))
    assert set(values) == template_parameters(TEMPLATE_FILE), "send every parameter of the template"
    result = create_and_follow(backstage, values)
    assert result.status == "completed", f"task {result.status}: {failure_summary(result)}"
    return values, result


def failure_summary(result: TaskResult) -> str:
    """pltf's error, when a call to it failed; else the end of the task log."""
    errors = [body.get("error") for body in error_bodies(result)]
    return json.dumps(errors) if errors else result.log[-3000:]


def task_output(result: TaskResult) -> dict[str, str]:
    """The template's output links by title."""
    links = result.output.get("links", [])
    return {link["title"]: link.get("url") or link.get("entityRef") for link in links}


@pytest.mark.parametrize("path", sorted(TEMPLATES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_checked_in_template_is_accepted_by_backstage(backstage: Backstage, path: Path) -> None:
    """Backstage's catalog validates each Template entity (schema, steps) before it lists it."""
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    assert backstage.wait_for_entity("template", name, timeout=30)["kind"] == "Template"


def test_the_template_is_a_valid_backstage_template(backstage: Backstage) -> None:
    entity = backstage.wait_for_entity("template", "python-service")
    assert entity["spec"]["steps"][0]["action"] == "http:backstage:request"
    with backstage.client() as api:
        schema = api.get("/scaffolder/v2/templates/default/template/python-service/parameter-schema")
    assert schema.status_code == 200, schema.text
    fields = {key for step in schema.json()["steps"] for key in step["schema"].get("properties", {})}
    assert {"name", "owner", "system", "repoUrl", "preview", "python_version", "database"} <= fields


def test_dry_run_renders_input_that_pltf_accepts(backstage: Backstage, pltf: ServerProcess) -> None:
    values = all_values(pltf, unique_name("dry"))
    result = backstage.dry_run(TEMPLATE_FILE, values)
    statuses = [entry["body"].get("status") for entry in result["log"]]
    assert "failed" not in statuses, json.dumps(result["log"], indent=1)[-3000:]
    # The scaffolder logs each step's rendered input in a dry run; the Roadie action sends no POST then.
    rendered = next(
        entry["body"]["message"] for entry in result["log"] if "dry-run mode with inputs" in entry["body"]["message"]
    )
    request = json.loads(rendered[rendered.index("{") :])
    assert request["path"] == "/proxy/pltf/v1/actions/service:create/runs"
    assert re.fullmatch(r"backstage-task-\S+", request["headers"]["idempotency-key"])
    body = request["body"]["input"]
    assert body["system"] == "payments", "the EntityPicker ref is passed on as a name"
    assert body["values"]["http_port"] == 9090 and body["preview"] is True, "types survive templating"
    # What Backstage would send is exactly what service:create accepts.
    with pltf.client() as client:
        checked = client.post("/v1/actions/service:create/runs", json={"input": body, "dryRun": True})
    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] == "succeeded"


def test_create_makes_a_repository_with_the_rendered_files(
    created: tuple[dict[str, Any], TaskResult], tmp_path: Path
) -> None:
    values, result = created
    output = pltf_run(result)["output"]
    assert task_output(result)["Repository"] == output["repoContentsUrl"]
    git("clone", "--quiet", output["remoteUrl"], str(tmp_path / "clone"))
    checkout = tmp_path / "clone"
    documents = list(yaml.safe_load_all((checkout / "catalog-info.yaml").read_text()))
    catalog_info = next(doc for doc in documents if doc and doc.get("kind") == "Component")
    assert catalog_info["metadata"]["name"] == values["name"]
    assert catalog_info["spec"]["owner"] in (OWNER, "platform-team")
    assert "EXPOSE 9090" in (checkout / "Dockerfile").read_text()
    assert (checkout / ".gitlab-ci.yml").is_file() and not (checkout / ".github" / "workflows" / "ci.yaml").exists()
    cruft = checkout / ".cruft.json"
    if cruft.exists():
        context = json.loads(cruft.read_text())["context"]["cookiecutter"]
        assert context["system"] == "payments" and context["ci_provider"] == "gitlab-ci"
        assert context["python_version"] == "3.13" and context["alert_target"] == "payments-oncall"


def pltf_run(result: TaskResult) -> dict[str, Any]:
    """The service:create run that the task's "pltf run log" link points at."""
    response = httpx.get(task_output(result)["pltf run log"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    response.raise_for_status()
    return dict(response.json())


def test_create_registers_the_component_in_backstages_catalog(
    backstage: Backstage, created: tuple[dict[str, Any], TaskResult]
) -> None:
    values, result = created
    assert task_output(result)["Open in catalog"] == f"component:default/{values['name']}"
    entity = backstage.wait_for_entity("component", values["name"], timeout=30)
    assert entity["spec"]["owner"] in (OWNER, "platform-team")
    annotations = entity["metadata"]["annotations"]
    assert annotations["backstage.io/managed-by-location"].startswith("url:http://127.0.0.1:")


def test_preview_url_answers(pltf: ServerProcess, created: tuple[dict[str, Any], TaskResult]) -> None:
    need("preview:create" in pltf_actions(pltf), "the preview:create action")
    _, result = created
    preview = task_output(result).get("Preview")
    assert preview, f"no preview link in {result.output}"
    # The golden service's own liveness answer (cookiecutters/python-service .../health.py): pltf's
    # 404 for an unknown preview host or a 502 from a dead service is not the service answering.
    healthz = preview.rstrip("/") + "/healthz"
    seen: list[str] = []

    def answers() -> bool:
        response = fetch_preview(healthz)
        seen.append(f"{response.status_code} {response.text[:200]}")
        if response.status_code != 200 or response.headers.get("content-type") != "application/json":
            return False
        return bool(response.json() == {"status": "ok", "checks": {}})

    try:
        wait_until(answers, timeout=60, what=f"the service's /healthz at {healthz}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answer: {seen[-1] if seen else 'none'}") from None


def fetch_preview(url: str) -> httpx.Response:
    """GET a preview URL; `*.localhost` names are loopback (RFC 6761), as browsers resolve them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        port = f":{parts.port}" if parts.port else ""
        loopback = parts._replace(netloc=f"127.0.0.1{port}").geturl()
        return httpx.get(loopback, headers={"Host": parts.netloc}, timeout=10)
    return httpx.get(url, timeout=10)


def test_retrying_the_task_makes_no_second_repository(
    backstage: Backstage, pltf: ServerProcess, created: tuple[dict[str, Any], TaskResult]
) -> None:
    values, first = created
    backstage.retry(first.id)
    again = backstage.follow(first.id, timeout=150)
    # A retry keeps the first attempt's log and appends a "recovered" event, then the new attempt.
    recovered = max(i for i, event in enumerate(again.events) if event.get("type") == "recovered")
    retried = TaskResult(again.id, again.status, again.events[recovered + 1 :])
    assert "Beginning step Create the service with pltf" in retried.log
    assert retried.status == "completed", failure_summary(retried)
    assert task_output(retried) == task_output(first), "the retry got the first run back"
    with pltf.client() as client:
        runs = client.get("/v1/runs", params={"action": "service:create", "limit": 500}).json()["runs"]
    mine = [run for run in runs if (run.get("output") or {}).get("name") == values["name"]]
    assert len(mine) == 1, f"expected one service:create run for {values['name']}, got {len(mine)}"
    repo = f"{pltf.url}/git/platform-team/{values['name']}.git"
    assert len(git("ls-remote", "--heads", repo).splitlines()) == 1


def test_an_invalid_name_is_refused_by_backstage_before_anything_runs(
    backstage: Backstage, pltf: ServerProcess
) -> None:
    with pytest.raises(TaskRefused) as refused:
        backstage.create_task("python-service", all_values(pltf, "Not_A_DNS_Name"))
    assert refused.value.status == 400
    assert "name" in json.dumps(refused.value.body) and "pattern" in json.dumps(refused.value.body)


def test_a_value_only_pltf_can_judge_fails_the_task_with_our_message(backstage: Backstage, pltf: ServerProcess) -> None:
    # Backstage accepts any entity ref from the EntityPicker; pltf's template wants a DNS-style system name.
    values = all_values(pltf, unique_name("bad"), system="system:default/Payments_Core")
    result = create_and_follow(backstage, values)
    assert result.status == "failed"
    bodies = error_bodies(result)
    assert bodies, f"no error body in the task log:\n{result.log[-3000:]}"
    error = bodies[0]["error"]
    assert error["status"] == 422
    assert any(field["field"] == "values.system" for field in error["fields"]), error
    assert error["message"] in result.log


def test_a_name_that_is_taken_fails_the_task_with_our_message(
    backstage: Backstage, pltf: ServerProcess, created: tuple[dict[str, Any], TaskResult]
) -> None:
    values, _ = created
    result = create_and_follow(backstage, {**values})
    assert result.status == "failed"
    bodies = error_bodies(result)
    assert bodies, f"no error body in the task log:\n{result.log[-3000:]}"
    error = bodies[0]["error"]
    assert error["status"] == 409, error
    assert values["name"] in error["message"] and error["message"] in result.log
