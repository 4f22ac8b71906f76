"""The embedded forge over the wire: stock `git` against a real server's /git/ routes."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import TOKEN, ServerProcess

AUTH_HEADER = "Authorization: Basic " + base64.b64encode(f"pltf:{TOKEN}".encode()).decode()


def git_env(authorization: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Tester",
        "GIT_AUTHOR_EMAIL": "tester@example.com",
        "GIT_COMMITTER_NAME": "Tester",
        "GIT_COMMITTER_EMAIL": "tester@example.com",
    }
    if authorization:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader", GIT_CONFIG_VALUE_0=authorization)
    return env


def git(*args: str, cwd: Path | None = None, authorization: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(authorization), capture_output=True, text=True, timeout=120, check=False
    )


def create_repository(client: httpx.Client, owner: str, name: str, **extra: Any) -> dict[str, Any]:
    rendered = client.post(
        "/v1/actions/cookiecutter:render/runs", json={"input": {"template": "demo", "values": {"name": name}}}
    )
    assert rendered.status_code == 200, rendered.text
    workspace = rendered.json()["output"]["workspaceId"]
    created = client.post(
        "/v1/actions/repo:create/runs",
        json={"input": {"workspaceId": workspace, "owner": owner, "name": name, **extra}},
    )
    assert created.status_code == 200, created.text
    return dict(created.json()["output"])


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(server_env, tmp_path / "server.log").start()
    yield process
    process.stop()


def test_clone_push_over_one_mib_and_clone_again(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        output = create_repository(client, "team", "big-push")
    remote = output["remoteUrl"]
    assert remote == f"{server.url}/git/team/big-push.git"

    started = time.perf_counter()
    cloned = git("clone", "--quiet", remote, str(tmp_path / "first"))
    clone_seconds = time.perf_counter() - started
    assert cloned.returncode == 0, cloned.stderr
    assert git("rev-parse", "HEAD", cwd=tmp_path / "first").stdout.strip() == output["commitHash"]

    # Random bytes do not compress: the pack is > 1 MiB, so git sends it chunked.
    payload = os.urandom(3 * 1024 * 1024)
    (tmp_path / "first" / "big.bin").write_bytes(payload)
    assert git("add", "big.bin", cwd=tmp_path / "first").returncode == 0
    assert git("commit", "--quiet", "-m", "three MiB", cwd=tmp_path / "first").returncode == 0
    started = time.perf_counter()
    pushed = git("push", "origin", "main", cwd=tmp_path / "first", authorization=AUTH_HEADER)
    push_seconds = time.perf_counter() - started
    assert pushed.returncode == 0, pushed.stderr
    head = git("rev-parse", "HEAD", cwd=tmp_path / "first").stdout.strip()

    again = git("clone", "--quiet", remote, str(tmp_path / "second"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "second" / "big.bin").read_bytes() == payload
    assert git("rev-parse", "HEAD", cwd=tmp_path / "second").stdout.strip() == head
    print(f"\nclone {clone_seconds * 1000:.0f} ms; 3 MiB push {push_seconds * 1000:.0f} ms")


def test_push_without_or_with_a_bad_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        output = create_repository(client, "team", "guarded")
    work = tmp_path / "work"
    assert git("clone", "--quiet", output["remoteUrl"], str(work)).returncode == 0
    (work / "change.txt").write_text("change\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "change", cwd=work)

    anonymous = git("push", "origin", "main", cwd=work)
    assert anonymous.returncode != 0
    bad = "Authorization: Basic " + base64.b64encode(b"pltf:not-the-token").decode()
    refused = git("push", "origin", "main", cwd=work, authorization=bad)
    assert refused.returncode != 0
    remote_head = git("ls-remote", output["remoteUrl"], "refs/heads/main").stdout.split()[0]
    assert remote_head == output["commitHash"]  # nothing was pushed

    # The refusal is a challenge git (and a browser) can answer with basic credentials.
    probe = httpx.get(f"{output['remoteUrl']}/info/refs", params={"service": "git-receive-pack"})
    assert probe.status_code == 401
    assert probe.headers["www-authenticate"].startswith("Basic")


def test_raw_files_and_browse_pages(server: ServerProcess) -> None:
    with server.client() as client:
        output = create_repository(client, "team", "browsable", description="<script>alert(1)</script> Users")
    raw = httpx.get(f"{output['rawUrlBase']}/README.md")
    assert raw.status_code == 200
    assert raw.text.startswith("# browsable")
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["x-content-type-options"] == "nosniff"

    listing = httpx.get(f"{server.url}/git/")
    assert listing.status_code == 200
    assert "team/browsable" in listing.text
    assert "<script>alert(1)</script>" not in listing.text  # autoescaped
    assert "&lt;script&gt;" in listing.text

    contents = httpx.get(output["repoContentsUrl"])
    assert contents.status_code == 200
    assert (
        "README.md" in contents.text
        and "Initial commit" in contents.text
        and output["commitHash"][:10] in contents.text
    )
    assert httpx.get(f"{output['webUrl']}").status_code == 200
    file_page = httpx.get(f"{output['repoContentsUrl']}/README.md")
    assert file_page.status_code == 200 and "# browsable" in file_page.text
    # A browser opening the clone URL lands on the repository's page.
    assert httpx.get(output["remoteUrl"], follow_redirects=True).url == output["webUrl"]


HOSTILE_PATHS = [
    "/git/team/browsable/raw/main/../../../etc/passwd",
    "/git/team/browsable/raw/main/%2e%2e/%2e%2e/etc/passwd",
    "/git/..%2F..%2Fetc/passwd/raw/main/x",
    "/git/team/..%2Fbrowsable/raw/main/README.md",
    "/git/team/browsable/raw/..%2Fmain/README.md",
    "/git/team/browsable/tree/main/..%2F..",
    "/git/team/.git/info/refs?service=git-upload-pack",
    "/git/team/browsable.git/HEAD",
    "/git/team/browsable.git/objects/info/packs",
    "/git/team/browsable.git/config",
]


def test_path_traversal_and_dumb_paths_are_refused(server: ServerProcess) -> None:
    with server.client() as client:
        create_repository(client, "team", "browsable")
    for path in HOSTILE_PATHS:
        response = httpx.get(server.url + path)
        assert response.status_code in (403, 404, 405), (path, response.text)
        assert "root:" not in response.text and "[core]" not in response.text, path


def test_private_repositories_need_a_token_to_read(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        output = create_repository(client, "team", "secret-sauce", visibility="private")
    assert httpx.get(f"{output['rawUrlBase']}/README.md").status_code == 401
    assert "secret-sauce" not in httpx.get(f"{server.url}/git/").text
    assert git("clone", "--quiet", output["remoteUrl"], str(tmp_path / "anon")).returncode != 0
    cloned = git("clone", "--quiet", output["remoteUrl"], str(tmp_path / "authed"), authorization=AUTH_HEADER)
    assert cloned.returncode == 0, cloned.stderr
    bearer = httpx.get(f"{output['rawUrlBase']}/README.md", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200


def test_reads_can_be_closed(server_env: dict[str, str], tmp_path: Path) -> None:
    server = ServerProcess({**server_env, "PLTF_GIT_PUBLIC_READS": "false"}, tmp_path / "closed.log").start()
    try:
        with server.client() as client:
            output = create_repository(client, "team", "closed")
        assert httpx.get(f"{server.url}/git/").status_code == 401
        assert httpx.get(output["repoContentsUrl"]).status_code == 401
        assert httpx.get(f"{output['rawUrlBase']}/README.md").status_code == 401
        assert git("clone", "--quiet", output["remoteUrl"], str(tmp_path / "anon")).returncode != 0
        cloned = git("clone", "--quiet", output["remoteUrl"], str(tmp_path / "authed"), authorization=AUTH_HEADER)
        assert cloned.returncode == 0, cloned.stderr
        basic = httpx.get(f"{output['rawUrlBase']}/README.md", auth=("anyone", TOKEN))
        assert basic.status_code == 200
    finally:
        server.stop()


def test_a_token_not_allowed_repo_create_may_not_push(server_env: dict[str, str], tmp_path: Path) -> None:
    from actions_server.auth import hash_token

    reader_token = "reader-token-0123456789"
    token_file = tmp_path / "tokens.yaml"
    token_file.write_text(
        "tokens:\n"
        f"  - name: admin\n    sha256: {hash_token(TOKEN)}\n"
        f"  - name: reader\n    sha256: {hash_token(reader_token)}\n    actions: ['cookiecutter:*']\n"
    )
    env = {key: value for key, value in server_env.items() if key != "PLTF_API_TOKEN"}
    server = ServerProcess({**env, "PLTF_TOKEN_FILE": str(token_file)}, tmp_path / "tokens.log").start()
    try:
        with server.client() as client:
            output = create_repository(client, "team", "limited")
        refs = f"{output['remoteUrl']}/info/refs"
        as_reader = httpx.get(refs, params={"service": "git-receive-pack"}, auth=("x", reader_token))
        assert as_reader.status_code == 403
        as_admin = httpx.get(refs, params={"service": "git-receive-pack"}, auth=("x", TOKEN))
        assert as_admin.status_code == 200
    finally:
        server.stop()
