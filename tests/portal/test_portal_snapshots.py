"""The portal serves stored results: computed when events, probes or pushes change them, not per page view."""

from __future__ import annotations

from pathlib import Path

import httpx
import respx
import yaml
from fastapi.testclient import TestClient
from portal_replay import API_TOKEN, PORTAL_SETTINGS
from test_forge_embedded import AUTH_HEADER, create_repository, git

from actions_server.app import create_app
from actions_server.config import Settings
from conftest import ServerProcess, make_settings

pytest_plugins = ["portal_fixtures"]

PROMETHEUS = "http://prometheus.test:9090"
END = "end=2024-07-01T00:00:00Z"


def deploy(n: int) -> dict[str, str]:
    return {
        "type": "deployment",
        "id": f"d-{n}",
        "service": "web",
        "environment": "production",
        "status": "success",
        "timestamp": f"2024-06-0{n}T00:00:00Z",
    }


def test_a_page_is_computed_once_per_state_of_its_inputs(tmp_path: Path) -> None:
    """Prometheus is asked while a page is computed: a second view asks nothing, a new event asks again."""
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "prometheus_url": PROMETHEUS})
    answer = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.7e9, "1"]}]}}
    with (
        respx.mock(base_url=PROMETHEUS) as prometheus,
        TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client,
    ):
        route = prometheus.get("/api/v1/query").mock(return_value=httpx.Response(200, json=answer))
        assert client.post("/v1/events", json=deploy(1)).status_code == 202
        first = client.get(f"/services/web?{END}")
        asked = route.call_count
        again = client.get(f"/services/web?{END}")
        assert asked > 0 and route.call_count == asked
        assert again.text == first.text and again.headers["etag"] == first.headers["etag"]

        assert client.post("/v1/events", json=deploy(2)).status_code == 202
        after = client.get(f"/services/web?{END}")
        assert route.call_count > asked
        assert "2024-06-02" in after.text and "2024-06-02" not in first.text
        assert after.headers["etag"] != first.headers["etag"]

        api = client.get(f"/v1/services/web/dora?{END}")
        assert api.status_code == 200 and api.json()["deploymentFrequency"]["perDay"] > 0
        assert api.headers["cache-control"].startswith("private")


def test_pages_carry_an_etag_and_a_short_max_age(portal_client: TestClient, portal_settings: Settings) -> None:
    assert portal_client.post("/v1/events", json=deploy(1)).status_code == 202
    page = portal_client.get("/", headers={"Authorization": ""})
    assert page.headers["cache-control"] == f"public, max-age={portal_settings.portal.portal_cache_seconds}"
    tag = page.headers["etag"]
    unchanged = portal_client.get("/", headers={"Authorization": "", "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == tag
    assert portal_client.get("/", headers={"Authorization": "", "If-None-Match": '"other"'}).status_code == 200
    catalog = portal_client.get("/catalog")
    assert catalog.headers["cache-control"].startswith("public")
    assert portal_client.get("/catalog", headers={"If-None-Match": catalog.headers["etag"]}).status_code == 304


def test_a_push_changes_the_stored_page(server_env: dict[str, str], tmp_path: Path) -> None:
    """A new catalog-info.yaml pushed with stock git shows its owner on the very next view."""
    server = ServerProcess({**server_env, "PLTF_PROBE_INTERVAL_SECONDS": "0"}, tmp_path / "server.log").start()
    try:
        with server.client() as client:
            remote = create_repository(client, "team", "orders")["remoteUrl"]
        before = httpx.get(f"{server.url}/")
        assert "/services/orders" in before.text and "/teams/checkout-team" not in before.text
        work = tmp_path / "orders"
        assert git("clone", "--quiet", remote, str(work)).returncode == 0
        entity = {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "orders"},
            "spec": {"type": "service", "lifecycle": "production", "owner": "group:default/checkout-team"},
        }
        (work / "catalog-info.yaml").write_text(yaml.safe_dump(entity))
        assert git("add", "catalog-info.yaml", cwd=work).returncode == 0
        assert git("commit", "--quiet", "-m", "owner", cwd=work).returncode == 0
        pushed = git("push", "origin", "HEAD", cwd=work, authorization=AUTH_HEADER)
        assert pushed.returncode == 0, pushed.stderr
        after = httpx.get(f"{server.url}/")
        assert "/teams/checkout-team" in after.text
        assert after.headers["etag"] != before.headers["etag"]
    finally:
        server.stop()
