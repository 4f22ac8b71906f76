"""repo:create on the embedded forge: outputs, 409, 422 before any side effect, cleanup, races, idempotency."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from actions_server.app import create_app
from actions_server.config import Settings
from actions_server.errors import PltfError
from actions_server.forges import GitAuthor, RepositorySpec
from actions_server.forges.embedded import EmbeddedForge
from actions_server.redact import Redactor
from conftest import TOKEN, ServerProcess, make_settings

RUNS = "/v1/actions/repo:create/runs"


def render(client: TestClient | httpx.Client, name: str = "users-api") -> str:
    response = client.post(
        "/v1/actions/cookiecutter:render/runs", json={"input": {"template": "demo", "values": {"name": name}}}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["output"]["workspaceId"])


def bare_repositories(git_dir: Path) -> list[str]:
    return sorted(str(path.relative_to(git_dir)) for path in git_dir.glob("*/*.git"))


def remote_head(repo: Path, branch: str = "main") -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", f"refs/heads/{branch}"], capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.fixture
def git_dir(settings: Settings) -> Path:
    return settings.storage.data_dir.resolve() / "git"


def test_creates_a_repository_with_the_first_commit(client: TestClient, git_dir: Path) -> None:
    workspace = render(client)
    response = client.post(
        RUNS,
        json={
            "input": {
                "workspaceId": workspace,
                "owner": "platform-team",
                "name": "users-api",
                "description": "Users API",
                "topics": ["python", "golden-path"],
                "defaultBranch": "trunk",
                "commitMessage": "Scaffold users-api",
                "author": {"name": "Ada", "email": "ada@example.com"},
            }
        },
    )
    assert response.status_code == 200, response.text
    run = response.json()
    output = run["output"]
    assert output["remoteUrl"].endswith("/git/platform-team/users-api.git")
    assert output["repoContentsUrl"].endswith("/git/platform-team/users-api/tree/trunk")
    assert output["rawUrlBase"].endswith("/git/platform-team/users-api/raw/trunk")
    assert output["provider"] == "embedded" and output["visibility"] == "public"
    repo = git_dir / "platform-team" / "users-api.git"
    assert remote_head(repo, "trunk") == output["commitHash"]
    shown = subprocess.run(
        ["git", "--git-dir", str(repo), "log", "-1", "--format=%an <%ae>|%s", "trunk"], capture_output=True, text=True
    )
    assert shown.stdout.strip() == "Ada <ada@example.com>|Scaffold users-api"
    files = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", "trunk"], capture_output=True, text=True
    ).stdout.split()
    assert "README.md" in files
    modes = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "trunk", "run.sh"], capture_output=True, text=True
    ).stdout
    assert modes.startswith("100755")  # the executable bit survives
    messages = [line["message"] for line in run["log"]]
    assert any(m.startswith("creating platform-team/users-api") for m in messages)
    assert any(m.startswith("pushed commit") for m in messages)
    # The raw URL serves the file, through the app's own /git/ routes.
    raw = client.get(output["rawUrlBase"].removeprefix(str(client.base_url).rstrip("/")) + "/README.md")
    assert raw.status_code == 200 and raw.text.startswith("# users-api")


def test_existing_repository_is_a_409_naming_it_and_left_alone(client: TestClient, git_dir: Path) -> None:
    workspace = render(client)
    body = {"input": {"workspaceId": workspace, "owner": "team", "name": "users-api"}}
    first = client.post(RUNS, json=body)
    assert first.status_code == 200
    head = remote_head(git_dir / "team" / "users-api.git")

    again = client.post(RUNS, json={"input": {**body["input"], "commitMessage": "overwrite?"}})
    assert again.status_code == 409, again.text
    assert "team/users-api" in again.json()["error"]["message"]
    assert remote_head(git_dir / "team" / "users-api.git") == head


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"owner": "team", "name": "../escape"}, "input.name"),
        ({"owner": "-team", "name": "ok"}, "input.owner"),
        ({"owner": "team", "name": "ends.git"}, "input.name"),
        ({"owner": "team", "name": ".hidden"}, "input.name"),
        ({"owner": "te am", "name": "ok"}, "input.owner"),
        ({"owner": "team", "name": "x" * 101}, "input.name"),
        ({"repoUrl": "127.0.0.1?owner=team&repo=bad/name"}, "input.repoUrl"),
        ({"repoUrl": "127.0.0.1?owner=team"}, "input.repoUrl"),
        ({"repoUrl": "unknown.example.com?owner=team&repo=ok"}, "input.repoUrl"),
        ({"owner": "team", "name": "ok", "defaultBranch": "bad..branch"}, "input.defaultBranch"),
        ({"owner": "team", "name": "ok", "topics": ["Not A Topic"]}, "input.topics.0"),
        ({"owner": "team", "name": "ok", "provider": "github"}, "input.provider"),
        ({"owner": "team", "name": "ok", "workspaceId": "00000000-0000-0000-0000-000000000000"}, "input.workspaceId"),
    ],
)
def test_bad_input_is_a_422_before_any_run_or_repository(
    client: TestClient, git_dir: Path, target: dict[str, Any], field: str
) -> None:
    workspace = render(client)
    response = client.post(RUNS, json={"input": {"workspaceId": workspace, **target}})
    assert response.status_code == 422, response.text
    fields = [f["field"] for f in response.json()["error"].get("fields", [])]
    assert field in fields, response.json()
    assert client.get("/v1/runs", params={"action": "repo:create"}).json()["runs"] == []
    assert bare_repositories(git_dir) == []


def test_repo_url_picker_form(client: TestClient, git_dir: Path) -> None:
    workspace = render(client)
    response = client.post(
        RUNS, json={"input": {"workspaceId": workspace, "repoUrl": "127.0.0.1?owner=team&repo=from-picker"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"]["owner"] == "team"
    assert bare_repositories(git_dir) == ["team/from-picker.git"]


def test_dry_run_reports_and_creates_nothing(client: TestClient, git_dir: Path) -> None:
    workspace = render(client)
    response = client.post(
        RUNS, json={"input": {"workspaceId": workspace, "owner": "team", "name": "planned"}, "dryRun": True}
    )
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["dryRun"] is True and output["files"] >= 1 and "commitHash" not in output
    assert output["remoteUrl"].endswith("/git/team/planned.git")
    assert bare_repositories(git_dir) == []


def test_a_failed_push_deletes_the_repository_and_says_so(
    client: TestClient, git_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_before_push: list[list[str]] = []

    def failing_push(self: EmbeddedForge, repository: Any, source_dir: Path, message: str, author: GitAuthor) -> str:
        seen_before_push.append(bare_repositories(git_dir))
        raise PltfError("git push failed: remote unpack failed", 502, "git_failed")

    monkeypatch.setattr(EmbeddedForge, "push", failing_push)
    workspace = render(client)
    response = client.post(RUNS, json={"input": {"workspaceId": workspace, "owner": "team", "name": "doomed"}})
    assert response.status_code == 502, response.text
    run = response.json()
    assert seen_before_push == [["team/doomed.git"]]  # it was created, then
    assert bare_repositories(git_dir) == []  # deleted
    assert "was deleted again" in run["error"]["message"]
    messages = [line["message"] for line in run["log"]]
    assert any("deleting the repository" in m for m in messages)
    assert any(m.startswith("deleted team/doomed") for m in messages)

    monkeypatch.undo()
    retried = client.post(RUNS, json={"input": {"workspaceId": workspace, "owner": "team", "name": "doomed"}})
    assert retried.status_code == 200, retried.text


def test_racing_creations_of_one_repository_one_wins(tmp_path: Path) -> None:
    """Two different requests for one repository at once: exactly one creates it, the rest get 409."""
    forge = EmbeddedForge(Settings(data_dir=tmp_path, api_token=TOKEN), Redactor())
    spec = RepositorySpec(owner="team", name="contested")
    start = threading.Barrier(12)

    def attempt(_: int) -> str:
        start.wait()
        try:
            forge.create_repository(spec)
        except PltfError as exc:
            return str(exc.status)
        return "created"

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(attempt, range(12)))
    assert results.count("created") == 1
    assert results.count("409") == 11
    assert bare_repositories(tmp_path / "git") == ["team/contested.git"]
    assert list((tmp_path / "git" / ".staging").iterdir()) == []  # the losers cleaned up after themselves


# -- real servers -------------------------------------------------------------


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(server_env, tmp_path / "server.log").start()
    yield process
    process.stop()


def send_concurrently(urls: list[str], body: dict[str, Any], key: str | None) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    start = threading.Barrier(len(urls))

    def send(url: str) -> httpx.Response:
        start.wait()
        return httpx.post(f"{url}{RUNS}", json=body, headers=headers, timeout=120)

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(send, urls))


def test_twenty_identical_requests_with_one_key_make_one_repository(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        workspace = render(client)
    body = {"input": {"workspaceId": workspace, "owner": "team", "name": "once"}}
    responses = send_concurrently([server.url] * 20, body, "create-once")
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses if r.status_code != 200]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.json()["output"]["commitHash"] for r in responses}) == 1
    assert bare_repositories(tmp_path / "data" / "git") == ["team/once.git"]
    with server.client() as client:
        assert len(client.get("/v1/runs", params={"action": "repo:create"}).json()["runs"]) == 1


def test_concurrent_different_requests_for_one_repository_one_wins(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        workspace = render(client)
    body = {"input": {"workspaceId": workspace, "owner": "team", "name": "contested"}}
    responses = send_concurrently([server.url] * 8, body, key=None)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 7, [r.text for r in responses]
    assert bare_repositories(tmp_path / "data" / "git") == ["team/contested.git"]


@pytest.mark.postgres
def test_twenty_requests_across_two_replicas_on_postgres_make_one_repository(
    server_env: dict[str, str], postgres_url: str, tmp_path: Path
) -> None:
    """Two server processes, one PostgreSQL and one shared data dir (so one git dir)."""
    env = {**server_env, "PLTF_DATABASE_URL": postgres_url}
    first = ServerProcess(env, tmp_path / "first.log").start()
    second = ServerProcess(env, tmp_path / "second.log").start()
    try:
        with first.client() as client:
            workspace = render(client)
        body = {"input": {"workspaceId": workspace, "owner": "team", "name": "replicated"}}
        responses = send_concurrently([first.url, second.url] * 10, body, "replicated-once")
        assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses if r.status_code != 200]
        assert len({r.json()["id"] for r in responses}) == 1
        assert bare_repositories(tmp_path / "data" / "git") == ["team/replicated.git"]
        with second.client() as client:
            assert len(client.get("/v1/runs", params={"action": "repo:create"}).json()["runs"]) == 1
    finally:
        first.stop()
        second.stop()


def test_the_first_commit_holds_what_git_add_would(tmp_path: Path) -> None:
    """.gitignore is honoured, a link stays a link, odd file names survive (the commit is written by fast-import)."""
    template = tmp_path / "templates" / "odd"
    project = template / "{{cookiecutter.name}}"
    (template / "hooks").mkdir(parents=True)
    project.mkdir()
    (template / "cookiecutter.json").write_text('{"name": "odd"}')
    (project / ".gitignore").write_text("*.log\n")
    (project / "README.md").write_text("# odd\n")
    (project / "debug.log").write_text("ignored\n")
    (project / '"quoted" name.txt').write_text("kept\n")
    (template / "hooks" / "post_gen_project.py").write_text('import os\nos.symlink("README.md", "latest")\n')
    settings = make_settings(tmp_path, templates_dir=tmp_path / "templates")
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        rendered = client.post(
            "/v1/actions/cookiecutter:render/runs", json={"input": {"template": "odd", "values": {}}}
        )
        assert rendered.status_code == 200, rendered.text
        workspace = rendered.json()["output"]["workspaceId"]
        created = client.post(RUNS, json={"input": {"workspaceId": workspace, "owner": "team", "name": "odd"}})
        assert created.status_code == 200, created.text
    repo = settings.storage.data_dir.resolve() / "git" / "team" / "odd.git"
    listing = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "-z", "main"], capture_output=True, text=True, check=True
    ).stdout
    modes = {line.split("\t", 1)[1]: line.split()[0] for line in listing.split("\0") if line}
    expected = {".gitignore": "100644", "README.md": "100644", '"quoted" name.txt': "100644", "latest": "120000"}
    # Every render also records what made it, for template updates.
    assert modes == {**expected, ".cruft.json": "100644"}
    link = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "-p", "main:latest"], capture_output=True, text=True, check=True
    )
    assert link.stdout == "README.md"
    assert remote_head(repo) == created.json()["output"]["commitHash"]
    fsck = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
