"""Every example in the action listing runs, against the real templates in cookiecutters/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from actions_server.actions import discover
from actions_server.app import create_app
from actions_server.config import PROJECT_ROOT
from conftest import TOKEN, make_settings

EXAMPLES = [
    pytest.param(action.id, n, example, id=f"{action.id}-{n}")
    for action in discover().values()
    for n, example in enumerate(action.examples)
]


@pytest.fixture
def real_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, templates_dir=PROJECT_ROOT / "cookiecutters")
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.mark.parametrize(("action_id", "index", "example"), EXAMPLES)
def test_listed_example_runs(real_client: TestClient, action_id: str, index: int, example: Any) -> None:
    listed = real_client.get(f"/v1/actions/{action_id}").json()["actions"][0]["examples"][index]
    assert listed["description"] == example.description
    (step,) = yaml.safe_load(listed["example"])["steps"]
    response = real_client.post(
        f"/v1/actions/{action_id}/runs", json={"input": step["input"], "dryRun": example.dry_run}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
