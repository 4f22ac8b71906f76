"""template:update against a real server: services made from version 1 of a template, each edited with a
real `git push`, then version 2 merged into each as a change request on the embedded forge."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_forge_embedded import AUTH_HEADER, git

from conftest import ServerProcess

APP_V1 = "import os\n\nVERSION = 1\nNAME = '{{ cookiecutter.name }}'\nPORT = 8080\n\n\ndef main():\n    print(NAME)\n"
CONFIG_V1 = "replicas: 1\nmemory: 256Mi\ncpu: 100m\nlogLevel: info\n"
GUIDE = "# Guide\n\nHow to run {{ cookiecutter.name }}.\n"


def write_template(root: Path, version: str, files: dict[str, str]) -> None:
    """The template `svc` at `version`: its directory replaced, as an author editing it in place would."""
    template = root / "svc"
    shutil.rmtree(template, ignore_errors=True)
    project = template / "{{cookiecutter.name}}"
    project.mkdir(parents=True)
    context = {"name": "svc", "owner": "group:default/team-a", "tier": "bronze", "_pltf": {"version": version}}
    (template / "cookiecutter.json").write_text(json.dumps(context))
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)


V1 = {"app.py": APP_V1, "config.yaml": CONFIG_V1, "old.txt": "legacy\n", "docs/guide.md": GUIDE}
V2 = {
    "app.py": APP_V1.replace("VERSION = 1", "VERSION = 2"),
    "config.yaml": CONFIG_V1.replace("replicas: 1", "replicas: 2"),
    "docs/handbook.md": GUIDE,
    "Dockerfile": "FROM python:3.12-slim\n",
}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    write_template(root, "1", V1)
    return root


@pytest.fixture
def server(server_env: dict[str, str], templates: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess({**server_env, "PLTF_TEMPLATES_DIR": str(templates)}, tmp_path / "server.log").start()
    yield process
    process.stop()


def run(client: httpx.Client, action: str, params: dict[str, Any]) -> httpx.Response:
    return client.post(f"/v1/actions/{action}/runs", json={"input": params})


def make_service(client: httpx.Client, name: str) -> str:
    rendered = run(client, "cookiecutter:render", {"template": "svc", "values": {"name": name}})
    assert rendered.status_code == 200, rendered.text
    created = run(
        client,
        "repo:create",
        {"workspaceId": rendered.json()["output"]["workspaceId"], "owner": "team-a", "name": name},
    )
    assert created.status_code == 200, created.text
    return str(created.json()["output"]["remoteUrl"])


def push_edit(remote: str, checkout: Path, edit: Any) -> None:
    assert git("clone", "--quiet", remote, str(checkout), authorization=AUTH_HEADER).returncode == 0
    edit(checkout)
    assert git("add", "--all", ".", cwd=checkout).returncode == 0
    assert git("commit", "--quiet", "-m", "service edit", cwd=checkout).returncode == 0
    pushed = git("push", "--quiet", "origin", "HEAD:main", cwd=checkout, authorization=AUTH_HEADER)
    assert pushed.returncode == 0, pushed.stderr


def replace_in(path: str, old: str, new: str) -> Any:
    def edit(checkout: Path) -> None:
        target = checkout / path
        assert old in target.read_text()
        target.write_text(target.read_text().replace(old, new))

    return edit


def test_a_recorded_render_names_a_commit_pltf_can_render_again(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        remote = make_service(client, "recorded")
    git("clone", "--quiet", remote, str(tmp_path / "c"), authorization=AUTH_HEADER)
    recorded = json.loads((tmp_path / "c" / ".cruft.json").read_text())
    assert recorded["template"] == "cookiecutters/svc"
    assert len(recorded["commit"]) == 40
    assert recorded["context"]["cookiecutter"]["name"] == "recorded"
    assert recorded["template_version"] == "1"


def test_bad_repositories_get_a_422_that_says_why(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        missing = run(client, "template:update", {"repository": "team-a/nothing-here"})
        assert missing.status_code == 422
        assert missing.json()["error"]["fields"][0]["field"] == "repository"
        remote = make_service(client, "plain")
        push_edit(remote, tmp_path / "plain", lambda c: (c / ".cruft.json").unlink())
        plain = run(client, "template:update", {"repository": "team-a/plain"})
        assert plain.status_code == 422, plain.text
        assert "not made from a template" in plain.json()["error"]["message"]
        assert git("ls-remote", "--heads", remote, authorization=AUTH_HEADER).stdout.count("refs/heads/") == 1
