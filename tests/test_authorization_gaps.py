"""What the adversarial review of issue 12 left open, attacked through the HTTP API, real git and raw sockets.

The server of test_forge_permissions: an admin token and two teams' tokens that may run every action.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import yaml
from fastapi.testclient import TestClient
from test_catalog_backstage import BACKSTAGE, BACKSTAGE_TOKEN, LOCATION
from test_forge_embedded import git
from test_forge_permissions import (
    CATALOG_INFO,
    TEAM_A,
    TEAM_B,
    api,
    basic,
    clone,
    commit,
    create,
    run,
    server,
    start_with_team_tokens,
)
from test_hostile_requests import RENDER, connect, trickle_until_answered

from actions_server.app import create_app
from actions_server.auth import hash_token
from actions_server.config import PROJECT_ROOT
from conftest import TOKEN, ServerProcess, make_settings

__all__ = ["server"]  # the fixture, shared


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    return dict(error)


def catalog_file_of_team_a(server: ServerProcess, tmp_path: Path, owner: str = "group:default/team-a") -> str:
    """team-a/ledger with a catalog-info.yaml saying who owns the ledger Component: the URL of that file."""
    output = create(server, TEAM_A, "team-a", "ledger")
    work = clone(output["remoteUrl"], tmp_path / "ledger", TEAM_A)
    commit(
        work, "catalog-info.yaml", yaml.safe_dump({**CATALOG_INFO, "spec": {**CATALOG_INFO["spec"], "owner": owner}})
    )
    assert git("push", "origin", "main", cwd=work, authorization=basic(TEAM_A)).returncode == 0
    return f"{output['rawUrlBase']}/catalog-info.yaml"


# -- 1. catalog locations have an owner ---------------------------------------------------


def test_only_the_registering_team_or_an_admin_deletes_or_refreshes_a_location(
    server: ServerProcess, tmp_path: Path
) -> None:
    url = catalog_file_of_team_a(server, tmp_path)
    entity_path = "/api/catalog/entities/by-name/component/default/ledger"
    refresh = {"entityRef": "component:default/ledger"}
    with api(server, TEAM_A) as team_a, api(server, TEAM_B) as team_b, api(server, TOKEN) as admin:
        registered = team_a.post("/api/catalog/locations", json={"target": url})
        assert registered.status_code == 201, registered.text
        location = registered.json()["location"]["id"]

        # Another team: the location answers as a missing one would, and stays with its entity.
        refused = error_of(team_b.delete(f"/api/catalog/locations/{location}"), 404)
        missing = error_of(team_b.delete("/api/catalog/locations/00000000-0000-0000-0000-000000000000"), 404)
        assert refused["code"] == missing["code"] == "not_found"
        assert error_of(team_b.post("/api/catalog/refresh", json=refresh), 403)["code"] == "forbidden"
        again = error_of(team_b.post("/api/catalog/locations", json={"target": url}), 409)
        assert again["code"] == "location_exists" and "group:" not in again["message"]
        assert team_b.get(entity_path).status_code == 200

        assert team_a.post("/api/catalog/refresh", json=refresh).status_code == 200
        assert team_a.delete(f"/api/catalog/locations/{location}").status_code == 204
        assert team_a.get(entity_path).status_code == 404  # its entities went with it

        # An admin deletes any team's; one it registered itself (no team) is the admins' alone.
        location = team_a.post("/api/catalog/locations", json={"target": url}).json()["location"]["id"]
        assert admin.delete(f"/api/catalog/locations/{location}").status_code == 204
        location = admin.post("/api/catalog/locations", json={"target": url}).json()["location"]["id"]
        error_of(team_a.delete(f"/api/catalog/locations/{location}"), 404)
        error_of(team_a.post("/api/catalog/refresh", json=refresh), 403)
        assert admin.post("/api/catalog/refresh", json=refresh).status_code == 200
        assert admin.delete(f"/api/catalog/locations/{location}").status_code == 204


def test_locations_registered_before_owners_were_kept_are_the_admins(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    # A database as the previous version left it: catalog_locations without the owner columns.
    data = Path(server_env["PLTF_DATA_DIR"])
    data.mkdir(parents=True)
    with sqlite3.connect(data / "pltf.db") as db:
        db.execute(
            "CREATE TABLE catalog_locations (id VARCHAR(36) PRIMARY KEY, type VARCHAR(20) NOT NULL, "
            "target VARCHAR(2000) NOT NULL UNIQUE, created_at FLOAT NOT NULL, refreshed_at FLOAT NOT NULL)"
        )
        db.execute("INSERT INTO catalog_locations VALUES ('old', 'url', 'http://example.com/c.yaml', 1, 1)")
    process = start_with_team_tokens(server_env, tmp_path)
    try:
        with api(process, TEAM_A) as team_a, api(process, TOKEN) as admin:
            error_of(team_a.delete("/api/catalog/locations/old"), 404)
            assert admin.delete("/api/catalog/locations/old").status_code == 204
    finally:
        process.stop()


def test_through_pltf_only_admins_delete_backstage_locations(tmp_path: Path) -> None:
    # pltf registers into Backstage with its own token: Backstage cannot tell which team a location is for.
    tokens = tmp_path / "tokens.yaml"
    entry = {"name": "team-a", "sha256": hash_token(TEAM_A), "actions": ["*"], "team": "group:default/team-a"}
    tokens.write_text(yaml.safe_dump({"tokens": [entry]}))
    settings = make_settings(
        tmp_path, backstage_url=BACKSTAGE, backstage_token=BACKSTAGE_TOKEN, token_file=tokens, log_level="error"
    )
    path = f"/api/catalog/locations/{LOCATION['id']}"
    with (
        respx.mock(base_url=f"{BACKSTAGE}/api/catalog", assert_all_called=False) as backstage,
        TestClient(create_app(settings)) as client,
    ):
        deleted = backstage.delete(path.removeprefix("/api/catalog")).mock(return_value=httpx.Response(204))
        refused = error_of(client.delete(path, headers={"Authorization": f"Bearer {TEAM_A}"}), 403)
        assert refused["code"] == "forbidden" and not deleted.called
        assert client.delete(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 204
        assert deleted.call_count == 1


# -- 2. events only for one's own services ---------------------------------------------------


def deployment(service: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "deployment",
        "id": f"d-{time.monotonic_ns()}",
        "service": service,
        "timestamp": "2026-01-01T00:00:00Z",
        "environment": "production",
        "status": "success",
        **extra,
    }


def test_a_team_records_events_only_for_its_own_services(server: ServerProcess) -> None:
    create(server, TEAM_A, "team-a", "ledger")  # team-a's by its embedded repository
    with api(server, TEAM_A) as team_a, api(server, TEAM_B) as team_b, api(server, TOKEN) as admin:
        delivery = {"X-Delivery-Id": "first-ledger-deploy"}
        refused = error_of(team_b.post("/v1/events", json=deployment("ledger"), headers=delivery), 403)
        assert refused["code"] == "forbidden" and refused["fields"][0]["field"] == "service"
        batch = {"events": [deployment("unclaimed"), deployment("ledger")]}
        error_of(team_b.post("/v1/events", json=batch), 403)
        # Nothing of the refused ones was stored: the same delivery id is new, the batch's service unknown.
        assert team_a.post("/v1/events", json=deployment("ledger"), headers=delivery).status_code == 202

        # A service nobody owns yet becomes the recording team's.
        assert team_b.post("/v1/events", json=deployment("checkout")).status_code == 202
        error_of(team_a.post("/v1/events", json=deployment("checkout")), 403)
        named = error_of(team_a.post("/v1/events", json=deployment("payments", team="team-b")), 403)
        assert named["fields"][0]["field"] == "team"

        # Admins record for anyone.
        assert admin.post("/v1/events", json=deployment("checkout")).status_code == 202
        assert admin.post("/v1/events", json=deployment("ledger")).status_code == 202


def test_webhooks_taking_any_api_token_take_a_teams_for_its_own_services_only(server: ServerProcess) -> None:
    # Without PLTF_ARGOCD_WEBHOOK_TOKEN / PLTF_ALERTMANAGER_WEBHOOK_TOKEN, those webhooks take API tokens.
    create(server, TEAM_A, "team-a", "ledger")
    sync = {"app": "ledger", "phase": "Succeeded", "finishedAt": "2026-01-01T00:00:00Z"}
    alert = {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "fingerprint": "f1",
                "labels": {"alertname": "Down", "service": "ledger", "severity": "critical"},
                "startsAt": "2026-01-01T00:00:00Z",
            }
        ],
    }
    with api(server, TEAM_A) as team_a, api(server, TEAM_B) as team_b:
        error_of(team_b.post("/webhooks/argocd", json=sync), 403)
        error_of(team_b.post("/webhooks/alertmanager", json=alert), 403)
        assert team_a.post("/webhooks/argocd", json=sync).status_code == 202
        assert team_a.post("/webhooks/alertmanager", json=alert).status_code == 202


def test_the_catalog_owner_decides_over_the_repository(server: ServerProcess, tmp_path: Path) -> None:
    # The ledger is handed to team-b in the catalog; its repository is still team-a's.
    url = catalog_file_of_team_a(server, tmp_path, owner="group:default/team-b")
    with api(server, TEAM_A) as team_a, api(server, TEAM_B) as team_b:
        error_of(team_b.post("/v1/events", json=deployment("ledger")), 403)
        assert team_a.post("/api/catalog/locations", json={"target": url}).status_code == 201
        assert team_b.post("/v1/events", json=deployment("ledger")).status_code == 202
        error_of(team_a.post("/v1/events", json=deployment("ledger")), 403)


# -- 3. owner paths on the embedded forge --------------------------------------------------


def test_a_team_creates_repositories_under_its_own_owner_path_only(server: ServerProcess) -> None:
    rendered = run(server, TEAM_B, "cookiecutter:render", {"input": {"template": "demo", "values": {"name": "x"}}})
    workspace = rendered.json()["output"]["workspaceId"]
    for spelling in ({"owner": "team-a", "name": "x"}, {"repoUrl": "127.0.0.1?owner=team-a&repo=x"}):
        refused = run(server, TEAM_B, "repo:create", {"input": {"workspaceId": workspace, **spelling}}).json()
        assert refused["status"] == "failed" and refused["error"]["status"] == 403, refused
        field = "input.owner" if "owner" in spelling else "input.repoUrl"
        assert refused["error"]["fields"][0]["field"] == field
    assert httpx.get(f"{server.url}/git/team-a/x", auth=("x", TOKEN)).status_code == 404

    assert create(server, TEAM_B, "team-b", "x")["remoteUrl"].endswith("/git/team-b/x.git")
    assert create(server, TOKEN, "team-a", "x", team="group:default/team-a")["team"] == "group:default/team-a"


def test_service_create_by_a_team_publishes_under_its_own_owner_path(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    process = start_with_team_tokens(
        {**server_env, "PLTF_TEMPLATES_DIR": str(PROJECT_ROOT / "cookiecutters")}, tmp_path
    )
    try:
        body = {"input": {"name": "users-api", "owner": "group:default/team-a", "preview": False}}
        created = run(process, TEAM_A, "service:create", body).json()
        assert created["status"] == "succeeded", created["error"]
        assert "/git/team-a/users-api" in created["output"]["remoteUrl"]
        refused = run(process, TEAM_B, "service:create", {"input": {**body["input"], "name": "orders-api"}}).json()
        assert refused["status"] == "failed" and refused["error"]["status"] == 403, refused
        assert httpx.get(f"{process.url}/git/team-a/orders-api", auth=("x", TOKEN)).status_code == 404
    finally:
        process.stop()


# -- 4. a body trickled in is cut off ---------------------------------------------------------


@pytest.fixture
def strict_server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[ServerProcess]:
    # A whole body may take 1 s + 2048 B / 1024 B/s = 3 s; a gap may last 1 s.
    env = {
        **server_env,
        "PLTF_BODY_TIMEOUT_SECONDS": "1",
        "PLTF_MAX_BODY_BYTES": "2048",
        "PLTF_MIN_BODY_BYTES_PER_SECOND": "1024",
    }
    process = ServerProcess(env, tmp_path / "server.log").start()
    yield process
    process.stop()


def test_a_body_trickled_a_byte_at_a_time_gets_408_and_is_disconnected(strict_server: ServerProcess) -> None:
    head = (
        f"POST {RENDER} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
    )
    started = time.monotonic()
    with connect(strict_server) as sock:
        sock.sendall(head.encode())
        # A byte every 0.2 s: each gap is well inside the 1 s body timeout.
        answer = trickle_until_answered(sock, b" " * 2000, within=15)
    assert time.monotonic() - started < 15
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 408"), answer
    error = json.loads(body)["error"]
    assert error["code"] == "body_timeout" and "within 3 s" in error["message"]
    with strict_server.client() as http:
        assert http.get("/v1/runs").json()["runs"] == []
        # A body sent at once is still served.
        prompt = http.post(RENDER, json={"input": {"template": "demo", "values": {"name": "x"}}, "dryRun": True})
        assert prompt.status_code == 200, prompt.text
