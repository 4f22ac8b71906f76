"""pltf as plugin `pltf` of Backstage's actions registry: the listing, invoking, and Backstage's plugin tokens.

The tokens are made here exactly as `@backstage/backend-defaults` 0.19 makes them (ES256, header
`typ: vnd.backstage.plugin` and `kid`; claims sub, aud, iat, exp and `obo`, a limited user token),
and their keys are published over real HTTP at the paths Backstage publishes them. The end-to-end
test (tests/e2e) does the same against a real Backstage backend.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from actions_server.app import create_app
from conftest import TOKEN, make_settings

LIST = "/.backstage/actions/v1/actions"


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """A Backstage's signing keys, published over HTTP at the paths Backstage uses."""

    def __init__(self) -> None:
        self.plugin = ec.generate_private_key(ec.SECP256R1())
        self.auth = ec.generate_private_key(ec.SECP256R1())
        self.published: dict[str, list[dict[str, Any]]] = {
            "/api/scaffolder/.backstage/auth/v1/jwks.json": [self.jwk(self.plugin, "plugin-key")],
            "/api/auth/.well-known/jwks.json": [self.jwk(self.auth, "auth-key")],
        }

    @staticmethod
    def jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        return {**public, "kid": kid, "alg": "ES256", "use": "sig"}

    def plugin_token(self, obo: str | None = None, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"sub": "scaffolder", "aud": "pltf", "iat": now, "exp": now + 3600}
        if obo is not None:
            payload["obo"] = obo
        payload.update(claims)
        headers = {"typ": "vnd.backstage.plugin", "kid": "plugin-key"}
        return jwt.encode(payload, key or self.plugin, algorithm="ES256", headers=headers)

    def hmac_token_keyed_with_public_key(self) -> str:
        """The classic confusion: a symmetric signature whose key is the published public key."""
        now = int(time.time())
        parts = [
            {"typ": "vnd.backstage.plugin", "kid": "plugin-key", "alg": "HS256"},
            {"sub": "scaffolder", "aud": "pltf", "iat": now, "exp": now + 3600},
        ]
        signed = ".".join(base64url(json.dumps(part).encode()) for part in parts)
        public = self.plugin.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        return f"{signed}.{base64url(hmac.new(public, signed.encode(), hashlib.sha256).digest())}"

    def user_token(self, user: str) -> str:
        now = int(time.time())
        headers = {"typ": "vnd.backstage.limited-user", "kid": "auth-key"}
        return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, self.auth, algorithm="ES256", headers=headers)


