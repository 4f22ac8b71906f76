"""Every example in the action listing runs, against the real templates in cookiecutters/."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from actions_server.action import Action
from actions_server.app import create_app
from actions_server.config import PROJECT_ROOT
from actions_server.services import Services, built_in_actions
from conftest import TOKEN, make_settings

# An example can take an earlier step's output, as a Backstage template does:
# `${{ steps['cookiecutter:render'].output.workspaceId }}`. Here the step id is
# an action id, and the test runs that action's first example to get the value.
STEP_OUTPUT = re.compile(r"^\$\{\{\s*steps\['([^']+)'\]\.output\.(\w+)\s*\}\}$")


def listed_actions() -> dict[str, Action[Any, Any]]:
    """The built-in actions, made from the parts of a throwaway data dir: only their examples are read here."""
    with tempfile.TemporaryDirectory() as data:
        parts = Services.create(make_settings(Path(data), templates_dir=PROJECT_ROOT / "cookiecutters"))
        try:
            return built_in_actions(parts)
        finally:
            parts.close()


ACTIONS = listed_actions()
EXAMPLES = [
    pytest.param(action.id, n, example, id=f"{action.id}-{n}")
    for action in ACTIONS.values()
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
        f"/v1/actions/{action_id}/runs",
        json={"input": with_step_outputs(real_client, step["input"]), "dryRun": example.dry_run},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"


def with_step_outputs(client: TestClient, value: Any) -> Any:
    """The example's input with each `${{ steps['ACTION'].output.KEY }}` replaced by a real run's output."""
    if isinstance(value, dict):
        return {key: with_step_outputs(client, item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_step_outputs(client, item) for item in value]
    match = STEP_OUTPUT.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    action_id, key = match.groups()
    first = next(example for example in ACTIONS[action_id].examples if not example.dry_run)
    # That example may take an earlier step's output in turn (template:update ← repo:create ← cookiecutter:render).
    response = client.post(f"/v1/actions/{action_id}/runs", json={"input": with_step_outputs(client, first.input)})
    assert response.status_code == 200, response.text
    return response.json()["output"][key]
