"""End to end through a real Backstage backend: the Create button, minus the browser.

A headless Backstage (catalog, scaffolder, proxy, Roadie's http:backstage:request;
tests/e2e/backstage/) with pltf's scaffolder module installed from its packed
tarball (backstage-plugin/) runs our checked-in `backstage-templates/` and the
Roadie variant against a real `pltf serve` on the embedded defaults, through
Backstage's own REST API. A second Backstage, without the module, reaches pltf
through its actions registry with app-config only.

Opt-in, because the npm install takes minutes the first time:

    PLTF_E2E_BACKSTAGE=1 .venv/bin/pytest tests/e2e

(`.ci/run` runs exactly that after the Python tests.) With the variable set, a
missing Node or a failed install fails the tests rather than skipping them.
"""

from __future__ import annotations

import base64
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
from backstage_harness import (
    TEMPLATES_DIR,
    Backstage,
    TaskRefused,
    TaskResult,
    free_port,
    install,
    install_module,
    node_available,
)

from actions_server.templates.backstage import TemplateOptions, load_cookiecutter, render
from conftest import ROOT, TOKEN, ServerProcess, need, wait_until

ENABLED = os.environ.get("PLTF_E2E_BACKSTAGE") == "1"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ENABLED, reason="Backstage e2e is opt-in: PLTF_E2E_BACKSTAGE=1 pytest tests/e2e"),
]

TEMPLATE_FILE = TEMPLATES_DIR / "python-service.yaml"
OWNER = "group:default/platform-team"
RENDER_VALUES = {
    "description": "Rendered through Backstage",
    "owner": OWNER,
    "system": "payments",
}


@pytest.fixture(scope="module")
def registry_port() -> int:
    """The port of the Backstage without the module, chosen early: pltf trusts its plugin tokens."""
    return free_port()


@pytest.fixture(scope="module")
def pltf(tmp_path_factory: pytest.TempPathFactory, registry_port: int) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("pltf")
    server = ServerProcess(
        {
            "PLTF_DATA_DIR": str(work / "data"),
            "PLTF_TEMPLATES_DIR": str(ROOT / "cookiecutters"),
            "PLTF_API_TOKEN": TOKEN,
            "PLTF_BACKSTAGE_AUTH_URL": f"http://127.0.0.1:{registry_port}",
        },
        work / "pltf.log",
    )
    server.start()
    yield server
    server.stop()


def template_document(name: str, steps: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "scaffolder.backstage.io/v1beta3",
        "kind": "Template",
        "metadata": {"name": name, "title": name},
        "spec": {
            "owner": OWNER,
            "type": "service",
            "parameters": [{"required": ["name"], "properties": {"name": {"type": "string"}}}],
            "steps": steps,
            "output": output,
        },
    }


def render_step(**extra: Any) -> dict[str, Any]:
    values = {"name": "${{ parameters.name }}", **RENDER_VALUES}
    return {
        "id": "render",
        "name": "Render with pltf",
        "action": "pltf:cookiecutter:render",
        "input": {"template": "python-service", "values": values, **extra},
    }


# Backstage's own steps after pltf's render: the files are in the task's workspace.
INTO_WORKSPACE = template_document(
    "pltf-render-into-workspace",
    [
        render_step(intoWorkspace=True),
        {"id": "list", "name": "List the workspace", "action": "fs:readdir", "input": {"paths": ["."]}},
        {
            "id": "rename",
            "name": "Rename a file",
            "action": "fs:rename",
            "input": {"files": [{"from": "README.md", "to": "README.rendered.md"}]},
        },
        {"id": "again", "name": "List it again", "action": "fs:readdir", "input": {"paths": ["."]}},
    ],
    {"before": "${{ steps.list.output.files }}", "after": "${{ steps.again.output.files }}"},
)
REGISTRY_RENDER = template_document(
    "pltf-render-through-the-registry",
    [render_step()],
    {"directory": "${{ steps.render.output.directory }}", "files": "${{ steps.render.output.files }}"},
)


def write_templates(directory: Path, *documents: dict[str, Any]) -> list[Path]:
    paths = []
    for document in documents:
        path = directory / f"{document['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def roadie_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Roadie variant (`pltf backstage template --roadie`), for a Backstage without the module."""
    path = tmp_path_factory.mktemp("roadie") / "python-service-roadie.yaml"
    options = TemplateOptions(name="python-service-roadie", roadie=True)
    path.write_text(render(load_cookiecutter(ROOT / "cookiecutters" / "python-service"), options))
    return path


