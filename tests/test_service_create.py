"""`service:create` and `pltf create service`: the golden path as one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actions_server.names import dns_name, is_dns_label, owner_slug
from conftest import pltf

CREATE = "/v1/actions/service:create/runs"


@pytest.mark.parametrize(
    ("words", "name"),
    [(["users", "api"], "users-api"), (["Users", "API"], "users-api"), (["billing_v2", "--x"], "billing-v2-x")],
)
def test_words_join_into_a_dns_name(words: list[str], name: str) -> None:
    assert dns_name(words) == name and is_dns_label(name)


def test_owner_slug() -> None:
    assert owner_slug("group:default/platform-team") == "platform-team"
    assert owner_slug("growth") == "growth"


def test_dry_run_renders_through_the_render_step(client: TestClient) -> None:
    body = {"input": {"name": "users-api", "owner": "group:default/team-a", "template": "demo"}, "dryRun": True}
    run = client.post(CREATE, json=body).json()
    assert run["status"] == "succeeded", run
    steps = {line.get("step") for line in run["log"]}
    assert "render" in steps
    assert run["output"]["name"] == "users-api"


def test_bad_names_and_values_are_422_before_anything_runs(client: TestClient) -> None:
    bad_name = client.post(
        CREATE, json={"input": {"name": "Users API", "owner": "group:default/a", "template": "demo"}}
    )
    assert bad_name.status_code == 422 and bad_name.json()["error"]["fields"][0]["field"] == "input.name"
    bad_owner = client.post(CREATE, json={"input": {"name": "users", "owner": "not a ref!", "template": "demo"}})
    assert bad_owner.status_code == 422 and bad_owner.json()["error"]["fields"][0]["field"] == "input.owner"
    bad_value = client.post(
        CREATE,
        json={"input": {"name": "users", "owner": "group:default/a", "template": "demo", "values": {"port": "x"}}},
    )
    assert bad_value.status_code == 422 and bad_value.json()["error"]["fields"][0]["field"] == "values.port"
    assert client.get("/v1/runs").json()["runs"] == []


def test_cli_create_service_dry_run(tmp_path: Path) -> None:
    env = {"PLTF_DATA_DIR": str(tmp_path / "data")}
    result = pltf("create", "service", "users", "api", "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["input"]["name"] == "users-api"
    bad = pltf("create", "service", "!!!", env=env, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("pltf: error:") and len(bad.stderr.splitlines()) == 1
