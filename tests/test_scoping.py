"""Runs and workspaces belong to the team of the token that made them (issue 12, finding 5).

Two real team tokens from a token file, against the HTTP API: another team's run
or workspace answers exactly as a missing one does (404), an admin token sees
everything, and cancelling takes the right to run the run's action.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from actions_server.app import create_app
from actions_server.auth import hash_token
from conftest import TOKEN, create_previous_release_tables, make_settings

RENDER = "/v1/actions/cookiecutter:render/runs"
PUBLISH = "/v1/actions/repo:create/runs"
TEAM_A = "group:default/team-a"
TEAM_B = "group:default/team-b"
TOKENS = {
    # name: (token, actions, team)
    "a-render": ("team-a-render-token", ["cookiecutter:render"], TEAM_A),
    "a-publish": ("team-a-publish-token", ["cookiecutter:render", "repo:create"], TEAM_A),
    "b-ci": ("team-b-ci-token", ["cookiecutter:*", "repo:create"], TEAM_B),
    "b-other": ("team-b-other-token", ["cookiecutter:render"], TEAM_B),
    "loner": ("no-team-token", ["cookiecutter:*"], None),
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0] if name in TOKENS else TOKEN}"}


def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    entries = [
        {"name": name, "sha256": hash_token(token), "actions": actions, **({"team": team} if team else {})}
        for name, (token, actions, team) in TOKENS.items()
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # PLTF_API_TOKEN (TOKEN) is the admin: every action, no team.
    settings = make_settings(tmp_path, token_file=token_file(tmp_path))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def render(client: TestClient, who: str, name: str = "users-api") -> dict[str, Any]:
    response = client.post(RENDER, json={"input": {"template": "demo", "values": {"name": name}}}, headers=bearer(who))
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_ids(client: TestClient, who: str) -> set[str]:
    response = client.get("/v1/runs", headers=bearer(who))
    assert response.status_code == 200
    return {run["id"] for run in response.json()["runs"]}


def assert_missing(response: Any) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_a_team_sees_only_its_own_runs_and_workspaces(client: TestClient) -> None:
    mine = render(client, "a-render")
    theirs = render(client, "b-ci")
    workspace = theirs["output"]["workspaceId"]
    assert mine["team"] == TEAM_A and theirs["team"] == TEAM_B

    assert run_ids(client, "a-render") == {mine["id"]}
    for path in (f"/v1/runs/{theirs['id']}", f"/v1/runs/{theirs['id']}/events"):
        assert_missing(client.get(path, headers=bearer("a-render")))
    assert_missing(client.post(f"/v1/runs/{theirs['id']}/cancel", headers=bearer("a-render")))
    assert_missing(client.get(f"/v1/workspaces/{workspace}", headers=bearer("a-render")))
    assert_missing(client.get(f"/v1/workspaces/{workspace}/archive", headers=bearer("a-render")))
    # The answer for another team's run is the answer for no run at all: it confirms nothing.
    absent = str(uuid.uuid4())
    hidden = client.get(f"/v1/runs/{theirs['id']}", headers=bearer("a-render")).json()
    missing = client.get(f"/v1/runs/{absent}", headers=bearer("a-render")).json()
    assert str(hidden).replace(theirs["id"], "ID") == str(missing).replace(absent, "ID")

    # Every token of team B sees team B's runs, logs and workspaces.
    assert run_ids(client, "b-other") == {theirs["id"]}
    shown = client.get(f"/v1/runs/{theirs['id']}", headers=bearer("b-other"))
    assert shown.status_code == 200 and shown.json()["log"]
    events = client.get(f"/v1/runs/{theirs['id']}/events", headers=bearer("b-other"))
    assert events.status_code == 200 and "event: completion" in events.text
    archive = client.get(f"/v1/workspaces/{workspace}/archive", headers=bearer("b-other"))
    assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"

    # The admin token sees every team's.
    assert run_ids(client, "admin") == {mine["id"], theirs["id"]}
    assert client.get(f"/v1/runs/{theirs['id']}", headers=bearer("admin")).status_code == 200
    assert client.get(f"/v1/workspaces/{workspace}", headers=bearer("admin")).status_code == 200


def test_another_teams_workspace_cannot_be_published(client: TestClient, tmp_path: Path) -> None:
    workspace = render(client, "b-ci")["output"]["workspaceId"]
    publish = {"owner": "team-a", "name": "stolen", "visibility": "public"}

    refused = client.post(PUBLISH, json={"input": {"workspaceId": workspace, **publish}}, headers=bearer("a-publish"))
    unknown = client.post(
        PUBLISH, json={"input": {"workspaceId": str(uuid.uuid4()), **publish}}, headers=bearer("a-publish")
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["fields"] == [{"field": "input.workspaceId", "message": "no such workspace"}]
    assert unknown.json()["error"]["fields"] == refused.json()["error"]["fields"]
    # Refused before anything was stored or made: no run, no repository.
    assert run_ids(client, "a-publish") == set()
    assert client.get("/git/team-a/stolen", headers=bearer("admin")).status_code == 404
    # A token that may not run repo:create at all is stopped earlier, whatever the workspace.
    forbidden = client.post(PUBLISH, json={"input": {"workspaceId": workspace, **publish}}, headers=bearer("a-render"))
    assert forbidden.status_code == 403

    # Team B itself may publish it.
    published = client.post(
        PUBLISH, json={"input": {"workspaceId": workspace, **publish, "owner": "team-b"}}, headers=bearer("b-ci")
    )
    assert published.status_code == 200, published.text


def test_cancelling_takes_the_right_to_run_the_action(client: TestClient) -> None:
    workspace = render(client, "a-render")["output"]["workspaceId"]
    published = client.post(
        PUBLISH,
        json={"input": {"workspaceId": workspace, "owner": "team-a", "name": "users-api"}},
        headers=bearer("a-publish"),
    )
    assert published.status_code == 200, published.text
    run_id = published.json()["id"]
    # The render-only token of the same team sees the run, but may not stop a repo:create.
    assert client.get(f"/v1/runs/{run_id}", headers=bearer("a-render")).status_code == 200
    refused = client.post(f"/v1/runs/{run_id}/cancel", headers=bearer("a-render"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # The token that may run it gets past that check (to "already finished").
    finished = client.post(f"/v1/runs/{run_id}/cancel", headers=bearer("a-publish"))
    assert finished.status_code == 409 and finished.json()["error"]["code"] == "run_finished"


def test_a_token_without_a_team_sees_only_its_own_runs(client: TestClient) -> None:
    own = render(client, "loner")
    render(client, "admin")
    render(client, "b-ci")
    assert run_ids(client, "loner") == {own["id"]}
    assert render(client, "admin")["team"] is None
    assert len(run_ids(client, "admin")) == 4


OLD_RUN = (
    "INSERT INTO runs VALUES ('old-run', 'cookiecutter:render', 'succeeded', FALSE, '{}', '{}', NULL, NULL,"
    " 'x', 'api-token', 'r', FALSE, 1.0, 1.0, 2.0, 2.0)"
)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_database_from_before_teams_keeps_working(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """An install of the last release before migrations has no runs.team; starting adds it (migration 0002),
    and old runs stay readable, by admins only."""
    if database == "sqlite":
        settings = make_settings(tmp_path, token_file=token_file(tmp_path))
        settings.storage.data_dir.mkdir(parents=True)
        url = f"sqlite:///{settings.storage.data_dir / 'pltf.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        settings = make_settings(tmp_path, token_file=token_file(tmp_path), database_url=url)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    create_previous_release_tables(engine)
    with engine.begin() as conn:
        conn.execute(text(OLD_RUN))
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        old = client.get("/v1/runs/old-run", headers=bearer("admin"))
        assert old.status_code == 200 and old.json()["team"] is None
        assert_missing(client.get("/v1/runs/old-run", headers=bearer("a-render")))
        new = render(client, "a-render")
        assert run_ids(client, "a-render") == {new["id"]}
        assert run_ids(client, "admin") == {"old-run", new["id"]}
