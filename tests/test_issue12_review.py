"""Holes an attacker with an ordinary team token still found after issue 12's fixes, each through the
HTTP API and real git against a real server: two teams' tokens and an admin's (see test_forge_permissions).
"""

from __future__ import annotations

from test_forge_permissions import TEAM_A, TEAM_B, create, run
from test_forge_permissions import server as permissions_server

from conftest import ServerProcess

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
