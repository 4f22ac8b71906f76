"""Hostile values: each one gets a clear 422, or is rendered literally. None runs, none escapes.

When a protection regresses these attacks really run, as whoever runs the tests: so every
payload aims inside the test's own temporary directory (the runs' scratch directories
are put there too, deep enough that `../` escapes stay inside), and its sentinels are there.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from actions_server.app import create_app
from conftest import FIXTURE_TEMPLATES, TOKEN, ServerProcess, make_settings

RENDER = "/v1/actions/cookiecutter:render/runs"
# Read before any test moves the scratch directories: where a short directory of a test's own can go.
SYSTEM_TEMP = tempfile.gettempdir()


@pytest.fixture(autouse=True)
def scratch_inside_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs render in a scratch directory six levels under tmp_path instead of the system's /tmp."""
    deep = tmp_path.joinpath("s1", "s2", "s3", "s4", "s5", "s6")
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))


def dry_run(client: TestClient, values: dict[str, Any], template: str = "demo") -> Any:
    return client.post(RENDER, json={"input": {"template": template, "values": values}, "dryRun": True})


def files_of(response: Any) -> dict[str, str]:
    return {
        item["path"]: base64.b64decode(item["base64Content"]).decode()
        for item in response.json()["output"]["directoryContents"]
    }


@pytest.mark.parametrize(
    "payload",
    [
        "{{ 7*7 }}",
        "{% for x in range(3) %}loop{% endfor %}",
        "{{ cycler.__init__.__globals__.os.popen('touch SENTINEL').read() }}",
        "{# comment #}",
        "$(touch SENTINEL) `touch SENTINEL` ; touch SENTINEL",
        "${{ secrets.backstageToken }}",
    ],
)
def test_template_syntax_in_content_is_rendered_literally(client: TestClient, tmp_path: Path, payload: str) -> None:
    sentinel = tmp_path / "pltf-pwned"
    payload = payload.replace("SENTINEL", str(sentinel))
    response = dry_run(client, {"description": payload})
    assert response.status_code == 200, response.text
    assert f"\n{payload}\n" in files_of(response)["README.md"]
    assert not sentinel.exists()


