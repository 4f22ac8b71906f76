"""The Backstage catalog provider, against Backstage's documented request and response shapes.

No Backstage backend runs here, so these tests use respx with the shapes from
Backstage's catalog API docs (docs/features/software-catalog/api.md):
`POST /api/catalog/locations` answers 201 `{location, entities}` (entities is
empty: ingestion is asynchronous), 409 with `{error: {name: "ConflictError",
message}}` when the location exists, and `?dryRun=true` answers 201
`{exists, location, entities}` with the entities it would produce, including
the `generated-*` Location entity. The end-to-end issue runs these flows
against a real Backstage backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from actions_server.app import create_app
from actions_server.config import Settings
from conftest import TOKEN, make_settings

BACKSTAGE = "https://backstage.example.test"
BACKSTAGE_TOKEN = "backstage-static-token-123"
TARGET = "https://github.com/acme/users-api/blob/main/catalog-info.yaml"
REGISTER = "/v1/actions/catalog:register/runs"

COMPONENT = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "users-api", "namespace": "default"},
    "spec": {"type": "service", "lifecycle": "production", "owner": "group:default/team-a"},
}
GENERATED_LOCATION = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Location",
    "metadata": {"name": "generated-0d5c6e1bb1a4d35a1b7e5d8c3b8b3a0fd1c2e0a9", "namespace": "default"},
    "spec": {"type": "url", "target": TARGET},
}
LOCATION = {"id": "5b8e4f1a-0000-4000-8000-000000000001", "type": "url", "target": TARGET}


def conflict() -> httpx.Response:
    return httpx.Response(
        409,
        json={
            "error": {"name": "ConflictError", "message": f"Location url:{TARGET} already exists"},
            "request": {"method": "POST", "url": "/locations"},
            "response": {"statusCode": 409},
        },
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, backstage_url=BACKSTAGE + "/", backstage_token=BACKSTAGE_TOKEN, log_level="error")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def backstage() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=f"{BACKSTAGE}/api/catalog", assert_all_called=False) as router:
        yield router


def locations_route(backstage: respx.MockRouter, real: httpx.Response, dry: httpx.Response) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {BACKSTAGE_TOKEN}"
        assert json.loads(request.content) == {"type": "url", "target": TARGET}
        return dry if request.url.params.get("dryRun") == "true" else real

    return backstage.post("/locations").mock(side_effect=answer)


def test_register_posts_a_url_location_then_finds_the_entity_by_dry_run(
    client: TestClient, backstage: respx.MockRouter
) -> None:
    route = locations_route(
        backstage,
        httpx.Response(201, json={"location": LOCATION, "entities": []}),
        httpx.Response(201, json={"exists": True, "location": LOCATION, "entities": [GENERATED_LOCATION, COMPONENT]}),
    )
    run = client.post(REGISTER, json={"input": {"catalogInfoUrl": TARGET}})
    assert run.status_code == 200, run.text
    assert run.json()["output"] == {"entityRef": "component:default/users-api", "catalogInfoUrl": TARGET}
    assert [call.request.url.params.get("dryRun") for call in route.calls] == [None, "true"]


def test_409_is_already_registered(client: TestClient, backstage: respx.MockRouter) -> None:
    locations_route(
        backstage,
        conflict(),
        httpx.Response(201, json={"exists": True, "location": LOCATION, "entities": [COMPONENT]}),
    )
    refused = client.post(REGISTER, json={"input": {"catalogInfoUrl": TARGET}})
    assert refused.status_code == 409 and "already exists" in refused.json()["error"]["message"]
    optional = client.post(REGISTER, json={"input": {"catalogInfoUrl": TARGET, "optional": True}})
    assert optional.status_code == 200
    assert optional.json()["output"]["entityRef"] == "component:default/users-api"


@respx.mock(assert_all_called=False)
def test_without_a_dry_run_the_entity_is_found_by_name(client: TestClient, respx_mock: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("dryRun") == "true":
            return httpx.Response(403, json={"error": {"name": "NotAllowedError", "message": "dry run not allowed"}})
        return httpx.Response(201, json={"location": LOCATION, "entities": []})

    respx_mock.post(f"{BACKSTAGE}/api/catalog/locations").mock(side_effect=answer)
    # The catalog file itself, read the way Backstage's GitHub integration would (blob → raw).
    respx_mock.get("https://raw.githubusercontent.com/acme/users-api/main/catalog-info.yaml").mock(
        return_value=httpx.Response(200, text=json.dumps(COMPONENT))
    )
    by_name = respx_mock.get(f"{BACKSTAGE}/api/catalog/entities/by-name/Component/default/users-api").mock(
        return_value=httpx.Response(200, json={**COMPONENT, "relations": []})
    )
    run = client.post(REGISTER, json={"input": {"catalogInfoUrl": TARGET}})
    # Registered, but the token may not dry-run: the file is read and the entity looked up by name.
    assert run.status_code == 200, run.text
    assert run.json()["output"]["entityRef"] == "component:default/users-api"
    assert by_name.called


def test_the_dry_run_fallback_reads_the_file_and_asks_by_name(settings: Settings) -> None:
    from actions_server.catalog.backstage import BackstageCatalog
    from actions_server.redact import Redactor

    def backstage(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/catalog/locations":
            return httpx.Response(400, json={"error": {"name": "InputError", "message": "dry run unsupported"}})
        assert request.url.path == "/api/catalog/entities/by-name/Component/default/users-api"
        return httpx.Response(200, json={**COMPONENT, "metadata": {**COMPONENT["metadata"], "uid": "u-1"}})

    def files(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://raw.githubusercontent.com/acme/users-api/main/catalog-info.yaml"
        return httpx.Response(200, text=json.dumps(COMPONENT))

    from actions_server.catalog.reader import LocationReader

    catalog = BackstageCatalog(
        settings,
        Redactor(),
        transport=httpx.MockTransport(backstage),
        reader=LocationReader(settings, httpx.MockTransport(files)),
    )
    found = catalog.entities_at(TARGET)
    assert [e["metadata"].get("uid") for e in found] == ["u-1"]
    catalog.close()


def test_read_api_and_pages_use_backstage(client: TestClient, backstage: respx.MockRouter) -> None:
    stitched = {**COMPONENT, "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}]}
    backstage.get("/entities/by-name/component/default/users-api").mock(return_value=httpx.Response(200, json=stitched))
    backstage.get("/entities/by-name/component/default/nope").mock(
        return_value=httpx.Response(404, json={"error": {"name": "NotFoundError", "message": "no such entity"}})
    )
    query = backstage.get("/entities/by-query").mock(
        return_value=httpx.Response(200, json={"items": [stitched], "totalItems": 1, "pageInfo": {}})
    )
    backstage.get("/entity-facets").mock(return_value=httpx.Response(200, json={"facets": {"kind": []}}))
    assert client.get("/api/catalog/entities/by-name/component/default/users-api").json() == stitched
    assert client.get("/api/catalog/entities/by-name/component/default/nope").status_code == 404
    body = client.get("/api/catalog/entities/by-query", params={"filter": "kind=component", "fields": "metadata.name"})
    assert body.json()["totalItems"] == 1
    params = query.calls.last.request.url.params
    assert params.get_list("filter") == ["kind=component"] and params["fields"] == "metadata.name"
    page = client.get("/catalog")
    assert page.status_code == 200 and "users-api" in page.text and "Backstage" in page.text


def test_unauthorised_and_unreachable_backstage_are_clear_502s(client: TestClient, backstage: respx.MockRouter) -> None:
    backstage.post("/locations").mock(return_value=httpx.Response(401, json={"error": {"message": "bad token"}}))
    run = client.post(REGISTER, json={"input": {"catalogInfoUrl": TARGET}})
    assert run.status_code == 502 and "refused our token" in run.json()["error"]["message"]
    backstage.post("/locations").mock(side_effect=httpx.ConnectError("refused"))
    run = client.post(REGISTER, json={"input": {"catalogInfoUrl": TARGET}})
    assert run.status_code == 502 and "cannot reach Backstage" in run.json()["error"]["message"]
    assert BACKSTAGE_TOKEN not in json.dumps(client.get("/v1/runs").json())


def test_refresh_and_locations_are_forwarded(client: TestClient, backstage: respx.MockRouter) -> None:
    refresh = backstage.post("/refresh").mock(return_value=httpx.Response(200))
    backstage.get("/locations").mock(return_value=httpx.Response(200, json=[{"data": LOCATION}]))
    assert client.post("/api/catalog/refresh", json={"entityRef": "component:default/users-api"}).status_code == 200
    assert json.loads(refresh.calls.last.request.content) == {"entityRef": "component:default/users-api"}
    assert client.get("/api/catalog/locations").json() == [{"data": LOCATION}]
