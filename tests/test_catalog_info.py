"""The platform's own catalog-info/: current with the server, and valid for us and for Backstage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actions_server.app import create_app
from actions_server.catalog.embedded import EmbeddedCatalog
from actions_server.config import PROJECT_ROOT
from actions_server.db import connect
from conftest import make_settings

CATALOG_INFO = PROJECT_ROOT / "catalog-info"
VALIDATORS = PROJECT_ROOT / "tools" / "validators"


def test_the_api_definition_is_the_running_servers_openapi_document(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, log_level="error"))) as client:
        served = client.get("/openapi.json").json()
    exported = json.loads((CATALOG_INFO / "openapi.json").read_text())
    assert exported == served, "catalog-info/openapi.json is stale: run `pltf openapi -o catalog-info/openapi.json`"


def test_our_validator_accepts_every_entity_and_resolves_the_definition(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.storage.data_dir.mkdir(parents=True)
    catalog = EmbeddedCatalog(settings, connect(settings.storage.resolved_database_url))
    entities = catalog.read_location((CATALOG_INFO / "catalog-info.yaml").as_uri())
    refs = {f"{e['kind']}:{e['metadata']['name']}" for e in entities}
    assert {
        "Group:platform-team",
        "System:pltf",
        "System:platform",
        "Component:pltf-actions-server",
        "API:pltf-actions-api",
        "Location:pltf-backstage-templates",
    } <= refs
    api = next(e for e in entities if e["kind"] == "API")
    assert json.loads(api["spec"]["definition"])["info"]["title"] == "pltf action server"
    catalog.close()


def test_backstages_validator_accepts_every_entity() -> None:
    node = shutil.which("node")
    if node is None or not (VALIDATORS / "node_modules" / "@backstage" / "catalog-model").is_dir():
        message = "node and tools/validators/node_modules are needed (run .ci/install-validators)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [node, str(VALIDATORS / "validate-catalog.js"), str(CATALOG_INFO / "catalog-info.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    results = json.loads(done.stdout)
    assert [r for r in results if not r["ok"]] == []
    assert len(results) == 6  # group, two systems, component, API, location
