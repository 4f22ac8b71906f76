"""The embedded catalog: catalog:register, the read API, locations, refresh, substitutions, pages, storage."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import yaml
from fastapi.testclient import TestClient

from actions_server.app import create_app
from actions_server.auth import hash_token
from actions_server.config import PROJECT_ROOT, Settings
from conftest import TOKEN, make_settings, need

REGISTER = "/v1/actions/catalog:register/runs"
OWN_CATALOG = (PROJECT_ROOT / "catalog-info" / "catalog-info.yaml").as_uri()
ANONYMOUS = {"Authorization": ""}


def component(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {"type": "service", "lifecycle": "production", "owner": "group:default/team-a", **spec},
    }


def write_yaml(path: Path, *documents: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """An allowed file root (a stand-in for a checked-out repository)."""
    root = tmp_path / "repo"
    root.mkdir()
    return root


@pytest.fixture
def catalog_settings(tmp_path: Path, files: Path) -> Settings:
    return make_settings(tmp_path, catalog_file_roots=[files], catalog_read_hosts=["example.test"], log_level="error")


@pytest.fixture
def client(catalog_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(catalog_settings), headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client


def register(client: TestClient, dry_run: bool = False, **params: Any) -> httpx.Response:
    return client.post(REGISTER, json={"input": params, "dryRun": dry_run})


def entity(client: TestClient, ref: str) -> httpx.Response:
    kind, rest = ref.split(":")
    namespace, name = rest.split("/")
    return client.get(f"/api/catalog/entities/by-name/{kind}/{namespace}/{name}", headers=ANONYMOUS)


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def forge_repository(settings: Settings, owner: str, name: str, files: dict[str, str]) -> str:
    """A bare repository where the embedded forge keeps them, made with plain git; returns its raw URL base."""
    bare = settings.storage.data_dir / "git" / owner / f"{name}.git"
    work = settings.storage.data_dir.parent / "work" / owner / name
    work.mkdir(parents=True)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(bare))
    return f"{settings.server.base_url}/git/{owner}/{name}/raw/main"


# -- catalog:register ------------------------------------------------------------


def test_file_roots_are_an_allow_list(client: TestClient) -> None:
    # This client's only root is the test's directory, so even the platform's own file is refused, before any run.
    run = register(client, catalogInfoUrl=OWN_CATALOG)
    assert run.status_code == 422 and run.json()["error"]["fields"][0]["field"] == "catalogInfoUrl"
    assert client.get("/v1/runs").json()["runs"] == []


def test_register_then_read_by_name_with_relations(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_level="error")  # default roots: the repository's catalog-info/
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        run = register(client, catalogInfoUrl=OWN_CATALOG)
        assert run.status_code == 200, run.text
        assert run.json()["output"] == {
            "entityRef": "component:default/pltf-actions-server",
            "catalogInfoUrl": OWN_CATALOG,
            "entityUrl": f"{settings.server.base_url}/catalog/default/component/pltf-actions-server",
        }
        found = entity(client, "component:default/pltf-actions-server")
        assert found.status_code == 200
        body = found.json()
        assert body["metadata"]["uid"] and body["metadata"]["etag"]
        assert {"type": "ownedBy", "targetRef": "group:default/platform-team"} in body["relations"]
        assert {"type": "providesApi", "targetRef": "api:default/pltf-actions-api"} in body["relations"]
        annotations = body["metadata"]["annotations"]
        assert annotations["backstage.io/managed-by-location"] == f"file:{PROJECT_ROOT}/catalog-info/catalog-info.yaml"
        group = entity(client, "group:default/platform-team").json()
        assert {"type": "ownerOf", "targetRef": "component:default/pltf-actions-server"} in group["relations"]
        api = entity(client, "api:default/pltf-actions-api").json()
        assert api["spec"]["definition"] == (PROJECT_ROOT / "catalog-info" / "openapi.json").read_text()
        assert {"type": "apiProvidedBy", "targetRef": "component:default/pltf-actions-server"} in api["relations"]


def test_registering_twice_is_409_unless_optional(client: TestClient, files: Path) -> None:
    url = write_yaml(files / "catalog-info.yaml", component("users-api")).as_uri()
    assert register(client, catalogInfoUrl=url).status_code == 200
    again = register(client, catalogInfoUrl=url)
    assert again.status_code == 409 and again.json()["error"]["code"] == "location_exists"
    optional = register(client, catalogInfoUrl=url, optional=True)
    assert optional.status_code == 200
    assert optional.json()["output"]["entityRef"] == "component:default/users-api"


def test_the_same_idempotency_key_returns_the_first_run(client: TestClient, files: Path) -> None:
    url = write_yaml(files / "catalog-info.yaml", component("users-api")).as_uri()
    headers = {"Idempotency-Key": "register-users-api"}
    first = client.post(REGISTER, json={"input": {"catalogInfoUrl": url}}, headers=headers)
    second = client.post(REGISTER, json={"input": {"catalogInfoUrl": url}}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json()["id"] == first.json()["id"] and second.headers["Idempotent-Replayed"] == "true"


def test_repo_contents_url_and_catalog_info_path(client: TestClient, files: Path) -> None:
    write_yaml(files / "service" / "catalog.yaml", component("orders-api"))
    run = register(client, repoContentsUrl=(files / "service").as_uri(), catalogInfoPath="/catalog.yaml")
    assert run.json()["output"]["entityRef"] == "component:default/orders-api"
    assert run.json()["output"]["catalogInfoUrl"] == (files / "service" / "catalog.yaml").as_uri()


def test_input_needs_exactly_one_form(client: TestClient) -> None:
    for params in ({}, {"catalogInfoUrl": "file:///x", "repoContentsUrl": "file:///y"}):
        response = register(client, **params)
        assert response.status_code == 422, response.text


def test_the_component_not_named_generated_is_preferred(client: TestClient, files: Path) -> None:
    group = {"apiVersion": "backstage.io/v1alpha1", "kind": "Group", "metadata": {"name": "team-a"}}
    group["spec"] = {"type": "team", "children": []}
    url = write_yaml(files / "c.yaml", group, component("generated-abc"), component("real-one")).as_uri()
    assert register(client, catalogInfoUrl=url).json()["output"]["entityRef"] == "component:default/real-one"


def test_dry_run_validates_and_stores_nothing(client: TestClient, files: Path) -> None:
    url = write_yaml(files / "catalog-info.yaml", component("users-api")).as_uri()
    run = register(client, dry_run=True, catalogInfoUrl=url)
    assert run.status_code == 200 and run.json()["output"]["entityRef"] == "component:default/users-api"
    assert entity(client, "component:default/users-api").status_code == 404
    bad = write_yaml(files / "bad.yaml", component("Users API")).as_uri()
    failed = register(client, dry_run=True, catalogInfoUrl=bad)
    assert failed.status_code == 422
    assert failed.json()["error"]["fields"][0]["field"] == "metadata.name"


def test_one_invalid_entity_means_nothing_is_stored(client: TestClient, files: Path) -> None:
    broken = component("second")
    del broken["spec"]["owner"]
    url = write_yaml(files / "catalog-info.yaml", component("first"), broken).as_uri()
    run = register(client, catalogInfoUrl=url)
    assert run.status_code == 422
    error = run.json()["error"]
    assert error["fields"] == [{"field": "spec.owner", "message": "is required for a Component"}]
    assert "document 2 (Component second)" in error["message"]
    assert entity(client, "component:default/first").status_code == 404
    assert client.get("/api/catalog/locations").json() == []


def test_an_entity_claimed_by_another_location_is_409(client: TestClient, files: Path) -> None:
    one = write_yaml(files / "one.yaml", component("users-api")).as_uri()
    two = write_yaml(files / "two.yaml", component("users-api", lifecycle="experimental")).as_uri()
    assert register(client, catalogInfoUrl=one).status_code == 200
    clash = register(client, catalogInfoUrl=two)
    assert clash.status_code == 409 and "component:default/users-api" in clash.json()["error"]["message"]
    assert entity(client, "component:default/users-api").json()["spec"]["lifecycle"] == "production"


def test_invalid_yaml_is_a_clear_422(client: TestClient, files: Path) -> None:
    (files / "broken.yaml").write_text("kind: Component\nmetadata: {name: x\n")
    run = register(client, catalogInfoUrl=(files / "broken.yaml").as_uri())
    assert run.status_code == 422 and "not valid YAML" in run.json()["error"]["message"]


# -- where locations may be ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file:relative/catalog-info.yaml",
        "ftp://example.test/catalog-info.yaml",
        "https://internal.invalid/catalog-info.yaml",
        "http://169.254.169.254/latest/meta-data",
        # Parsers disagree on these about which host is meant; an allowed host must be unambiguous.
        "https://internal.invalid\\@example.test/catalog-info.yaml",
        "https://user:secret@example.test/catalog-info.yaml",
        "https://example.test%2F@internal.invalid/catalog-info.yaml",
    ],
)
def test_locations_outside_the_allow_lists_are_refused_before_a_run(client: TestClient, url: str) -> None:
    response = register(client, catalogInfoUrl=url)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == "catalogInfoUrl"
    assert "secret" not in response.text
    assert client.get("/v1/runs").json()["runs"] == []


def test_symlinks_and_the_data_dir_are_not_a_way_out(
    client: TestClient, files: Path, catalog_settings: Settings
) -> None:
    (files / "token.yaml").symlink_to(catalog_settings.storage.data_dir / "api-token")
    (files / "passwd.yaml").symlink_to("/etc/passwd")
    for name in ("token.yaml", "passwd.yaml"):
        assert register(client, catalogInfoUrl=(files / name).as_uri()).status_code == 422


def test_a_missing_file_is_a_clear_error(client: TestClient, files: Path) -> None:
    run = register(client, catalogInfoUrl=(files / "nope.yaml").as_uri())
    assert run.status_code == 404 and "does not exist" in run.json()["error"]["message"]


# -- substitutions -------------------------------------------------------------------


def api(name: str, definition: Any) -> dict[str, Any]:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "API",
        "metadata": {"name": name},
        "spec": {"type": "openapi", "lifecycle": "production", "owner": "team-a", "definition": definition},
    }


def test_text_json_and_yaml_substitutions(client: TestClient, files: Path) -> None:
    (files / "docs").mkdir()
    (files / "docs" / "openapi.json").write_text('{"openapi": "3.1.0"}')
    (files / "docs" / "extra.json").write_text('{"tier": "gold"}')
    (files / "docs" / "labels.yaml").write_text("team: a\n")
    service = component("users-api")
    service["metadata"]["annotations"] = {"$json": "./docs/extra.json"}
    service["metadata"]["labels"] = {"$yaml": "./docs/labels.yaml"}
    url = write_yaml(files / "catalog-info.yaml", api("users-api", {"$text": "./docs/openapi.json"}), service).as_uri()
    # An annotation must be a string: the $json object holds one, so it validates.
    assert register(client, catalogInfoUrl=url).status_code == 200
    assert entity(client, "api:default/users-api").json()["spec"]["definition"] == '{"openapi": "3.1.0"}'
    stored = entity(client, "component:default/users-api").json()["metadata"]
    assert stored["annotations"]["tier"] == "gold" and stored["labels"] == {"team": "a"}


@pytest.mark.parametrize(
    "reference", ["../outside.json", "/etc/passwd", "file:///etc/passwd", "../../../../etc/passwd"]
)
def test_a_substitution_may_not_leave_the_repository(
    client: TestClient, files: Path, tmp_path: Path, reference: str
) -> None:
    (tmp_path / "outside.json").write_text("secret")
    url = write_yaml(files / "catalog-info.yaml", api("users-api", {"$text": reference})).as_uri()
    run = register(client, catalogInfoUrl=url)
    assert run.status_code == 422
    assert run.json()["error"]["fields"][0]["field"] == "spec.definition"


def test_a_missing_substitution_names_the_field(client: TestClient, files: Path) -> None:
    url = write_yaml(files / "catalog-info.yaml", api("users-api", {"$text": "./missing.json"})).as_uri()
    run = register(client, catalogInfoUrl=url)
    assert run.status_code == 422 and run.json()["error"]["fields"][0]["field"] == "spec.definition"


# -- the embedded forge ----------------------------------------------------------------


def test_a_location_in_the_embedded_forge_is_read_from_the_bare_repository(
    client: TestClient, catalog_settings: Settings
) -> None:
    catalog_info = yaml.safe_dump_all(
        [component("users-api", providesApis=["users-api"]), api("users-api", {"$text": "./docs/openapi.json"})]
    )
    raw = forge_repository(
        catalog_settings, "team-a", "users-api", {"catalog-info.yaml": catalog_info, "docs/openapi.json": "{}"}
    )
    contents = raw.replace("/raw/", "/tree/")
    run = register(client, repoContentsUrl=contents)
    assert run.status_code == 200, run.text
    assert run.json()["output"]["catalogInfoUrl"] == f"{contents}/catalog-info.yaml"
    stored = entity(client, "component:default/users-api").json()
    assert stored["metadata"]["annotations"]["backstage.io/source-location"] == f"url:{contents}/"
    assert stored["metadata"]["annotations"]["backstage.io/view-url"] == f"{raw}/catalog-info.yaml"
    assert entity(client, "api:default/users-api").json()["spec"]["definition"] == "{}"


def test_forge_references_may_not_leave_their_repository(client: TestClient, catalog_settings: Settings) -> None:
    forge_repository(catalog_settings, "team-b", "secrets", {"secret.txt": "s3cret"})
    definition = {"$text": "../../../team-b/secrets/raw/main/secret.txt"}
    raw = forge_repository(
        catalog_settings, "team-a", "api", {"catalog-info.yaml": yaml.safe_dump(api("a", definition))}
    )
    run = register(client, catalogInfoUrl=f"{raw}/catalog-info.yaml")
    assert run.status_code == 422 and "outside its repository" in run.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "status", "code", "problem"),
    [
        ("../x/raw/main/catalog-info.yaml", 422, "invalid_input", "not a valid repository name"),
        ("team-a/users-api/raw/--help/catalog-info.yaml", 422, "invalid_input", "not a valid ref and path"),
        ("team-a/nope/raw/main/x.yaml", 404, "location_not_found", "no repository team-a/nope on this server's forge"),
    ],
    ids=["dot-dot-owner", "option-as-ref", "no-such-repository"],
)
def test_bad_forge_urls(
    client: TestClient, catalog_settings: Settings, path: str, status: int, code: str, problem: str
) -> None:
    url = f"{catalog_settings.server.base_url}/git/{path}"
    run = register(client, catalogInfoUrl=url)
    assert run.status_code == status, run.text
    error = run.json()["error"]
    assert error["code"] == code and error["status"] == status
    assert error["message"] == f"{url}: {problem}"
    if status == 422:
        # Refused before a run starts, naming the field.
        assert error["fields"] == [{"field": "catalogInfoUrl", "message": f"{url}: {problem}"}]
        assert client.get("/v1/runs").json()["runs"] == []
    else:
        assert run.json()["status"] == "failed"
    assert client.get("/api/catalog/locations").json() == []


def test_location_targets_and_globs_are_followed(client: TestClient, files: Path) -> None:
    write_yaml(files / "templates" / "one.yaml", component("one"))
    write_yaml(files / "templates" / "two.yaml", component("two"))
    location = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": "all"},
        "spec": {"targets": ["./templates/*.yaml", "./empty/*.yaml"]},
    }
    url = write_yaml(files / "all.yaml", location).as_uri()
    run = register(client, catalogInfoUrl=url)
    assert run.status_code == 200, run.text
    # As in Backstage, the entities the Location leads to count, so a Component among them is preferred.
    assert run.json()["output"]["entityRef"] == "component:default/one"
    assert entity(client, "component:default/two").status_code == 200


# -- http(s) --------------------------------------------------------------------------


@respx.mock
def test_http_locations_read_allowed_hosts_without_redirects(client: TestClient) -> None:
    base = "https://example.test/acme/users-api/raw/main"
    respx.get(f"{base}/catalog-info.yaml").mock(
        return_value=httpx.Response(200, text=yaml.safe_dump_all([api("users-api", {"$text": "./openapi.yaml"})]))
    )
    respx.get(f"{base}/openapi.yaml").mock(return_value=httpx.Response(200, text="openapi: 3.1.0\n"))
    respx.get(f"{base}/moved.yaml").mock(
        return_value=httpx.Response(302, headers={"Location": "http://169.254.169.254/"})
    )
    assert register(client, catalogInfoUrl=f"{base}/catalog-info.yaml").status_code == 200
    assert entity(client, "api:default/users-api").json()["spec"]["definition"] == "openapi: 3.1.0\n"
    moved = register(client, catalogInfoUrl=f"{base}/moved.yaml")
    assert moved.status_code == 502 and "302" in moved.json()["error"]["message"]


# -- the read API --------------------------------------------------------------------


@pytest.fixture
def populated(client: TestClient, files: Path) -> TestClient:
    group = {"apiVersion": "backstage.io/v1alpha1", "kind": "Group", "metadata": {"name": "team-a"}}
    group["spec"] = {"type": "team", "children": []}
    docs = [group]
    for n in range(7):
        service = component(f"svc-{n}", system="shop" if n % 2 else "billing")
        service["metadata"]["tags"] = ["python"] if n < 3 else ["go"]
        docs.append(service)
    docs.append(api("shop-api", "openapi: 3.1.0"))
    url = write_yaml(files / "catalog-info.yaml", *docs).as_uri()
    assert register(client, catalogInfoUrl=url).status_code == 200
    return client


def query(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/catalog/entities/by-query", params=params, headers=ANONYMOUS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def names(page: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in page["items"]]


def test_by_query_filters(populated: TestClient) -> None:
    assert query(populated, filter="kind=API")["totalItems"] == 1
    assert query(populated, filter="kind=component,metadata.tags=python")["totalItems"] == 3
    assert query(populated, filter="relations.partOf=system:default/shop")["totalItems"] == 3
    # One key twice in a filter: either value. Two filters: either filter.
    assert query(populated, filter="metadata.name=svc-1,metadata.name=svc-2")["totalItems"] == 2
    assert query(populated, filter=["kind=group", "kind=api"])["totalItems"] == 2
    assert query(populated, filter="spec.definition")["totalItems"] == 1  # exists
    assert query(populated, filter="relations.ownerOf")["totalItems"] == 1


def test_by_query_fields_order_and_cursor(populated: TestClient) -> None:
    page = query(
        populated, filter="kind=component", fields="metadata.name,kind", limit=3, orderField="metadata.name,desc"
    )
    assert page["items"][0] == {"metadata": {"name": "svc-6"}, "kind": "Component"}
    assert page["totalItems"] == 7 and "prevCursor" not in page["pageInfo"]
    seen = names(page)
    while "nextCursor" in page["pageInfo"]:
        page = query(populated, cursor=page["pageInfo"]["nextCursor"], limit=3, fields="metadata.name")
        seen += names(page)
    assert seen == [f"svc-{n}" for n in range(6, -1, -1)]
    assert "prevCursor" in page["pageInfo"]


def test_by_query_bad_parameters_are_422(populated: TestClient) -> None:
    for params in ({"cursor": "not-a-cursor"}, {"orderField": "metadata.name,sideways"}, {"limit": 100000}):
        response = populated.get("/api/catalog/entities/by-query", params=params)
        assert response.status_code == 422 and "error" in response.json(), params


def test_by_name_is_case_insensitive_and_404s(populated: TestClient) -> None:
    assert populated.get("/api/catalog/entities/by-name/Component/default/SVC-1").status_code == 200
    missing = populated.get("/api/catalog/entities/by-name/component/default/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_entity_facets(populated: TestClient) -> None:
    facets = populated.get("/api/catalog/entity-facets", params={"facet": ["kind", "metadata.tags"]}).json()["facets"]
    assert {"value": "Component", "count": 7} in facets["kind"]
    assert {"value": "go", "count": 4} in facets["metadata.tags"]


# -- locations and refresh ---------------------------------------------------------------


def test_locations_api_with_dry_run(client: TestClient, files: Path) -> None:
    url = write_yaml(files / "catalog-info.yaml", component("users-api")).as_uri()
    body = {"type": "url", "target": url}
    dry = client.post("/api/catalog/locations?dryRun=true", json=body)
    assert dry.status_code == 201 and dry.json()["exists"] is False
    assert [e["metadata"]["name"] for e in dry.json()["entities"]] == ["users-api"]
    assert client.get("/api/catalog/locations").json() == []
    created = client.post("/api/catalog/locations", json=body)
    assert created.status_code == 201
    location = created.json()["location"]
    assert location["type"] == "file" and location["target"] == url
    assert client.post("/api/catalog/locations", json=body).status_code == 409
    assert client.post("/api/catalog/locations?dryRun=true", json=body).json()["exists"] is True
    assert client.get("/api/catalog/locations").json() == [{"data": location}]
    assert client.get(f"/api/catalog/locations/{location['id']}").json() == location
    assert client.delete(f"/api/catalog/locations/{location['id']}").status_code == 204
    assert entity(client, "component:default/users-api").status_code == 404
    as_path = client.post("/api/catalog/locations", json={"type": "file", "target": str(files / "catalog-info.yaml")})
    assert as_path.status_code == 201


def test_refresh_rereads_the_location_and_keeps_uids(client: TestClient, files: Path) -> None:
    path = write_yaml(files / "catalog-info.yaml", component("users-api"), component("old-one"))
    assert register(client, catalogInfoUrl=path.as_uri()).status_code == 200
    uid = entity(client, "component:default/users-api").json()["metadata"]["uid"]
    write_yaml(path, component("users-api", lifecycle="deprecated"), component("new-one"))
    assert client.post("/api/catalog/refresh", json={"entityRef": "component:default/users-api"}).status_code == 200
    refreshed = entity(client, "component:default/users-api").json()
    assert refreshed["spec"]["lifecycle"] == "deprecated" and refreshed["metadata"]["uid"] == uid
    assert entity(client, "component:default/old-one").status_code == 404
    assert entity(client, "component:default/new-one").status_code == 200
    # A broken file on refresh changes nothing.
    path.write_text("kind: [")
    assert client.post("/api/catalog/refresh", json={"entityRef": "component:default/users-api"}).status_code == 422
    assert entity(client, "component:default/users-api").json()["spec"]["lifecycle"] == "deprecated"
    assert client.post("/api/catalog/refresh", json={"entityRef": "component:default/nope"}).status_code == 404


# -- who may do what ---------------------------------------------------------------------


def test_reads_are_open_and_writes_need_a_token(client: TestClient, files: Path) -> None:
    url = write_yaml(files / "catalog-info.yaml", component("users-api")).as_uri()
    anonymous = client.post("/api/catalog/locations", json={"type": "url", "target": url}, headers=ANONYMOUS)
    assert anonymous.status_code == 401
    assert (
        client.post("/api/catalog/refresh", json={"entityRef": "component:default/x"}, headers=ANONYMOUS).status_code
        == 401
    )
    assert client.get("/api/catalog/entities/by-query", headers=ANONYMOUS).status_code == 200
    assert client.get("/catalog", headers=ANONYMOUS).status_code == 200


def test_a_token_not_allowed_catalog_register_is_403(tmp_path: Path, files: Path) -> None:
    token_file = tmp_path / "tokens.yaml"
    entries = [{"name": "renderer", "sha256": hash_token("render-only-token"), "actions": ["cookiecutter:*"]}]
    token_file.write_text(yaml.safe_dump({"tokens": entries}))
    settings = make_settings(tmp_path, api_token=None, token_file=token_file, catalog_file_roots=[files])
    url = write_yaml(files / "catalog-info.yaml", component("users-api")).as_uri()
    with TestClient(create_app(settings), headers={"Authorization": "Bearer render-only-token"}) as client:
        assert client.post("/api/catalog/locations", json={"type": "url", "target": url}).status_code == 403


def test_reads_can_be_closed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, catalog_public_reads=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/catalog/entities/by-query").status_code == 401
        assert client.get("/catalog").status_code == 401
        authed = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/catalog/entities/by-query", headers=authed).status_code == 200


# -- pages --------------------------------------------------------------------------------


def links(html: str) -> dict[str, str]:
    return {text: href for href, text in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html)}


def test_list_page_filters(populated: TestClient) -> None:
    everything = populated.get("/catalog", headers=ANONYMOUS)
    assert everything.status_code == 200 and "9 entities" in everything.text
    assert 'name="viewport"' in everything.text and "<script" not in everything.text
    shop = populated.get("/catalog", params={"kind": "component", "system": "shop", "tag": "go"}).text
    assert set(re.findall(r">(svc-\d)<", shop)) == {"svc-3", "svc-5"}
    owned = populated.get("/catalog", params={"owner": "team-a", "kind": "api"}).text
    assert re.findall(r">(shop-api|svc-\d)<", owned) == ["shop-api"]
    ignored = populated.get("/catalog", params={"owner": "a,b"}).text
    assert "Ignored filters" in ignored


def test_entity_page_shows_owner_repository_api_and_template(client: TestClient, catalog_settings: Settings) -> None:
    service = component("users-api", system="shop", providesApis=["users-api"])
    service["metadata"]["annotations"] = {
        "backstage.io/source-template": "template:default/python-service@1.2.0",
        "github.com/project-slug": "acme/users-api",
        "argocd/app-name": "users-api",
        "pltf.dev/preview-url": "https://users-api.preview.example.com",
        "example.com/sneaky": "javascript:alert(1)",
    }
    service["metadata"]["description"] = "<script>alert('x')</script>"
    raw = forge_repository(
        catalog_settings,
        "team-a",
        "users-api",
        {"catalog-info.yaml": yaml.safe_dump_all([service, api("users-api", "x")])},
    )
    assert register(client, catalogInfoUrl=f"{raw}/catalog-info.yaml").status_code == 200
    page = client.get("/catalog/default/component/users-api", headers=ANONYMOUS)
    assert page.status_code == 200
    found = links(page.text)
    assert found["group:default/team-a"] == "/catalog/default/group/team-a"
    assert found["api:default/users-api"] == "/catalog/default/api/users-api"
    assert found["template:default/python-service"] == "/catalog/default/template/python-service"
    assert found["Repository"] == f"{catalog_settings.server.base_url}/git/team-a/users-api"
    assert found["GitHub"] == "https://github.com/acme/users-api"
    assert found["Preview"] == "https://users-api.preview.example.com"
    assert "version 1.2.0" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert 'href="javascript:' not in page.text
    assert client.get("/catalog/default/component/nope").status_code == 404


def test_argo_cd_link_when_configured(tmp_path: Path, files: Path) -> None:
    from actions_server.catalog.pages import entity_links

    settings = make_settings(tmp_path, catalog_argocd_url="https://argocd.example.com/")
    found = entity_links({"metadata": {"annotations": {"argocd/app-name": "users-api"}}}, settings)
    assert found == [{"title": "Argo CD", "url": "https://argocd.example.com/applications/users-api"}]


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_register_query_and_refresh_on_postgresql(tmp_path: Path, files: Path, postgres_url: str) -> None:
    settings = make_settings(tmp_path, database_url=postgres_url, catalog_file_roots=[files], log_level="error")
    path = write_yaml(files / "catalog-info.yaml", component("users-api", system="shop"), component("orders-api"))
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert register(client, catalogInfoUrl=path.as_uri()).status_code == 200
        assert register(client, catalogInfoUrl=path.as_uri()).status_code == 409
        page = query(client, filter="relations.partOf=system:default/shop", orderField="metadata.name,desc")
        assert names(page) == ["users-api"]
        write_yaml(path, component("users-api", lifecycle="deprecated"))
        assert client.post("/api/catalog/refresh", json={"entityRef": "component:default/users-api"}).status_code == 200
        assert entity(client, "component:default/orders-api").status_code == 404
        assert entity(client, "component:default/users-api").json()["spec"]["lifecycle"] == "deprecated"


# -- the golden path's catalog step ------------------------------------------------------------


def test_a_rendered_and_published_service_registers_and_browses(tmp_path: Path) -> None:
    """render → repo:create → catalog:register, with the real python-service template and embedded forge."""
    settings = make_settings(tmp_path, templates_dir=PROJECT_ROOT / "cookiecutters", log_level="error")
    values = {"name": "users-api", "owner": "group:default/platform-team", "system": "pltf"}
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        need(client.get("/v1/actions/repo:create").status_code == 200, "the repo:create action")
        rendered = client.post(
            "/v1/actions/cookiecutter:render/runs", json={"input": {"template": "python-service", "values": values}}
        )
        workspace = rendered.json()["output"]["workspaceId"]
        published = client.post(
            "/v1/actions/repo:create/runs",
            json={"input": {"workspaceId": workspace, "owner": "platform-team", "name": "users-api"}},
        )
        assert published.status_code == 200, published.text
        run = register(client, repoContentsUrl=published.json()["output"]["repoContentsUrl"])
        assert run.status_code == 200, run.text
        assert run.json()["output"]["entityRef"] == "component:default/users-api"
        found = entity(client, "component:default/users-api").json()
        assert {"type": "providesApi", "targetRef": "api:default/users-api"} in found["relations"]
        page = links(client.get("/catalog/default/component/users-api").text)
        assert page["group:default/platform-team"] == "/catalog/default/group/platform-team"
        assert page["Repository"] == f"{settings.server.base_url}/git/platform-team/users-api"
        assert page["api:default/users-api"] == "/catalog/default/api/users-api"
        api_definition = entity(client, "api:default/users-api").json()["spec"]["definition"]
        assert api_definition.lstrip().startswith("{")


def test_the_stored_list_page_follows_registers_and_refreshes(client: TestClient, files: Path) -> None:
    """/catalog is kept between views; a register or a refresh that changes an entity shows on the next view."""
    assert "users-api" not in client.get("/catalog").text
    path = write_yaml(files / "catalog-info.yaml", component("users-api"))
    assert register(client, catalogInfoUrl=path.as_uri()).status_code == 200
    page = client.get("/catalog")
    assert "users-api" in page.text and "Serves users" not in page.text
    described = component("users-api")
    described["metadata"]["description"] = "Serves users"
    write_yaml(path, described)
    assert client.post("/api/catalog/refresh", json={"entityRef": "component:default/users-api"}).status_code == 200
    again = client.get("/catalog")
    assert "Serves users" in again.text and again.headers["etag"] != page.headers["etag"]