@pytest.fixture(scope="module")
def backstage(
    pltf: ServerProcess, roadie_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backstage]:
    assert node_available(), "node and npm are needed for the Backstage end-to-end test (Node 20+)"
    install()
    work = tmp_path_factory.mktemp("backstage")
    module = install_module(work)
    templates = [*sorted(TEMPLATES_DIR.glob("*.yaml")), roadie_template, *write_templates(work, INTO_WORKSPACE)]
    instance = Backstage(pltf.url, TOKEN, work, templates, modules=[module])
    instance.start()
    try:
        # The backend is ready a moment before the catalog has read its locations.
        for name in ("python-service", "python-service-roadie", "pltf-render-into-workspace"):
            instance.wait_for_entity("template", name)
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def registry_backstage(
    pltf: ServerProcess, registry_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backstage]:
    """Backstage without pltf's module: pltf is plugin `pltf` of its actions registry, by app-config only."""
    install()
    work = tmp_path_factory.mktemp("backstage-registry")
    registry_config = {
        "discovery": {"endpoints": [{"target": pltf.url, "plugins": ["pltf"]}]},
        "backend": {"actions": {"pluginSources": ["pltf"]}},
    }
    instance = Backstage(
        pltf.url, TOKEN, work, write_templates(work, REGISTRY_RENDER), extra_config=registry_config, port=registry_port
    )
    instance.start()
    try:
        instance.wait_for_entity("template", "pltf-render-through-the-registry")
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


def create_and_follow(backstage: Backstage, values: dict[str, Any], template: str = "python-service") -> TaskResult:
    return backstage.follow(backstage.create_task(template, values), timeout=150)


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
    assert entity["spec"]["steps"][0]["action"] == "pltf:service:create"
    with backstage.client() as api:
        schema = api.get("/scaffolder/v2/templates/default/template/python-service/parameter-schema")
    assert schema.status_code == 200, schema.text
    fields = {key for step in schema.json()["steps"] for key in step["schema"].get("properties", {})}
    assert {"name", "owner", "system", "repoUrl", "preview", "python_version", "database"} <= fields


def test_the_roadie_variants_dry_run_renders_input_that_pltf_accepts(
    backstage: Backstage, pltf: ServerProcess, roadie_template: Path
) -> None:
    values = all_values(pltf, unique_name("dry"))
    result = backstage.dry_run(roadie_template, values)
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


def test_through_roadie_a_value_only_pltf_can_judge_fails_the_task_with_our_message(
    backstage: Backstage, pltf: ServerProcess
) -> None:
    # Backstage accepts any entity ref from the EntityPicker; pltf's template wants a DNS-style system name.
    values = all_values(pltf, unique_name("bad"), system="system:default/Payments_Core")
    result = create_and_follow(backstage, values, "python-service-roadie")
    assert result.status == "failed"
    bodies = error_bodies(result)
    assert bodies, f"no error body in the task log:\n{result.log[-3000:]}"
    error = bodies[0]["error"]
    assert error["status"] == 422
    assert any(field["field"] == "values.system" for field in error["fields"]), error
    assert error["message"] in result.log


def test_through_roadie_a_name_that_is_taken_fails_the_task_with_our_message(
    backstage: Backstage, pltf: ServerProcess, created: tuple[dict[str, Any], TaskResult]
) -> None:
    values, _ = created
    result = create_and_follow(backstage, {**values}, "python-service-roadie")
    assert result.status == "failed"
    bodies = error_bodies(result)
    assert bodies, f"no error body in the task log:\n{result.log[-3000:]}"
    error = bodies[0]["error"]
    assert error["status"] == 409, error
    assert values["name"] in error["message"] and error["message"] in result.log


# -- pltf's scaffolder module --------------------------------------------------------


def test_the_module_offers_every_pltf_action_with_its_input_schema(backstage: Backstage, pltf: ServerProcess) -> None:
    offered = backstage.actions()
    with pltf.client() as client:
        ours = {action["id"]: action for action in client.get("/v1/actions").json()["actions"]}
    for action_id, action in ours.items():
        template_action = offered.get(f"pltf:{action_id}")
        assert template_action is not None, f"pltf:{action_id} is not among Backstage's actions: {sorted(offered)}"
        schema = template_action["schema"]["input"]
        assert set(action["schema"]["input"]["properties"]) <= set(schema["properties"]), action_id
        assert template_action["description"] == action["description"]
    assert offered["pltf:cookiecutter:render"]["schema"]["input"]["properties"]["intoWorkspace"]["type"] == "boolean"


