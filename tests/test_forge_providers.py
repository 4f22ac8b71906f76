"""GitHub, GitLab and Gitea forges against their documented REST shapes.

None of the three can be reached from here, so their APIs are played by respx
with the request and response shapes from their documentation:

- GitHub REST v3: GET /users/{owner} (type User or Organization), POST /orgs/{org}/repos
  or POST /user/repos (201; 422 "name already exists on this account"), PUT
  /repos/{o}/{r}/topics, PATCH /repos/{o}/{r}, PUT /repos/{o}/{r}/branches/{b}/protection,
  DELETE /repos/{o}/{r} (204).
- GitLab REST v4: GET /namespaces/{id or url-encoded path}, POST /projects with
  namespace_id (201; 400 {"message": {"name": ["has already been taken"]}}), PUT
  /projects/{id} with default_branch, POST /projects/{id}/protected_branches with name,
  push_access_level, merge_access_level and allow_force_push, DELETE /projects/{id} (202).
- Gitea REST v1: GET /orgs/{org}, POST /orgs/{org}/repos or /user/repos (201; 409),
  PUT /repos/{o}/{r}/topics (204), PATCH /repos/{o}/{r}, POST
  /repos/{o}/{r}/branch_protections (201), DELETE /repos/{o}/{r} (204).

The push stays real: the "HTTPS clone URL" the fake API returns is a local bare
repository (file://) or this project's own embedded forge over HTTP, which
checks the token that git sends.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from actions_server.app import create_app
from actions_server.config import Settings
from actions_server.errors import PltfError
from actions_server.forges import GitAuthor, RepositorySpec, forge_for
from actions_server.redact import Redactor
from actions_server.services import Services
from conftest import TOKEN, ServerProcess, make_settings

GITHUB_TOKEN = "ghp_github-token-0123456789abcdef"
GITLAB_TOKEN = "glpat-gitlab-token-0123456789"
GITEA_TOKEN = "gitea-token-0123456789abcdef"
GHE_API = "https://ghe.example.com/api/v3"
GITLAB = "https://gitlab.example.com"
GITEA = "https://gitea.example.com"
RUNS = "/v1/actions/repo:create/runs"


def init_bare(path: Path) -> Path:
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(path)], check=True)
    return path


def head_of(repo: Path, branch: str = "main") -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", f"refs/heads/{branch}"], capture_output=True, text=True
    )
    return done.stdout.strip()


def no_token_in(text: str) -> None:
    for token in (GITHUB_TOKEN, GITLAB_TOKEN, GITEA_TOKEN):
        assert token not in text


def rest_forge_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings naming the three REST forges that respx plays (GitHub Enterprise, GitLab, Gitea), each with a token."""
    forges = {"github_url": GHE_API, "gitlab_url": GITLAB, "gitea_url": GITEA}
    tokens = {"github_token": GITHUB_TOKEN, "gitlab_token": GITLAB_TOKEN, "gitea_token": GITEA_TOKEN}
    return make_settings(tmp_path, **forges, **tokens, **overrides)


def assert_pushed(response: httpx.Response, remote: Path, contents_url: str, raw_url_base: str) -> None:
    """repo:create answered the repository's pages on the forge, and the commit it pushed is main on the remote;
    no token shows in the answer."""
    output = response.json()["output"]
    assert output["repoContentsUrl"] == contents_url
    assert output["rawUrlBase"] == raw_url_base
    assert output["commitHash"] == head_of(remote)
    no_token_in(response.text)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(rest_forge_settings(tmp_path)), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as test_client:
        yield test_client


@pytest.fixture
def workspace(client: TestClient) -> str:
    response = client.post(
        "/v1/actions/cookiecutter:render/runs", json={"input": {"template": "demo", "values": {"name": "widgets"}}}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["output"]["workspaceId"])


def github_repo(owner: str, clone_url: str) -> dict[str, Any]:
    return {
        "id": 1296269,
        "name": "widgets",
        "full_name": f"{owner}/widgets",
        "owner": {"login": owner, "type": "Organization"},
        "private": True,
        "html_url": f"https://ghe.example.com/{owner}/widgets",
        "clone_url": clone_url,
        "default_branch": "main",
    }


# -- GitHub -------------------------------------------------------------------


