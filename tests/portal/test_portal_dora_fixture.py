"""Replaying the fixture's events through the webhooks gives the hand-computed DORA figures."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from portal_replay import approx_json, dora_path, expected, replay

from actions_server.portal.events import record_platform_event
from actions_server.portal.store import raw_event_count
from actions_server.services import Services

CASES = expected()["cases"]

pytest_plugins = ["portal_fixtures"]


@pytest.fixture
def replayed(portal_client: TestClient, side_services: Services) -> TestClient:
    counts = replay(portal_client.post, lambda kind, body: record_platform_event(side_services, kind, body))
    stored = expected()["stored"]
    assert counts == {"recorded": stored["sent"] - stored["duplicates"], "duplicates": stored["duplicates"]}
    return portal_client


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['scope']}-{c['name']}-{c['window']}")
def test_dora_api_matches_the_hand_computed_figures(replayed: TestClient, case: dict[str, Any]) -> None:
    response = replayed.get(dora_path(case))
    assert response.status_code == 200, response.text
    assert response.json() == approx_json(case["expected"])


def test_every_delivery_is_stored_raw_once(replayed: TestClient, side_services: Services) -> None:
    assert raw_event_count(side_services.engine) == expected()["stored"]["raw"]


def test_replaying_everything_again_changes_nothing(replayed: TestClient, side_services: Services) -> None:
    before = {case_id(c): replayed.get(dora_path(c)).json() for c in CASES}
    again = replay(replayed.post, lambda kind, body: record_platform_event(side_services, kind, body), again=True)
    assert again["recorded"] == 0
    assert raw_event_count(side_services.engine) == expected()["stored"]["raw"]
    assert {case_id(c): replayed.get(dora_path(c)).json() for c in CASES} == before


def case_id(case: dict[str, Any]) -> str:
    return f"{case['scope']}-{case['name']}-{case['window']}"


def flagged_deploys(client: TestClient, service: str) -> dict[str, bool]:
    """Short commit of each deploy on the service page → whether the page says it caused an incident."""
    page = client.get(f"/services/{service}?window=30d&end=2024-07-01T00:00:00Z")
    assert page.status_code == 200, page.text
    table = page.text.split('data-table="deployments"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</tr>", table, re.S)
    flags: dict[str, bool] = {}
    for row in rows:
        commit = re.search(r"<code>([0-9a-f]+)</code>", row)
        if commit and "production" in row and "success" in row:
            flags[commit.group(1)] = "caused an incident" in row
    return flags


def test_an_incident_blames_the_deploy_that_shipped_its_root_cause(replayed: TestClient) -> None:
    # I2 names c1 as its root cause: D1 (a1, which shipped c1) failed, not D3 (the last deploy before I2).
    assert flagged_deploys(replayed, "users-api") == {
        "a0a0a0a0a0": True,  # I0, before D1: the last deploy before it
        "a1a1a1a1a1": True,  # I2, by its root cause
        "a2a2a2a2a2": True,  # I1, two hours after D2
        "a3a3a3a3a3": False,
        "a4a4a4a4a4": False,
    }
    # A window holding D1 alone: its one deploy failed.
    only_d1 = replayed.get("/v1/services/users-api/dora?window=7d&end=2024-06-08T00:00:00Z").json()
    assert only_d1["changeFailureRate"] == {"ratio": 1.0}
    only_d3 = replayed.get("/v1/services/users-api/dora?window=3d&end=2024-06-21T00:00:00Z").json()
    assert only_d3["changeFailureRate"] == {"ratio": 0.0}


def test_an_incident_at_the_instant_of_a_deploy_blames_that_deploy(portal_client: TestClient) -> None:
    """docs/dora.md: "the service's last counted deploy at or before the incident started"."""
    events = [
        {"type": "deployment", "id": "edge-d-1", "service": "edge-api", "timestamp": "2024-06-01T00:00:00Z",
         "environment": "production", "status": "success"},
        {"type": "deployment", "id": "edge-d-2", "service": "edge-api", "timestamp": "2024-06-10T00:00:00Z",
         "environment": "production", "status": "success"},
        {"type": "incident", "id": "edge-i-1", "service": "edge-api", "timestamp": "2024-06-10T00:00:00Z",
         "resolvedAt": "2024-06-10T01:00:00Z"},
    ]  # fmt: skip
    response = portal_client.post("/v1/events", json={"events": events})
    assert response.status_code == 202, response.text
    second_only = portal_client.get("/v1/services/edge-api/dora?window=5d&end=2024-06-12T00:00:00Z").json()
    assert second_only["changeFailureRate"] == {"ratio": 1.0}
    first_only = portal_client.get("/v1/services/edge-api/dora?window=5d&end=2024-06-03T00:00:00Z").json()
    assert first_only["changeFailureRate"] == {"ratio": 0.0}


def test_the_shape_is_exact_and_null_without_data(portal_client: TestClient) -> None:
    portal_client.post(
        "/v1/events",
        json={"type": "change", "id": "abcdef1", "service": "quiet-api", "timestamp": "2024-06-01T00:00:00Z"},
    )
    body = portal_client.get("/v1/services/quiet-api/dora?window=30d&end=2024-07-01T00:00:00Z").json()
    assert body == {
        "deploymentFrequency": {"perDay": 0.0, "bucket": None},
        "leadTimeForChanges": {"medianHours": None},
        "changeFailureRate": {"ratio": None},
        "timeToRestore": {"medianHours": None},
        "level": None,
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/services/nobody/dora", 404),
        ("/v1/teams/nobody/dora", 404),
        ("/v1/dora?window=30x", 422),
        ("/v1/dora?window=0d", 422),
        ("/v1/dora?window=999w", 422),
        ("/v1/dora?end=yesterday", 422),
    ],
)
def test_bad_requests_get_clear_errors(portal_client: TestClient, path: str, status: int) -> None:
    response = portal_client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_the_api_needs_a_token(portal_client: TestClient) -> None:
    response = portal_client.get("/v1/dora", headers={"Authorization": ""})
    assert response.status_code == 401