@pytest.fixture
def keys() -> Iterator[tuple[Keys, str]]:
    published = Keys()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            found = published.published.get(self.path)
            body = json.dumps({"keys": found}).encode() if found is not None else b"{}"
            self.send_response(200 if found is not None else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield published, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(tmp_path: Path, keys: tuple[Keys, str]) -> Iterator[TestClient]:
    files = tmp_path / "catalog"
    files.mkdir()
    settings = make_settings(tmp_path, backstage_auth_url=keys[1], catalog_file_roots=[files], log_level="error")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(TOKEN)


def invoke(client: TestClient, action: str, body: Any, token: str, version: str = "v1") -> Any:
    return client.post(f"/.backstage/actions/{version}/actions/{action}/invoke", json=body, headers=bearer(token))


def assert_backstage_error(response: Any, status: int, name: str) -> str:
    body = response.json()
    assert response.status_code == status, response.text
    assert body["error"]["name"] == name and body["response"] == {"statusCode": status}, body
    assert body["request"]["method"] in ("GET", "POST")
    return str(body["error"]["message"])


def test_every_action_is_listed_in_the_registrys_shape_with_honest_attributes(client: TestClient) -> None:
    listed = client.get(LIST, headers=ADMIN)
    assert listed.status_code == 200, listed.text
    ours = {action["id"]: action for action in client.get("/v1/actions", headers=ADMIN).json()["actions"]}
    registry = {action["id"]: action for action in listed.json()["actions"]}
    assert set(registry) == {f"pltf:{action_id}" for action_id in ours}
    render = registry["pltf:cookiecutter:render"]
    assert render["pluginId"] == "pltf" and render["name"] == "cookiecutter:render"
    assert render["schema"] == ours["cookiecutter:render"]["schema"]
    assert render["examples"][0]["input"]["template"] == "python-service"
    assert registry["pltf:service:policies"]["attributes"] == {
        "readOnly": True,
        "destructive": False,
        "idempotent": True,
    }
    assert registry["pltf:service:create"]["attributes"]["readOnly"] is False
    assert registry["pltf:preview:destroy"]["attributes"] == {
        "readOnly": False,
        "destructive": True,
        "idempotent": False,
    }


def test_a_backstage_plugin_token_runs_an_action_to_its_end(client: TestClient, keys: tuple[Keys, str]) -> None:
    token = keys[0].plugin_token()
    assert client.get(LIST, headers=bearer(token)).status_code == 200
    answer = invoke(client, "pltf:cookiecutter:render", {"template": "demo", "values": {"name": "users-api"}}, token)
    assert answer.status_code == 200, answer.text
    output = answer.json()["output"]
    assert output["directory"] == "users-api" and "README.md" in output["files"] and output["workspaceId"]
    runs = client.get("/v1/runs", headers=ADMIN).json()["runs"]
    assert [(run["action"], run["status"], run["caller"]) for run in runs] == [
        ("cookiecutter:render", "succeeded", "backstage:plugin:scaffolder")
    ]


def test_v2_takes_input_and_secrets(client: TestClient, keys: tuple[Keys, str]) -> None:
    body = {"input": {"template": "demo", "values": {"name": "orders-api"}}, "secrets": {"extra": "s3cret-value"}}
    answer = invoke(client, "pltf:cookiecutter:render", body, keys[0].plugin_token(), version="v2")
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["directory"] == "orders-api"
    assert "s3cret-value" not in json.dumps(client.get("/v1/runs", headers=ADMIN).json())


def test_invalid_input_is_an_input_error_naming_the_field_and_starts_nothing(
    client: TestClient, keys: tuple[Keys, str]
) -> None:
    answer = invoke(
        client, "pltf:service:create", {"name": "Not_A_Name", "owner": "group:default/a"}, keys[0].plugin_token()
    )
    message = assert_backstage_error(answer, 422, "InputError")
    assert "input.name" in message
    assert client.get("/v1/runs", headers=ADMIN).json()["runs"] == []


def test_a_failed_run_answers_with_its_status_and_message(client: TestClient, keys: tuple[Keys, str]) -> None:
    answer = invoke(client, "pltf:cookiecutter:render", {"template": "no-such-template"}, keys[0].plugin_token())
    message = assert_backstage_error(answer, 422, "InputError")
    assert "no-such-template" in message


def test_unknown_and_foreign_action_ids_are_not_found(client: TestClient, keys: tuple[Keys, str]) -> None:
    token = keys[0].plugin_token()
    assert_backstage_error(invoke(client, "pltf:no:such", {}, token), 404, "NotFoundError")
    assert_backstage_error(invoke(client, "catalog:register", {}, token), 404, "NotFoundError")


def test_backstage_tokens_run_only_the_actions_pltf_allows_them(client: TestClient, keys: tuple[Keys, str]) -> None:
    # PLTF_BACKSTAGE_ACTIONS defaults to service:* and cookiecutter:*.
    answer = invoke(client, "pltf:preview:destroy", {"previewId": "x"}, keys[0].plugin_token())
    assert "may not run preview:destroy" in assert_backstage_error(answer, 403, "NotAllowedError")


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda k: k.plugin_token(key=ec.generate_private_key(ec.SECP256R1())), id="another key"),
        pytest.param(lambda k: k.plugin_token(aud="catalog"), id="for another plugin"),
        pytest.param(lambda k: k.plugin_token(exp=int(time.time()) - 60), id="expired"),
        pytest.param(lambda k: k.plugin_token(sub="../../evil"), id="a path as plugin"),
        pytest.param(lambda k: k.plugin_token(sub="catalog"), id="a plugin that publishes no keys"),
        pytest.param(lambda k: k.hmac_token_keyed_with_public_key(), id="HS256 keyed with the public key"),
        pytest.param(lambda k: k.plugin_token(obo="not-a-token"), id="obo is no token"),
        pytest.param(
            lambda k: k.plugin_token(
                obo=jwt.encode(
                    {"sub": "user:default/mallory", "iat": 1, "exp": 2**40},
                    ec.generate_private_key(ec.SECP256R1()),
                    algorithm="ES256",
                    headers={"typ": "vnd.backstage.limited-user", "kid": "auth-key"},
                )
            ),
            id="obo signed by another key",
        ),
        pytest.param(lambda k: "not-a-token", id="garbage"),
    ],
)
def test_tokens_that_do_not_verify_are_refused(client: TestClient, keys: tuple[Keys, str], forge: Any) -> None:
    token = forge(keys[0])
    assert_backstage_error(client.get(LIST, headers=bearer(token)), 401, "AuthenticationError")
    answer = invoke(client, "pltf:cookiecutter:render", {"template": "demo"}, token)
    assert_backstage_error(answer, 401, "AuthenticationError")
    assert client.get("/v1/runs", headers=ADMIN).json()["runs"] == []