def test_derived_defaults_use_values_as_data(client: TestClient) -> None:
    # `slug` is computed from `name` by the template; the name's text must not be evaluated on the way.
    response = dry_run(client, {"name": "safe-name", "description": "{{ cookiecutter.name }}"})
    assert "slug=safe_name" in files_of(response)["README.md"]
    assert "{{ cookiecutter.name }}" in files_of(response)["README.md"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory of this test's own with a path short enough for a name value (tmp_path's is too long)."""
    path = Path(tempfile.mkdtemp(prefix="pltf-", dir=SYSTEM_TEMP))
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../pltf-escape", "path"),
        ("../../../../tmp/pltf-escape", "path"),
        ("TMP/cron.d/pltf-escape", "path"),
        ("..", "path"),
        ("a\\b", "path"),
        ("", "path"),
        ("{{ 7*7 }}", "template syntax"),
        ("{% if true %}x{% endif %}", "template syntax"),
    ],
)
def test_values_in_file_names_cannot_escape_or_execute(
    client: TestClient, tmp_path: Path, short_dir: Path, name: str, problem: str
) -> None:
    response = dry_run(client, {"name": name.replace("TMP", str(short_dir))})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert problem in error["message"]
    assert any(field["field"] in ("values.name", "values.slug", "values") for field in error["fields"])
    assert list(tmp_path.rglob("pltf-escape*")) == [] and list(short_dir.iterdir()) == []
    assert client.get("/v1/runs").json()["runs"] == []


def test_very_long_values_are_refused(client: TestClient) -> None:
    response = dry_run(client, {"description": "x" * 5000})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "values.description"
    long_name = dry_run(client, {"name": "n" * 64})
    assert long_name.status_code == 422 and long_name.json()["error"]["fields"][0]["field"] == "values.name"


def test_control_characters_are_refused(client: TestClient) -> None:
    response = dry_run(client, {"description": "nul\x00byte"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "values.description"
    # Tabs and newlines are ordinary text.
    assert dry_run(client, {"description": "two\nlines\tand a tab"}).status_code == 200


def test_non_utf8_body_is_refused(client: TestClient) -> None:
    body = b'{"input": {"template": "demo", "values": {"description": "\xc3\x28"}}}'
    response = client.post(RENDER, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422


@pytest.mark.parametrize("template", ["../../etc", "DEMO_PATH", "demo/../hooked", "Demo Template", "."])
def test_template_names_cannot_be_paths(client: TestClient, template: str) -> None:
    # DEMO_PATH: the absolute path of a real template, not a system directory, is refused all the same.
    template = template.replace("DEMO_PATH", str(FIXTURE_TEMPLATES / "demo"))
    response = client.post(RENDER, json={"input": {"template": template}})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "template"


def _template_repository(tmp_path: Path) -> Path:
    """A real git repository holding the `hooked` template, tagged v1."""
    repo = tmp_path / "templates-repo"
    subprocess.run(["cp", "-r", str(FIXTURE_TEMPLATES / "hooked"), str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "template"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    return repo


def test_allow_listed_git_template_renders_without_running_hooks(tmp_path: Path) -> None:
    repo = _template_repository(tmp_path)
    settings = make_settings(tmp_path, template_sources=[f"file://{tmp_path}/"])
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        body = {"input": {"template": f"file://{repo}", "ref": "v1", "values": {"greeting": "hi"}}, "dryRun": True}
        response = client.post(RENDER, json=body)
        assert response.status_code == 200, response.text
        files = files_of(response)
        assert files["greeting.txt"] == "hi\n"
        # Allow-listed is not trusted: its hooks do not run.
        assert "from-hook.txt" not in files
        refused = client.post(RENDER, json={"input": {"template": "file:///elsewhere/repo.git"}})
        assert refused.status_code == 422


def test_trusted_git_template_runs_hooks(tmp_path: Path) -> None:
    repo = _template_repository(tmp_path)
    prefix = f"file://{tmp_path}/"
    settings = make_settings(tmp_path, template_sources=[prefix], trusted_template_sources=[prefix])
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        body = {"input": {"template": f"file://{repo}", "ref": "v1"}, "dryRun": True}
        assert files_of(client.post(RENDER, json=body))["from-hook.txt"] == "hello\n"


def test_hook_timeout_fails_the_run_clearly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, hook_timeout_seconds=0.5)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        response = client.post(RENDER, json={"input": {"template": "blocking-hook"}})
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "hook_timeout"


def _forge_template(server: ServerProcess, api: httpx.Client, owner: str, workdir: Path) -> str:
    """A repository `<owner>/tmpl` on the server's embedded forge holding the `hooked` template, pushed over HTTP."""
    workspace = api.post(RENDER, json={"input": {"template": "demo"}}).json()["output"]["workspaceId"]
    made = api.post(
        "/v1/actions/repo:create/runs", json={"input": {"workspaceId": workspace, "owner": owner, "name": "tmpl"}}
    )
    assert made.status_code == 200, made.text
    checkout = workdir / owner
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(checkout)]
    subprocess.run(["git", "clone", "-q", f"{server.url}/git/{owner}/tmpl.git", str(checkout)], check=True)
    subprocess.run([*git, "rm", "-rq", "."], check=True)
    subprocess.run(["cp", "-r", f"{FIXTURE_TEMPLATES / 'hooked'}/.", str(checkout)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "the hooked template"], check=True)
    pushed = server.url.replace("://", f"://pltf:{TOKEN}@") + f"/git/{owner}/tmpl.git"
    subprocess.run([*git, "push", "-q", pushed, "HEAD:main"], check=True, capture_output=True)
    return f"{server.url}/git/{owner}/tmpl.git"


def test_trusted_template_prefixes_cannot_be_left_with_dot_segments(tmp_path: Path, server_env: dict[str, str]) -> None:
    """Issue 12 finding 3: `<prefix>/../team-b/x.git` passed a string prefix check, and git fetched team-b's."""
    server = ServerProcess(server_env, tmp_path / "server.log")
    prefix = f"{server.url}/git/platform-team/"
    server.env.update({"PLTF_TEMPLATE_SOURCES": prefix, "PLTF_TRUSTED_TEMPLATE_SOURCES": prefix})
    server.start()
    try:
        with server.client() as api:
            ours = _forge_template(server, api, "platform-team", tmp_path)
            _forge_template(server, api, "team-b", tmp_path)
            # The allow-listed, trusted source renders, hooks and all.
            rendered = api.post(RENDER, json={"input": {"template": ours}, "dryRun": True})
            assert rendered.status_code == 200, rendered.text
            assert "from-hook.txt" in files_of(rendered)
            log_before = (tmp_path / "server.log").read_text()
            for escape in ("../team-b/tmpl.git", "%2e%2e/team-b/tmpl.git", "sub/%2E%2E/../team-b/tmpl.git"):
                refused = api.post(RENDER, json={"input": {"template": prefix + escape}, "dryRun": True})
                assert refused.status_code == 422, (escape, refused.text)
                assert refused.json()["error"]["fields"][0]["field"] == "template"
            refused = api.post(RENDER, json={"input": {"template": f"{server.url}/git/platform-team-evil/tmpl.git"}})
            assert refused.status_code == 422
            # Nothing was cloned: team-b's repository was never fetched, and only ours is cached.
            assert "/git/team-b/tmpl.git/info/refs" not in (tmp_path / "server.log").read_text()[len(log_before) :]
            assert len(list((tmp_path / "data" / "template-cache").iterdir())) == 1
    finally:
        server.stop()