def pltf_lines(result: TaskResult) -> list[tuple[int, str]]:
    """pltf's own log lines in the task log, with their step names (`[render] …`), and the poll that brought each."""
    lines = []
    for event, poll in zip(result.events, result.polls, strict=True):
        # Backstage's task logger writes `<level>: <message>`, the level in ANSI colours.
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(event["body"].get("message", "")))
        message = re.sub(r"^[a-z]+: ", "", message)
        if event.get("type") == "log" and re.match(r"\[(render|publish|catalog|preview)\] ", message):
            lines.append((poll, message))
    return lines


def test_the_task_log_shows_pltfs_steps_while_the_task_runs(created: tuple[dict[str, Any], TaskResult]) -> None:
    _, result = created
    lines = pltf_lines(result)
    steps = {message.split("]", 1)[0] + "]" for _, message in lines}
    assert {"[render]", "[publish]", "[preview]"} <= steps, result.log[-3000:]
    finished = result.polls[-1]
    # The preview takes seconds after the render: its lines were read from a task still running.
    first_render = next(poll for poll, message in lines if message.startswith("[render]"))
    assert first_render < finished, "pltf's lines arrived only with the task's end"


def started_run_id(result: TaskResult) -> str | None:
    found = re.search(r"pltf (?:started|already had) run ([0-9a-f-]{36})", result.log)
    return found.group(1) if found else None


def test_cancelling_the_task_cancels_the_pltf_run(backstage: Backstage, pltf: ServerProcess) -> None:
    values = all_values(pltf, unique_name("cancel"))
    task_id = backstage.create_task("python-service", values)
    seen: dict[str, str] = {}

    def run_started() -> bool:
        # Cancel once pltf is in its steps: the run exists and is busy.
        with backstage.client() as api:
            events = api.get(f"/scaffolder/v2/tasks/{task_id}/events").json()
        log = "\n".join(str(event["body"].get("message", "")) for event in events if event.get("type") == "log")
        run_id = started_run_id(TaskResult(task_id, "", events))
        if run_id and "[render]" in log:
            seen["run"] = run_id
            return True
        return False

    wait_until(run_started, timeout=60, what="pltf's run to start rendering")
    backstage.cancel(task_id)
    with backstage.client() as api:
        # The "cancelled" event comes first; the task settles once its step has given up.
        status = wait_until(
            lambda: (found := api.get(f"/scaffolder/v2/tasks/{task_id}").json()["status"]) != "processing" and found,
            timeout=120,
            what="the task to stop",
        )
        events = api.get(f"/scaffolder/v2/tasks/{task_id}/events").json()
    log = TaskResult(task_id, status, events).log
    # Backstage 4.3 marks a cancelled task whose step stopped "failed" (its cancel event says cancelled).
    assert status in ("cancelled", "failed"), status
    assert any(event.get("type") == "cancelled" for event in events)
    assert f"cancelling pltf run {seen['run']}" in log, log[-3000:]
    with pltf.client() as client:
        run = wait_until(
            lambda: (found := client.get(f"/v1/runs/{seen['run']}").json())["status"] != "running" and found,
            timeout=90,
            what="the pltf run to stop",
        )
    assert run["status"] == "cancelled", run.get("error")


def test_through_the_module_a_name_that_is_taken_fails_with_pltfs_message_in_one_line(
    backstage: Backstage, created: tuple[dict[str, Any], TaskResult]
) -> None:
    values, _ = created
    result = create_and_follow(backstage, {**values, "preview": False})
    assert result.status == "failed"
    message = f"repository platform-team/{values['name']} already exists"
    assert message in result.log, result.log[-3000:]
    assert "Response body" not in result.log and '{"error"' not in result.log


def test_through_the_module_a_value_only_pltf_can_judge_names_the_field(
    backstage: Backstage, pltf: ServerProcess
) -> None:
    values = all_values(pltf, unique_name("bad"), system="system:default/Payments_Core")
    result = create_and_follow(backstage, values)
    assert result.status == "failed"
    assert "values.system" in result.log and '{"error"' not in result.log, result.log[-3000:]


