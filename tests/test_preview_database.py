"""A service that needs PostgreSQL gets an empty database of its own in each preview."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from test_previews import preview_settings, running

from actions_server.config import PROJECT_ROOT, Settings
from actions_server.previews.local import PreviewDatabases
from conftest import POSTGRES_URL

POSTGRES_SERVICE = {
    "input": {"name": "orders-api", "owner": "group:default/team-a", "values": {"database": "postgres"}}
}


def postgres_service_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return preview_settings(tmp_path, templates_dir=PROJECT_ROOT / "cookiecutters", run_wait_seconds=120.0, **overrides)


@contextmanager
def ready_postgres_service(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A server whose previews get databases from POSTGRES_URL, with orders-api (which needs one) created and its
    preview ready: the client and the preview."""
    with running(postgres_service_settings(tmp_path, preview_database_url=POSTGRES_URL)) as client:
        run = client.post("/v1/actions/service:create/runs", json=POSTGRES_SERVICE).json()
        assert run["status"] == "succeeded", run["error"]
        assert run["output"]["previewStatus"] == "ready"  # its /readyz runs SELECT 1 on that database
        (preview,) = client.get("/v1/previews", params={"status": "active"}).json()["previews"]
        yield client, preview


def databases() -> set[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pltf_pv%'")}


@pytest.mark.postgres
def test_a_postgres_service_previews_with_its_own_database(tmp_path: Path, postgres_url: str) -> None:
    # postgres_url makes sure the server is there (and fails in CI when it is not); previews use the admin URL.
    with ready_postgres_service(tmp_path) as (client, preview):
        database = PreviewDatabases.name(preview["id"])
        assert database in databases()
        ready = client.get("/readyz", headers={"Host": "orders-api.preview.localhost:8787"})
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
        client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": preview["id"]}})
        assert database not in databases()


def test_without_a_database_server_the_preview_fails_clearly(tmp_path: Path) -> None:
    with running(postgres_service_settings(tmp_path)) as client:
        run = client.post("/v1/actions/service:create/runs", json=POSTGRES_SERVICE).json()
        # The repository stands; the preview says why it could not start, instead of never getting ready.
        assert run["status"] == "succeeded" and run["output"]["previewStatus"] == "failed"
        assert any("PLTF_PREVIEW_DATABASE_URL" in line["message"] for line in run["log"])
