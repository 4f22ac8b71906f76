"""Real answers, 2xx and errors, have the status codes and schemas the OpenAPI document gives them.

The fuzz test (test_fuzz_openapi.py) mostly meets 404s, as it knows no ids; here a
run, a workspace and a template exist, so the success answers are checked too.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import assert_documented

RENDER = "/v1/actions/cookiecutter:render/runs"


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    served: dict[str, Any] = client.get("/openapi.json").json()
    return served


def test_runs_actions_templates_and_workspaces_answer_as_documented(
    client: TestClient, document: dict[str, Any]
) -> None:
    assert_documented(document, client.get("/v1/actions"))
    assert_documented(document, client.get("/v1/actions/cookiecutter:render"))
    values = {"name": "users-api", "port": "9000"}
    run = assert_documented(document, client.post(RENDER, json={"input": {"template": "demo", "values": values}}))
    assert run["status"] == "succeeded" and run["links"]["self"].endswith(f"/v1/runs/{run['id']}")
    queued = client.post(f"{RENDER}?wait=false", json={"input": {"template": "demo"}})
    assert queued.status_code == 202
    assert assert_documented(document, queued)["status"] in {"queued", "running", "succeeded"}
    fetched = assert_documented(document, client.get(f"/v1/runs/{run['id']}"))
    assert fetched["log"], "a fetched run carries its log"
    listed = assert_documented(document, client.get("/v1/runs", params={"action": "cookiecutter:render"}))
    assert run["id"] in {r["id"] for r in listed["runs"]}
    assert all("log" not in r for r in listed["runs"]), "the listing keeps omitting the log"
    finished = assert_documented(document, client.post(f"/v1/runs/{run['id']}/cancel"))
    assert finished["error"]["code"] == "run_finished"

    templates = assert_documented(document, client.get("/v1/templates"))
    assert "demo" in {t["name"] for t in templates["templates"]}
    assert assert_documented(document, client.get("/v1/templates/demo"))["version"] == "1.2.3"
    workspace = assert_documented(document, client.get(f"/v1/workspaces/{run['output']['workspaceId']}"))
    assert workspace["archiveUrl"].endswith("/archive")

    assert assert_documented(document, client.get("/v1/previews"))["previews"] == []


def test_errors_answer_with_the_documented_error_body(client: TestClient, document: dict[str, Any]) -> None:
    answers = [
        client.get("/v1/runs", headers={"Authorization": ""}),
        client.get("/v1/templates/no-such-template"),
        client.get("/v1/runs/no-such-run"),
        client.post("/v1/runs/no-such-run/cancel"),
        client.get("/v1/runs", params={"status": "sleeping"}),
        client.post(RENDER, json={"input": {"template": "demo", "values": {"port": "not a port"}}}),
        client.post(RENDER, json={"input": {}, "unknown": True}),
        client.get("/v1/workspaces/no-such-workspace"),
        client.get("/v1/previews/no-such-preview"),
        client.get("/api/catalog/entities/by-name/component/default/no-such-entity"),
        client.post("/api/catalog/refresh", json={"entityRef": "not a ref"}),
        client.get("/v1/services/no-such-service/dora"),
        client.get("/v1/dora", params={"window": "forever"}),
    ]
    for response in answers:
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
        body = assert_documented(document, response)
        assert body["error"]["status"] == response.status_code


def test_catalog_portal_and_readiness_answers_are_as_documented(client: TestClient, document: dict[str, Any]) -> None:
    assert assert_documented(document, client.get("/readyz"))["status"] == "ready"
    page = assert_documented(document, client.get("/api/catalog/entities/by-query", params={"limit": 1}))
    assert page["totalItems"] == len(page["items"]) == 0
    assert_documented(document, client.get("/api/catalog/entity-facets", params={"facet": "kind"}))
    assert assert_documented(document, client.get("/api/catalog/locations")) == []
    assert assert_documented(document, client.get("/v1/services"))["services"] == []
    assert assert_documented(document, client.get("/v1/costs", params={"by": "env"}))["by"] == "env"
    assert_documented(document, client.get("/v1/dora"))