def test_a_dry_run_of_the_template_is_a_pltf_dry_run(backstage: Backstage, pltf: ServerProcess) -> None:
    result = backstage.dry_run(TEMPLATE_FILE, all_values(pltf, unique_name("dry")))
    log = "\n".join(entry["body"].get("message", "") for entry in result["log"])
    assert "failed" not in [entry["body"].get("status") for entry in result["log"]], log[-3000:]
    assert "repository: skipped on a dry run" in log, log[-3000:]


def test_a_dry_run_of_cookiecutter_render_returns_the_rendered_files(backstage: Backstage) -> None:
    name = unique_name("dryfiles")
    template = template_document("dry-render", [render_step()], {})
    result = backstage.dry_run(template, {"name": name})
    files = {entry["path"]: base64.b64decode(entry["base64Content"]).decode() for entry in result["directoryContents"]}
    assert "catalog-info.yaml" in files and "Dockerfile" in files, sorted(files)
    assert f'name: "{name}"' in files["catalog-info.yaml"]


def test_render_into_the_workspace_then_backstages_own_steps(backstage: Backstage) -> None:
    name = unique_name("ws")
    result = backstage.follow(backstage.create_task("pltf-render-into-workspace", {"name": name}), timeout=120)
    assert result.status == "completed", result.log[-3000:]
    before = {entry["path"] for entry in result.output["before"]}
    after = {entry["path"] for entry in result.output["after"]}
    assert {"README.md", "catalog-info.yaml", "Dockerfile"} <= before, sorted(before)
    assert "README.rendered.md" in after and "README.md" not in after


# -- pltf on Backstage's actions registry, without the module ---------------------------------


def test_without_the_module_backstage_lists_pltf_actions_from_the_registry(
    registry_backstage: Backstage, pltf: ServerProcess
) -> None:
    offered = registry_backstage.actions()
    with pltf.client() as client:
        ours = {action["id"]: action for action in client.get("/v1/actions").json()["actions"]}
    assert {f"pltf:{action_id}" for action_id in ours} <= set(offered), sorted(offered)
    render_schema = offered["pltf:cookiecutter:render"]["schema"]["input"]
    assert render_schema["properties"] == ours["cookiecutter:render"]["schema"]["input"]["properties"]


def test_without_the_module_a_template_runs_a_pltf_action_with_backstages_plugin_token(
    registry_backstage: Backstage, pltf: ServerProcess
) -> None:
    name = unique_name("registry")
    result = registry_backstage.follow(
        registry_backstage.create_task("pltf-render-through-the-registry", {"name": name}), timeout=120
    )
    assert result.status == "completed", result.log[-3000:]
    assert result.output["directory"] == name and "catalog-info.yaml" in result.output["files"]
    with pltf.client() as client:
        runs = client.get("/v1/runs", params={"action": "cookiecutter:render", "limit": 500}).json()["runs"]
    mine = [run for run in runs if (run.get("output") or {}).get("directory") == name]
    # Not pltf's token: Backstage's own plugin token, verified against the keys it publishes.
    assert [run["caller"] for run in mine] == ["backstage:plugin:scaffolder"]


def test_the_provision_template_plans_with_the_module_in_a_dry_run(backstage: Backstage) -> None:
    values = {
        "name": "promoapi", "env": "prod", "owner": OWNER, "tier": "standard", "pii": False, "exposure": "internal",
        "availability": 99.9, "latency_p99_ms": 500, "monthly_usd": 500, "cpu": "2", "memory": "4Gi",
        "dependsOn": [], "secrets": [{"name": "db", "path": "prod/promoapi/db"}],
    }  # fmt: skip
    result = backstage.dry_run(TEMPLATES_DIR / "provision-service.yaml", values)
    log = "\n".join(entry["body"].get("message", "") for entry in result["log"])
    assert "failed" not in [entry["body"].get("status") for entry in result["log"]], log[-3000:]
    assert "service:provision" in log and "pltf started run" in log, log[-3000:]


def test_the_roadie_variant_creates_and_registers_a_service(backstage: Backstage, pltf: ServerProcess) -> None:
    values = all_values(pltf, unique_name("roadie"), preview=False)
    result = create_and_follow(backstage, values, "python-service-roadie")
    assert result.status == "completed", failure_summary(result)
    assert task_output(result)["Open in catalog"] == f"component:default/{values['name']}"
    repo = f"{pltf.url}/git/platform-team/{values['name']}.git"
    assert len(git("ls-remote", "--heads", repo).splitlines()) == 1