def test_github_org_repository_is_created_pushed_and_protected(
    client: TestClient, workspace: str, tmp_path: Path
) -> None:
    """GitHub REST v3 shapes (respx): org lookup, POST /orgs/{org}/repos, topics, default branch, protection."""
    remote = init_bare(tmp_path / "remote.git")
    with respx.mock(base_url=GHE_API, assert_all_called=True) as api:
        api.get("/users/acme").respond(200, json={"login": "acme", "type": "Organization"})
        created = api.post("/orgs/acme/repos").respond(201, json=github_repo("acme", remote.as_uri()))
        topics = api.put("/repos/acme/widgets/topics").respond(200, json={"names": ["python", "api"]})
        patched = api.patch("/repos/acme/widgets").respond(200, json=github_repo("acme", remote.as_uri()))
        protected = api.put("/repos/acme/widgets/branches/main/protection").respond(200, json={})
        response = client.post(
            RUNS,
            json={
                "input": {
                    "workspaceId": workspace,
                    "repoUrl": "ghe.example.com?owner=acme&repo=widgets",
                    "description": "Widgets",
                    "topics": ["python", "api"],
                }
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["output"]["remoteUrl"] == remote.as_uri()
    assert_pushed(
        response,
        remote,
        "https://ghe.example.com/acme/widgets/tree/main",
        "https://ghe.example.com/acme/widgets/raw/main",
    )
    request = created.calls.last.request
    assert request.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert json.loads(request.content) == {
        "name": "widgets",
        "description": "Widgets",
        "private": True,
        "visibility": "private",
        "auto_init": False,
    }
    assert json.loads(topics.calls.last.request.content) == {"names": ["python", "api"]}
    assert json.loads(patched.calls.last.request.content) == {"default_branch": "main"}
    protection = json.loads(protected.calls.last.request.content)
    assert protection["required_pull_request_reviews"]["required_approving_review_count"] == 1


def test_github_user_repository_uses_post_user_repos(client: TestClient, workspace: str, tmp_path: Path) -> None:
    """GitHub REST v3 shapes (respx): a User owner is created with POST /user/repos, never /orgs/…."""
    remote = init_bare(tmp_path / "remote.git")
    with respx.mock(base_url=GHE_API, assert_all_called=False) as api:
        api.get("/users/jane").respond(200, json={"login": "jane", "type": "User"})
        api.get("/user").respond(200, json={"login": "jane"})
        for_user = api.post("/user/repos").respond(201, json=github_repo("jane", remote.as_uri()))
        for_org = api.post("/orgs/jane/repos").respond(500)
        api.patch("/repos/jane/widgets").respond(200, json={})
        api.put("/repos/jane/widgets/branches/main/protection").respond(
            403, json={"message": "Upgrade to GitHub Pro or make this repository public to enable this feature."}
        )
        response = client.post(
            RUNS,
            json={"input": {"workspaceId": workspace, "provider": "github", "owner": "jane", "name": "widgets"}},
        )
    assert response.status_code == 200, response.text
    assert for_user.called and not for_org.called
    assert "visibility" not in json.loads(for_user.calls.last.request.content)
    # Protection that the plan does not allow is a warning, not a failure: the repository is fine.
    assert any("Upgrade to GitHub Pro" in w for w in response.json()["output"]["warnings"])


def test_github_name_already_exists_is_our_409(client: TestClient, workspace: str) -> None:
    """GitHub REST v3 shapes (respx): 422 "name already exists on this account" becomes a 409 naming the repo."""
    with respx.mock(base_url=GHE_API, assert_all_called=False) as api:
        api.get("/users/acme").respond(200, json={"login": "acme", "type": "Organization"})
        api.post("/orgs/acme/repos").respond(
            422,
            json={
                "message": "Repository creation failed.",
                "errors": [
                    {
                        "resource": "Repository",
                        "code": "custom",
                        "field": "name",
                        "message": "name already exists on this account",
                    }
                ],
                "documentation_url": "https://docs.github.com/rest/repos/repos#create-an-organization-repository",
            },
        )
        deleted = api.delete("/repos/acme/widgets").respond(204)
        response = client.post(
            RUNS, json={"input": {"workspaceId": workspace, "provider": "github", "owner": "acme", "name": "widgets"}}
        )
    assert response.status_code == 409, response.text
    assert "acme/widgets" in response.json()["error"]["message"]
    assert not deleted.called  # not ours: never touched
    no_token_in(response.text)


def test_github_failed_push_deletes_the_repository(client: TestClient, workspace: str, tmp_path: Path) -> None:
    """GitHub REST v3 shapes (respx): the push (real git) fails, so DELETE /repos/{o}/{r} cleans up."""
    missing = (tmp_path / "no-such-remote.git").as_uri()
    with respx.mock(base_url=GHE_API, assert_all_called=False) as api:
        api.get("/users/acme").respond(200, json={"login": "acme", "type": "Organization"})
        api.post("/orgs/acme/repos").respond(201, json=github_repo("acme", missing))
        deleted = api.delete("/repos/acme/widgets").respond(204)
        response = client.post(
            RUNS, json={"input": {"workspaceId": workspace, "provider": "github", "owner": "acme", "name": "widgets"}}
        )
    assert response.status_code == 502, response.text
    assert deleted.called
    run = response.json()
    assert "git push" in run["error"]["message"] and "was deleted again" in run["error"]["message"]
    assert any(line["message"].startswith("deleted acme/widgets on GitHub") for line in run["log"])
    no_token_in(response.text)


def test_github_error_echoing_the_token_is_redacted(client: TestClient, workspace: str) -> None:
    """GitHub REST v3 shapes (respx): whatever a provider says back, the configured token never shows."""
    with respx.mock(base_url=GHE_API, assert_all_called=False) as api:
        api.get("/users/acme").respond(401, json={"message": f"Bad credentials: {GITHUB_TOKEN}"})
        response = client.post(
            RUNS, json={"input": {"workspaceId": workspace, "provider": "github", "owner": "acme", "name": "widgets"}}
        )
    assert response.status_code == 502
    assert "Bad credentials: ***" in response.json()["error"]["message"]
    no_token_in(response.text)


def test_github_push_sends_the_token_as_a_header_to_a_real_http_remote(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    """GitHub REST v3 shapes (respx) for the API; the push goes over HTTP to our embedded forge, which
    accepts it only with the right token: proof that the credentials travel in the header."""
    server = ServerProcess(server_env, tmp_path / "server.log").start()
    try:
        init_bare(tmp_path / "data" / "git" / "acme" / "widgets.git")
        clone_url = f"{server.url}/git/acme/widgets.git"
        for token, should_work in (("wrong-token-0123456789", False), (TOKEN, True)):
            settings = make_settings(tmp_path, github_url=GHE_API, github_token=token)
            forge = forge_for("github", settings, Redactor())
            source = tmp_path / f"source-{should_work}"
            source.mkdir()
            (source / "README.md").write_text("# widgets\n")
            with respx.mock(base_url=GHE_API) as api:
                api.get("/users/acme").respond(200, json={"login": "acme", "type": "Organization"})
                api.post("/orgs/acme/repos").respond(201, json=github_repo("acme", clone_url))
                repository = forge.create_repository(RepositorySpec(owner="acme", name="widgets"))
            assert repository.remote_url == clone_url
            if should_work:
                sha = forge.push(repository, source, "Initial commit", GitAuthor("Ada", "ada@example.com"))
                assert head_of(tmp_path / "data" / "git" / "acme" / "widgets.git") == sha
            else:
                with pytest.raises(PltfError) as failed:
                    forge.push(repository, source, "Initial commit", GitAuthor("Ada", "ada@example.com"))
                assert failed.value.status == 502
                assert token not in str(failed.value)
            # Nothing of the credentials is left in the repository's config.
            config = (source / ".git" / "config").read_text()
            assert token not in config and "extraheader" not in config.lower() and "@" not in config
    finally:
        server.stop()


# -- GitLab -------------------------------------------------------------------


def test_gitlab_project_in_a_nested_group(client: TestClient, workspace: str, tmp_path: Path) -> None:
    """GitLab REST v4 shapes (respx): namespace lookup, POST /projects with namespace_id, default branch,
    protection (409 "already exists" when GitLab protected it on the first push is fine)."""
    remote = init_bare(tmp_path / "remote.git")
    with respx.mock(base_url=f"{GITLAB}/api/v4", assert_all_called=True) as api:
        namespace = api.get(url__regex=r"/namespaces/platform%2Fservices$").respond(
            200,
            json={"id": 42, "name": "services", "path": "services", "kind": "group", "full_path": "platform/services"},
        )
        created = api.post("/projects").respond(
            201,
            json={
                "id": 7,
                "path_with_namespace": "platform/services/widgets",
                "web_url": f"{GITLAB}/platform/services/widgets",
                "http_url_to_repo": remote.as_uri(),
                "default_branch": "main",
            },
        )
        updated = api.put("/projects/7").respond(200, json={"id": 7, "default_branch": "main"})
        protected = api.post("/projects/7/protected_branches").respond(
            409, json={"message": "Protected branch 'main' already exists"}
        )
        response = client.post(
            RUNS,
            json={
                "input": {
                    "workspaceId": workspace,
                    "repoUrl": "gitlab.example.com?owner=platform/services&repo=widgets",
                    "topics": ["python"],
                }
            },
        )
    assert response.status_code == 200, response.text
    assert namespace.called
    body = json.loads(created.calls.last.request.content)
    assert body["namespace_id"] == 42 and body["path"] == "widgets" and body["visibility"] == "private"
    assert body["topics"] == ["python"]
    assert created.calls.last.request.headers["private-token"] == GITLAB_TOKEN
    assert json.loads(updated.calls.last.request.content) == {"default_branch": "main"}
    # Access levels as GitLab numbers them: 30 Developer, 40 Maintainer.
    assert json.loads(protected.calls.last.request.content) == {
        "name": "main",
        "push_access_level": 40,
        "merge_access_level": 30,
        "allow_force_push": False,
    }
    assert protected.calls.last.request.headers["private-token"] == GITLAB_TOKEN
    widgets = f"{GITLAB}/platform/services/widgets"
    assert_pushed(response, remote, f"{widgets}/-/tree/main", f"{widgets}/-/raw/main")


def test_gitlab_has_already_been_taken_is_our_409(client: TestClient, workspace: str) -> None:
    """GitLab REST v4 shapes (respx): 400 {"message": {"name": ["has already been taken"]}} becomes a 409."""
    with respx.mock(base_url=f"{GITLAB}/api/v4", assert_all_called=False) as api:
        api.get(url__regex=r"/namespaces/platform$").respond(200, json={"id": 3, "kind": "group"})
        api.post("/projects").respond(
            400, json={"message": {"name": ["has already been taken"], "path": ["has already been taken"]}}
        )
        response = client.post(
            RUNS,
            json={"input": {"workspaceId": workspace, "provider": "gitlab", "owner": "platform", "name": "widgets"}},
        )
    assert response.status_code == 409, response.text
    assert "platform/widgets" in response.json()["error"]["message"]
    no_token_in(response.text)


def test_gitlab_failed_push_deletes_the_project(client: TestClient, workspace: str, tmp_path: Path) -> None:
    """GitLab REST v4 shapes (respx): DELETE /projects/{id} (202) after a failed push."""
    with respx.mock(base_url=f"{GITLAB}/api/v4", assert_all_called=False) as api:
        api.get(url__regex=r"/namespaces/platform$").respond(200, json={"id": 3, "kind": "group"})
        api.post("/projects").respond(
            201,
            json={
                "id": 9,
                "web_url": f"{GITLAB}/platform/widgets",
                "http_url_to_repo": (tmp_path / "missing.git").as_uri(),
            },
        )
        deleted = api.delete("/projects/9").respond(202, json={"message": "202 Accepted"})
        response = client.post(
            RUNS,
            json={"input": {"workspaceId": workspace, "provider": "gitlab", "owner": "platform", "name": "widgets"}},
        )
    assert response.status_code == 502
    assert deleted.called


# -- Gitea --------------------------------------------------------------------


def test_gitea_org_repository(client: TestClient, workspace: str, tmp_path: Path) -> None:
    """Gitea REST v1 shapes (respx): org lookup, POST /orgs/{org}/repos, topics (204), default branch,
    branch protection (201)."""
    remote = init_bare(tmp_path / "remote.git")
    repo = {
        "id": 5,
        "name": "widgets",
        "full_name": "acme/widgets",
        "owner": {"login": "acme"},
        "html_url": f"{GITEA}/acme/widgets",
        "clone_url": remote.as_uri(),
    }
    with respx.mock(base_url=f"{GITEA}/api/v1", assert_all_called=True) as api:
        api.get("/orgs/acme").respond(200, json={"id": 2, "username": "acme"})
        created = api.post("/orgs/acme/repos").respond(201, json=repo)
        topics = api.put("/repos/acme/widgets/topics").respond(204)
        api.patch("/repos/acme/widgets").respond(200, json=repo)
        protection = api.post("/repos/acme/widgets/branch_protections").respond(201, json={"rule_name": "main"})
        response = client.post(
            RUNS,
            json={
                "input": {
                    "workspaceId": workspace,
                    "repoUrl": "gitea.example.com?owner=acme&repo=widgets",
                    "visibility": "public",
                    "topics": ["go"],
                }
            },
        )
    assert response.status_code == 200, response.text
    body = json.loads(created.calls.last.request.content)
    assert body == {
        "name": "widgets",
        "description": "",
        "private": False,
        "default_branch": "main",
        "auto_init": False,
    }
    assert created.calls.last.request.headers["authorization"] == f"token {GITEA_TOKEN}"
    assert json.loads(topics.calls.last.request.content) == {"topics": ["go"]}
    assert json.loads(protection.calls.last.request.content)["branch_name"] == "main"
    assert_pushed(response, remote, f"{GITEA}/acme/widgets/src/branch/main", f"{GITEA}/acme/widgets/raw/branch/main")


def test_gitea_conflict_is_our_409(client: TestClient, workspace: str) -> None:
    """Gitea REST v1 shapes (respx): 409 "The repository with the same name already exists." stays a 409."""
    with respx.mock(base_url=f"{GITEA}/api/v1", assert_all_called=False) as api:
        api.get("/orgs/acme").respond(200, json={"id": 2, "username": "acme"})
        api.post("/orgs/acme/repos").respond(409, json={"message": "The repository with the same name already exists."})
        response = client.post(
            RUNS, json={"input": {"workspaceId": workspace, "provider": "gitea", "owner": "acme", "name": "widgets"}}
        )
    assert response.status_code == 409, response.text
    assert "acme/widgets" in response.json()["error"]["message"]


# -- names, before any call ---------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "owner", "name", "field"),
    [
        ("github", "-acme", "widgets", "input.owner"),
        ("github", "ac--me", "widgets", "input.owner"),
        ("github", "a" * 40, "widgets", "input.owner"),
        ("github", "acme", "wid gets", "input.name"),
        ("github", "acme", "..", "input.name"),
        ("gitlab", "platform//services", "widgets", "input.owner"),
        ("gitlab", "platform", "widgets.atom", "input.name"),
        ("gitlab", "platform", "-widgets", "input.name"),
        ("gitea", "acme", "api", "input.name"),
        ("gitea", "acme", "widgets.wiki", "input.name"),
        ("gitea", "acme-", "widgets", "input.owner"),
    ],
)
def test_provider_naming_rules_answer_422_before_any_call(
    client: TestClient, workspace: str, provider: str, owner: str, name: str, field: str
) -> None:
    with respx.mock(assert_all_called=False) as api:
        response = client.post(
            RUNS, json={"input": {"workspaceId": workspace, "provider": provider, "owner": owner, "name": name}}
        )
        assert not api.calls
    assert response.status_code == 422, response.text
    assert field in [f["field"] for f in response.json()["error"]["fields"]]
    assert client.get("/v1/runs", params={"action": "repo:create"}).json()["runs"] == []


def test_configured_tokens_are_registered_with_the_redactor(tmp_path: Path) -> None:
    """The forge tokens are in the redactor that the logs, stored runs and errors share (config.py's
    secrets, registered when the parts are built)."""
    settings = make_settings(tmp_path, github_token=GITHUB_TOKEN, gitlab_token=GITLAB_TOKEN, gitea_token=GITEA_TOKEN)
    redactor = Redactor()
    Services.create(settings, redactor).close()
    assert redactor(f"{GITHUB_TOKEN} {GITLAB_TOKEN} {GITEA_TOKEN}") == "*** *** ***"


def test_unreachable_api_is_a_502_without_the_token(client: TestClient, workspace: str) -> None:
    with respx.mock(base_url=GHE_API, assert_all_called=False) as api:
        api.get("/users/acme").mock(side_effect=httpx.ConnectError("connection refused"))
        response = client.post(
            RUNS, json={"input": {"workspaceId": workspace, "provider": "github", "owner": "acme", "name": "widgets"}}
        )
    assert response.status_code == 502
    assert "could not be reached" in response.json()["error"]["message"]
    no_token_in(response.text)
