import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.name.replace('-', '_') }}.app import create_app
from {{ cookiecutter.name.replace('-', '_') }}.settings import Settings

REPOSITORY = Path(__file__).resolve().parents[1]


def test_healthz_answers_without_checking_dependencies(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


{% if cookiecutter.database == "postgres" -%}
def test_readyz_is_unavailable_without_a_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("failed")


def test_readyz_is_ready_when_every_check_passes(client: TestClient) -> None:
    async def healthy() -> None:
        return None

    client.app.state.readiness_checks = {"database": healthy}  # type: ignore[attr-defined]
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", "postgresql://app:secret@db:5432/app")
    assert Settings().database_dsn() == "postgresql://app:secret@db:5432/app"
    assert "secret" not in repr(Settings())
{%- else -%}
def test_readyz_is_ready_without_dependencies(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_reports_a_failing_check(client: TestClient) -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    client.app.state.readiness_checks = {"cache": broken}  # type: ignore[attr-defined]
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"cache": "failed: ConnectionError"}
{%- endif %}


def test_example_endpoint(client: TestClient) -> None:
    assert client.get("/v1/items/1").json() == {"id": 1, "name": "example"}
    assert client.get("/v1/items/999").status_code == 404


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/v1/items/1")
    client.get("/v1/items/999")
    body = client.get("/metrics").text
    assert 'http_requests_total{code="200",method="GET",route="/v1/items/{item_id}"} 1.0' in body
    assert 'http_requests_total{code="404",method="GET",route="/v1/items/{item_id}"} 1.0' in body


def test_latency_slo_threshold_is_a_histogram_bucket(client: TestClient, settings: Settings) -> None:
    client.get("/v1/items/1")
    body = client.get("/metrics").text
    assert f'le="{settings.latency_slo_threshold_seconds}"' in body


def test_logs_are_json(capsys: pytest.CaptureFixture[str]) -> None:
    # The app is built here so that its log handler writes to the captured stdout.
    with TestClient(create_app(Settings())) as client:
        client.get("/v1/items/1")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    request = next(record for record in records if record.get("event") == "request")
    assert request["route"] == "/v1/items/{item_id}"
    assert request["code"] == 200
    assert request["level"] == "info"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENVIRONMENT", "preview")
    monkeypatch.setenv("APP_PORT", "9000")
    settings = Settings()
    assert (settings.environment, settings.port) == ("preview", 9000)


def test_checked_in_openapi_document_is_current() -> None:
    # catalog-info.yaml publishes docs/openapi.json as the API definition.
    checked_in = json.loads((REPOSITORY / "docs" / "openapi.json").read_text())
    assert create_app(Settings()).openapi() == checked_in, (
        "docs/openapi.json is stale: regenerate it with `make openapi`"
    )