def test_no_token_is_refused(client: TestClient) -> None:
    assert_backstage_error(client.get(LIST), 401, "AuthenticationError")


def test_backstage_tokens_are_refused_when_no_backstage_is_configured(tmp_path: Path, keys: tuple[Keys, str]) -> None:
    with TestClient(create_app(make_settings(tmp_path, log_level="error"))) as plain:
        assert_backstage_error(plain.get(LIST, headers=bearer(keys[0].plugin_token())), 401, "AuthenticationError")


def register_people(client: TestClient, root: Path) -> None:
    documents = [
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": "payments"},
            "spec": {"type": "team", "children": []},
        },
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "User",
            "metadata": {"name": "jane"},
            "spec": {"memberOf": ["payments"]},
        },
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "User",
            "metadata": {"name": "loner"},
            "spec": {"memberOf": []},
        },
    ]
    path = root / "catalog" / "people.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    registered = client.post(
        "/v1/actions/catalog:register/runs", json={"input": {"catalogInfoUrl": path.as_uri()}}, headers=ADMIN
    )
    assert registered.status_code == 200, registered.text


def test_a_token_on_behalf_of_a_user_acts_for_their_team(
    client: TestClient, keys: tuple[Keys, str], tmp_path: Path
) -> None:
    register_people(client, tmp_path)
    token = keys[0].plugin_token(obo=keys[0].user_token("user:default/jane"))
    answer = invoke(client, "pltf:cookiecutter:render", {"template": "demo", "values": {"name": "jane-api"}}, token)
    assert answer.status_code == 200, answer.text
    run = next(
        run for run in client.get("/v1/runs", headers=ADMIN).json()["runs"] if run["action"] == "cookiecutter:render"
    )
    assert run["caller"] == "backstage:user:default/jane" and run["team"] == "group:default/payments"
    # The workspace is the team's: the team's own runs see it, another caller's do not.
    workspace = answer.json()["output"]["workspaceId"]
    assert client.get(f"/v1/workspaces/{workspace}", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("user", ["user:default/loner", "user:default/nobody"])
def test_a_user_in_no_group_of_the_catalog_is_refused(
    client: TestClient, keys: tuple[Keys, str], tmp_path: Path, user: str
) -> None:
    register_people(client, tmp_path)
    token = keys[0].plugin_token(obo=keys[0].user_token(user))
    message = assert_backstage_error(
        invoke(client, "pltf:cookiecutter:render", {"template": "demo"}, token), 403, "NotAllowedError"
    )
    assert user in message and "no group" in message


def test_pltf_serves_an_empty_key_set_as_a_plugin_that_issues_no_tokens(client: TestClient) -> None:
    # Backstage fetches it before it trusts tokens from a plugin; pltf signs nothing.
    assert client.get("/.backstage/auth/v1/jwks.json").json() == {"keys": []}
