"""The pages: open without a token, escaped, with clear errors."""

from __future__ import annotations

from fastapi.testclient import TestClient

pytest_plugins = ["portal_fixtures"]

HOSTILE = '<script>alert("x")</script>'


def test_pages_need_no_token_and_escape_what_events_carry(portal_client: TestClient) -> None:
    incident = {
        "type": "incident",
        "id": "i-1",
        "service": "web",
        "timestamp": "2024-06-01T00:00:00Z",
        "title": HOSTILE,
        "team": HOSTILE,
    }
    assert portal_client.post("/v1/events", json=incident).status_code == 202
    for path in ("/?end=2024-07-01T00:00:00Z", "/services/web?end=2024-07-01T00:00:00Z"):
        page = portal_client.get(path, headers={"Authorization": ""})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<script>" not in page.text
    assert "&lt;script&gt;" in portal_client.get("/services/web?end=2024-07-01T00:00:00Z").text


def test_pages_are_phone_ready_and_self_contained(portal_client: TestClient) -> None:
    page = portal_client.get("/").text
    assert 'name="viewport"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # no CDN, nothing fetched


def test_page_errors(portal_client: TestClient) -> None:
    assert portal_client.get("/services/nobody").status_code == 404
    assert portal_client.get("/teams/nobody").status_code == 404
    assert portal_client.get("/?window=forever").status_code == 422
    assert portal_client.get("/services/x?end=not-a-time").status_code == 422
