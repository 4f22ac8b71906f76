"""Webhook signatures, dedupe, normalisation edge cases and the generic endpoint's validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from portal_replay import GITHUB_SECRET, GITLAB_TOKEN, github_signature

from actions_server.app import create_app
from actions_server.portal.store import load_dataset, raw_event_count
from actions_server.services import Services
from conftest import TOKEN, make_settings

PUSH = {
    "ref": "refs/heads/main",
    "after": "abcdef0123456789abcdef0123456789abcdef01",
    "repository": {"name": "users-api"},
    "commits": [{"id": "abcdef0123456789abcdef0123456789abcdef01", "timestamp": "2024-06-01T10:00:00Z"}],
}

pytest_plugins = ["portal_fixtures"]


FIRING_ALERT = {
    "status": "firing",
    "alerts": [
        {"status": "firing", "fingerprint": "x", "startsAt": "2024-06-01T00:00:00Z", "labels": {"job": "orders-api"}}
    ],
}


def github(client: TestClient, body: bytes, signature: str | None, delivery: str = "d-1") -> Any:
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return client.post("/webhooks/github", content=body, headers=headers)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha1=0000",
        "sha256=" + "0" * 64,
        github_signature(json.dumps(PUSH).encode(), "another-secret"),
        github_signature(json.dumps({**PUSH, "after": "0" * 40}).encode()),  # signs a different body
    ],
    ids=["unsigned", "empty", "sha1", "zeros", "wrong-secret", "other-body"],
)
def test_a_forged_github_webhook_is_refused_and_nothing_is_stored(
    portal_client: TestClient, side_services: Services, signature: str | None
) -> None:
    response = github(portal_client, json.dumps(PUSH).encode(), signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    unsigned = not signature or not signature.startswith("sha256=")
    expected = "missing X-Hub-Signature-256" if unsigned else "X-Hub-Signature-256 does not match the body"
    assert response.json()["error"]["message"] == expected
    assert raw_event_count(side_services.engine) == 0
    assert load_dataset(side_services.engine).change_times == {}


def test_a_signed_github_push_is_stored_and_normalised(portal_client: TestClient, side_services: Services) -> None:
    body = json.dumps(PUSH).encode()
    first = github(portal_client, body, github_signature(body))
    assert first.status_code == 202
    assert first.json() == {
        "accepted": True,
        "duplicate": False,
        "recorded": {"changes": 1, "deployments": 0, "incidents": 0},
    }
    again = github(portal_client, body, github_signature(body))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert raw_event_count(side_services.engine, "github") == 1
    assert ("users-api", PUSH["after"]) in load_dataset(side_services.engine).change_times


def test_github_webhooks_are_refused_when_no_secret_is_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, probe_interval_seconds=0)
    with TestClient(create_app(settings)) as client:
        body = json.dumps(PUSH).encode()
        response = github(client, body, github_signature(body))
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "unauthorized",
        "message": "GitHub webhooks are refused: PLTF_GITHUB_WEBHOOK_SECRET is not set",
        "status": 401,
    }
    stored = Services.create(settings.model_copy())
    try:
        assert raw_event_count(stored.engine) == 0
        assert load_dataset(stored.engine).change_times == {}
    finally:
        stored.close()


def test_a_signed_body_that_is_not_json_is_a_clear_422(portal_client: TestClient, side_services: Services) -> None:
    body = b"{not json"
    response = github(portal_client, body, github_signature(body))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert raw_event_count(side_services.engine) == 0


@pytest.mark.parametrize("token", [None, "", "wrong-token", GITLAB_TOKEN + "x"])
def test_gitlab_needs_its_token(portal_client: TestClient, side_services: Services, token: str | None) -> None:
    headers = {"X-Gitlab-Event": "Push Hook"} | ({"X-Gitlab-Token": token} if token is not None else {})
    response = portal_client.post("/webhooks/gitlab", json={"object_kind": "push"}, headers=headers)
    assert response.status_code == 401
    assert raw_event_count(side_services.engine) == 0


@pytest.mark.parametrize("path", ["/webhooks/argocd", "/webhooks/alertmanager"])
@pytest.mark.parametrize(
    "authorization", ["", "Bearer nope", "Basic dGVzdA==", f"Basic {TOKEN}", f"Token {TOKEN}", TOKEN, f"Bearer{TOKEN}"]
)
def test_argocd_and_alertmanager_need_a_bearer_token(
    portal_client: TestClient, side_services: Services, path: str, authorization: str
) -> None:
    response = portal_client.post(path, json={"alerts": []}, headers={"Authorization": authorization})
    assert response.status_code == 401
    what = "Argo CD notifications" if path.endswith("argocd") else "Alertmanager"
    assert response.json()["error"]["message"] == f"{what} needs Authorization: Bearer <an API token>"
    assert raw_event_count(side_services.engine) == 0


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer  {TOKEN}"])
def test_alertmanager_takes_the_api_token_as_rfc_6750_spells_it(
    portal_client: TestClient, side_services: Services, authorization: str
) -> None:
    response = portal_client.post("/webhooks/alertmanager", json=FIRING_ALERT, headers={"Authorization": authorization})
    assert response.status_code == 202, response.text
    assert raw_event_count(side_services.engine) == 1


def test_alertmanager_accepts_its_own_token_when_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, alertmanager_webhook_token="am-token-123456", probe_interval_seconds=0)
    with TestClient(create_app(settings)) as client:
        refused = client.post("/webhooks/alertmanager", json=FIRING_ALERT, headers={"Authorization": f"Bearer {TOKEN}"})
        accepted = client.post(
            "/webhooks/alertmanager", json=FIRING_ALERT, headers={"Authorization": "Bearer am-token-123456"}
        )
    assert refused.status_code == 401
    assert accepted.status_code == 202 and accepted.json()["recorded"]["incidents"] == 1


def test_webhook_secrets_never_reach_the_logs(capsys: pytest.CaptureFixture[str], portal_settings: Any) -> None:
    # capsys first: the app's logger writes to the stderr it finds when it is created.
    from actions_server.logs import get_logger

    with TestClient(create_app(portal_settings)) as portal_client:
        get_logger().info("leak check", secret=GITHUB_SECRET, token=GITLAB_TOKEN)
        portal_client.post("/webhooks/gitlab", json={}, headers={"X-Gitlab-Token": GITLAB_TOKEN + "x"})

    get_logger().info("leak check", secret=GITHUB_SECRET, token=GITLAB_TOKEN)
    err = capsys.readouterr().err
    assert "leak check" in err
    assert GITHUB_SECRET not in err and GITLAB_TOKEN not in err


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "deploy", "id": "1", "service": "a", "timestamp": "2024-06-01T00:00:00Z"}, "type"),
        ({"type": "deployment", "service": "a", "timestamp": "2024-06-01T00:00:00Z"}, "id"),
        ({"type": "deployment", "id": "1", "service": "A B", "timestamp": "2024-06-01T00:00:00Z"}, "service"),
        ({"type": "deployment", "id": "1", "service": "a", "timestamp": "tomorrow"}, "timestamp"),
        (
            {"type": "deployment", "id": "1", "service": "a", "timestamp": "2024-06-01T00:00:00Z", "status": "ok"},
            "status",
        ),
        (
            {"type": "deployment", "id": "1", "service": "a", "timestamp": "2024-06-01T00:00:00Z", "changes": ["xyz"]},
            "changes",
        ),
        ({"type": "change", "id": "not-a-sha", "service": "a", "timestamp": "2024-06-01T00:00:00Z"}, "id"),
        (
            {"type": "incident", "id": "1", "service": "a", "timestamp": "2024-06-01T00:00:00Z", "rootCause": "zz"},
            "rootCause",
        ),
    ],
)
def test_bad_generic_events_get_422_naming_the_field(
    portal_client: TestClient, side_services: Services, event: dict[str, Any], field: str
) -> None:
    response = portal_client.post("/v1/events", json=event)
    assert response.status_code == 422, response.text
    fields = [f["field"] for f in response.json()["error"].get("fields", [])]
    assert any(field in f for f in fields), fields
    assert raw_event_count(side_services.engine) == 0


def test_an_incident_resolved_before_it_started_is_refused(portal_client: TestClient) -> None:
    response = portal_client.post(
        "/v1/events",
        json={
            "type": "incident",
            "id": "i",
            "service": "a",
            "timestamp": "2024-06-02T00:00:00Z",
            "resolvedAt": "2024-06-01T00:00:00Z",
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "resolvedAt"


@pytest.mark.parametrize("authorization", ["", "Bearer wrong", f"Basic {TOKEN}"])
def test_generic_events_need_a_token(portal_client: TestClient, side_services: Services, authorization: str) -> None:
    event = {"type": "change", "id": "abcdef1", "service": "users-api", "timestamp": "2024-06-01T00:00:00Z"}
    response = portal_client.post("/v1/events", json=event, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert raw_event_count(side_services.engine) == 0
    assert load_dataset(side_services.engine).change_times == {}


def test_an_incident_opened_then_resolved_by_two_generic_events(
    portal_client: TestClient, side_services: Services
) -> None:
    opened = {"type": "incident", "id": "i-9", "service": "a", "timestamp": "2024-06-02T00:00:00Z"}
    assert portal_client.post("/v1/events", json=opened).status_code == 202
    assert portal_client.post("/v1/events", json={**opened, "resolvedAt": "2024-06-02T03:00:00Z"}).status_code == 202
    [incident] = load_dataset(side_services.engine).incidents
    assert incident.resolved_at is not None and incident.started_at is not None
    assert incident.resolved_at - incident.started_at == 3 * 3600


def test_a_merged_pull_request_times_its_merge_commit_from_when_it_was_opened(
    portal_client: TestClient, side_services: Services
) -> None:
    sha = "1234567890abcdef1234567890abcdef12345678"
    pr = {
        "action": "closed",
        "repository": {"name": "users-api"},
        "pull_request": {"merged": True, "merge_commit_sha": sha, "created_at": "2024-06-01T08:00:00Z"},
    }
    body = json.dumps(pr).encode()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": "pr-1",
        "X-Hub-Signature-256": github_signature(body),
    }
    assert portal_client.post("/webhooks/github", content=body, headers=headers).status_code == 202
    push = {**PUSH, "after": sha, "commits": [{"id": sha, "timestamp": "2024-06-01T12:00:00Z"}]}
    body = json.dumps(push).encode()
    assert github(portal_client, body, github_signature(body), "push-9").status_code == 202
    changes = load_dataset(side_services.engine).change_times
    assert changes[("users-api", sha)] == 1717228800.0  # the earlier of the two: 2024-06-01T08:00:00Z


def test_a_deploy_workflow_run_is_a_deployment(portal_client: TestClient, side_services: Services) -> None:
    run = {
        "action": "completed",
        "repository": {"name": "users-api"},
        "workflow_run": {
            "id": 7,
            "name": "Deploy to production",
            "conclusion": "success",
            "head_sha": "abcdef1",
            "updated_at": "2024-06-02T00:00:00Z",
        },
    }
    ci = {**run, "workflow_run": {**run["workflow_run"], "id": 8, "name": "CI"}}
    for number, payload in enumerate((run, ci)):
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": f"wr-{number}",
            "X-Hub-Signature-256": github_signature(body),
        }
        assert portal_client.post("/webhooks/github", content=body, headers=headers).status_code == 202
    [deploy] = load_dataset(side_services.engine).deployments
    assert deploy.counts and deploy.sha == "abcdef1"
