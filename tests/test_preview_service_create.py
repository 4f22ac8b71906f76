"""service:create wires a preview by default: the golden path ends with a working clean URL."""

from __future__ import annotations

from pathlib import Path

from test_previews import kill_leftovers, preview_settings, running

from actions_server.config import PROJECT_ROOT


def test_service_create_ends_with_a_preview_url_that_answers(tmp_path: Path) -> None:
    settings = preview_settings(tmp_path, templates_dir=PROJECT_ROOT / "cookiecutters", run_wait_seconds=120.0)
    with running(settings) as client:
        body = {"input": {"name": "users-api", "owner": "group:default/platform-team", "description": "Users API"}}
        response = client.post("/v1/actions/service:create/runs", json=body)
        assert response.status_code == 200, response.text
        out = response.json()["output"]
        assert out["previewUrl"] == "http://users-api.preview.localhost:8787/"
        assert out["previewStatus"] == "ready"
        assert {"title": "Preview", "url": out["previewUrl"]} in out["links"]
        assert any(line.get("step") == "preview" for line in response.json()["log"])
        host = {"Host": "users-api.preview.localhost:8787"}
        assert client.get("/healthz", headers=host).json() == {"status": "ok", "checks": {}}

        (preview,) = client.get("/v1/previews", params={"status": "active"}).json()["previews"]
        assert preview["repoUrl"] == out["remoteUrl"] and preview["owner"] == "group:default/platform-team"
        client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": preview["id"]}})
        assert client.get("/healthz", headers=host).status_code == 404
    assert kill_leftovers(settings) == []


def test_service_create_without_a_preview_starts_none(tmp_path: Path) -> None:
    settings = preview_settings(tmp_path, templates_dir=PROJECT_ROOT / "cookiecutters")
    with running(settings) as client:
        body = {"input": {"name": "users-api", "owner": "group:default/platform-team", "preview": False}}
        response = client.post("/v1/actions/service:create/runs", json=body)
        assert response.status_code == 200, response.text
        assert "previewUrl" not in response.json()["output"]
        assert client.get("/v1/previews").json()["previews"] == []
