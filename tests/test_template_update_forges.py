"""template:update on GitHub, Gitea and GitLab: their REST APIs are played by respx, in the shapes their
documentation gives (GitHub REST v3 pulls, Gitea API v1 pulls, GitLab REST v4 merge requests); the
repository is a real bare repository the update clones from and pushes to with the real git."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
import yaml
from fastapi.testclient import TestClient
from test_forge_providers import GHE_API, GITEA, GITHUB_TOKEN, GITLAB, GITLAB_TOKEN, no_token_in, rest_forge_settings
from test_template_update import V1, V2, write_template

from actions_server.app import create_app
from actions_server.auth import hash_token
from conftest import TOKEN, make_settings


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T"}
    env |= {"GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    write_template(tmp_path / "templates", "1", V1)
    return tmp_path / "templates"


@pytest.fixture
def client(tmp_path: Path, templates: Path) -> Iterator[TestClient]:
    settings = rest_forge_settings(tmp_path, templates_dir=templates)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def remote(client: TestClient, templates: Path, tmp_path: Path) -> Path:
    """A service made from version 1, edited on a line version 2 changes too, then version 2 published."""
    rendered = client.post(
        "/v1/actions/cookiecutter:render/runs", json={"input": {"template": "svc", "values": {"name": "widgets"}}}
    )
    archive = client.get(f"/v1/workspaces/{rendered.json()['output']['workspaceId']}/archive")
    source = tmp_path / "source"
    source.mkdir()
    subprocess.run(["tar", "-xz", "-C", str(source), "--strip-components=1"], input=archive.content, check=True)
    bare = tmp_path / "widgets.git"
    assert git("init", "--quiet", "--bare", "-b", "main", str(bare)).returncode == 0
    assert git("init", "--quiet", "-b", "main", cwd=source).returncode == 0
    (source / "config.yaml").write_text((source / "config.yaml").read_text().replace("replicas: 1", "replicas: 5"))
    git("add", "--all", ".", cwd=source)
    git("commit", "--quiet", "-m", "service", cwd=source)
    assert git("push", "--quiet", bare.as_uri(), "main", cwd=source).returncode == 0
    write_template(templates, "2", V2)
    return bare


# provider: (repository URL, the repository lookup, the list of open ones, the create, what it answers)
SHAPES: dict[str, dict[str, Any]] = {
    "github": {
        "url": "https://ghe.example.com/acme/widgets",
        "api": GHE_API,
        "repo": "/repos/acme/widgets",
        "list": "/repos/acme/widgets/pulls",
        "create": "/repos/acme/widgets/pulls",
        "web": "https://ghe.example.com/acme/widgets/pull/7",
    },
    "gitea": {
        "url": "https://gitea.example.com/acme/widgets.git",
        "api": f"{GITEA}/api/v1",
        "repo": "/repos/acme/widgets",
        "list": "/repos/acme/widgets/pulls",
        "create": "/repos/acme/widgets/pulls",
        "web": "https://gitea.example.com/acme/widgets/pulls/7",
    },
    "gitlab": {
        "url": "https://gitlab.example.com/platform/acme/widgets",
        "api": f"{GITLAB}/api/v4",
        "repo": "/projects/platform%2Facme%2Fwidgets",
        "list": "/projects/platform%2Facme%2Fwidgets/merge_requests",
        "create": "/projects/platform%2Facme%2Fwidgets/merge_requests",
        "web": "https://gitlab.example.com/platform/acme/widgets/-/merge_requests/7",
    },
}


@pytest.mark.parametrize("provider", sorted(SHAPES))
def test_an_update_opens_one_change_request_on_the_provider(
    client: TestClient, remote: Path, provider: str, tmp_path: Path
) -> None:
    """Documented REST shapes (respx): repository lookup, the open change requests for the branch, the create."""
    shape = SHAPES[provider]
    if provider == "gitlab":
        repository = {"id": 7, "http_url_to_repo": remote.as_uri(), "default_branch": "main"}
        opened = {"iid": 7, "web_url": shape["web"], "source_branch": "pltf/update-2", "target_branch": "main"}
    else:
        repository = {"id": 7, "clone_url": remote.as_uri(), "default_branch": "main"}
        opened = {"number": 7, "html_url": shape["web"], "head": {"ref": "pltf/update-2"}, "base": {"ref": "main"}}
    with respx.mock(base_url=shape["api"], assert_all_called=True) as api:
        api.get(shape["repo"]).respond(200, json=repository)
        listed = api.get(shape["list"]).mock(
            side_effect=[respx.MockResponse(200, json=[]), respx.MockResponse(200, json=[opened])]
        )
        created = api.post(shape["create"]).respond(201, json=opened)
        first = client.post("/v1/actions/template:update/runs", json={"input": {"repository": shape["url"]}})
        again = client.post("/v1/actions/template:update/runs", json={"input": {"repository": shape["url"]}})
    assert first.status_code == 200, first.text
    out = first.json()["output"]
    assert (out["status"], out["conflicts"], out["changeRequestUrl"]) == ("conflicts", ["config.yaml"], shape["web"])
    assert again.json()["output"]["changeRequestUrl"] == shape["web"]
    assert created.call_count == 1
    body = json.loads(created.calls.last.request.content)
    if provider == "gitlab":
        assert listed.calls[0].request.url.params["source_branch"] == "pltf/update-2"
        assert listed.calls[0].request.url.params["state"] == "opened"
        assert (body["source_branch"], body["target_branch"]) == ("pltf/update-2", "main")
        assert "config.yaml" in body["description"]
        assert created.calls.last.request.headers["private-token"] == GITLAB_TOKEN
    else:
        assert listed.calls[0].request.url.params["state"] == "open"
        if provider == "github":
            assert listed.calls[0].request.url.params["head"] == "acme:pltf/update-2"
        assert (body["head"], body["base"]) == ("pltf/update-2", "main")
        assert "config.yaml" in body["body"]
    assert body["title"] == "Update template svc from 1 to 2"
    # The branch is real, on top of main, with the conflict marked; main itself did not move.
    check = tmp_path / "check"
    assert git("clone", "--quiet", "--branch", "pltf/update-2", remote.as_uri(), str(check)).returncode == 0
    assert "<<<<<<<" in (check / "config.yaml").read_text()
    assert "VERSION = 2" in (check / "app.py").read_text()
    assert git("merge-base", "--is-ancestor", "origin/main", "HEAD", cwd=check).returncode == 0
    no_token_in(first.text)


def test_a_team_token_may_not_update_a_repository_on_another_forge(tmp_path: Path, templates: Path) -> None:
    """pltf acts on GitHub with its own token and knows no owner team there: only an admin token updates."""
    team_token = "team-a-token-0123456789"
    tokens = tmp_path / "tokens.yaml"
    entry = {"name": "team-a", "sha256": hash_token(team_token), "actions": ["*"], "team": "group:default/team-a"}
    tokens.write_text(yaml.safe_dump({"tokens": [entry]}))
    settings = make_settings(
        tmp_path, templates_dir=templates, github_url=GHE_API, github_token=GITHUB_TOKEN, token_file=tokens
    )
    with (
        TestClient(create_app(settings), headers={"Authorization": f"Bearer {team_token}"}) as team,
        respx.mock(base_url=GHE_API, assert_all_called=False) as api,
    ):
        anything = api.route().respond(200, json={})
        refused = team.post("/v1/actions/template:update/runs", json={"input": {"repository": SHAPES["github"]["url"]}})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == "only an admin token updates repositories on GitHub"
    assert anything.call_count == 0
