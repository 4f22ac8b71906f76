"""Holes an attacker with an ordinary team token still found after issue 12's fixes, each through the
HTTP API and real git against a real server: two teams' tokens and an admin's (see test_forge_permissions).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_forge_embedded import git
from test_forge_permissions import TEAM_A, TEAM_B, basic, clone, create, run
from test_forge_permissions import server as permissions_server

from conftest import ServerProcess, need

server = permissions_server


def test_a_preview_of_a_private_repository_cannot_be_had_through_another_spelling_of_its_url(
    server: ServerProcess,
) -> None:
    output = create(server, TEAM_A, "team-a", "ledger", visibility="private")
    port = server.url.rsplit(":", 1)[1]
    # Each is the same repository once normalised, and the preview would check it out from disk.
    spellings = [
        output["remoteUrl"].replace("http://", "HTTP://"),
        f"{server.url}/git/team-b/../team-a/ledger.git",
        f"{server.url}/git/team-a/%6Cedger.git",
        f"http://127.0.0.1.:{port}/git/team-a/ledger",
    ]
    for url in spellings:
        for dry_run in (True, False):
            body = {"input": {"repoUrl": url, "service": "ledger"}, "dryRun": dry_run}
            refused = run(server, TEAM_B, "preview:create", body).json()
            assert refused["status"] == "failed", (url, refused)
            assert refused["error"]["status"] == 404, (url, refused)
            assert "checked out" not in str(refused.get("log")), url


def push_link(server: ServerProcess, token: str, name: str, link: str, target: Path, work: Path) -> str:
    """A repository of `token`'s team whose `link` is a symbolic link to `target` on the server's disk."""
    owner = "team-b" if token == TEAM_B else "team-a"
    remote = create(server, token, owner, name)["remoteUrl"]
    clone(remote, work, token)
    (work / link).symlink_to(target)
    assert git("add", link, cwd=work).returncode == 0
    assert git("commit", "--quiet", "-m", f"{link} is a link", cwd=work).returncode == 0
    assert git("push", "origin", "main", cwd=work, authorization=basic(token)).returncode == 0
    return str(remote)


# What the server would read as the file: each target is valid in the linked file's format.
LINKED_SECRETS = {
    "requirements.txt": "dependency-named-host-secret-4242\n",
    "pyproject.toml": '[project]\ndependencies = ["dependency-named-host-secret-4242"]\n',
}


@pytest.mark.parametrize("link", sorted(LINKED_SECRETS))
def test_a_preview_checkout_cannot_make_the_server_read_a_file_through_a_link(
    server: ServerProcess, tmp_path: Path, link: str
) -> None:
    need(shutil.which("bwrap") is not None or shutil.which("unshare") is not None, "a sandbox (bwrap or unshare)")
    secret = tmp_path / "host-secret"
    secret.write_text(LINKED_SECRETS[link])
    secret.chmod(0o600)  # the server's alone: only the server itself can read it
    remote = push_link(server, TEAM_B, "snoop", link, secret, tmp_path / "work")

    answer = run(server, TEAM_B, "preview:create", {"input": {"repoUrl": remote, "service": "snoop"}})
    assert "host-secret-4242" not in answer.text
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"]["status"] == 422
    assert link in answer.json()["error"]["message"]
