"""Replaying the fixture's events through the webhooks gives the hand-computed DORA figures."""

from __future__ import annotations

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
