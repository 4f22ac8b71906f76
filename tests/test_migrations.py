"""Schema migrations (Alembic) on real SQLite files and the real PostgreSQL.

An install of the last release before migrations (the DDL it ran, checked in
under tests/fixtures/previous-release; how it was made: conftest.create_previous_release_tables) is upgraded when the server starts on it, its rows kept and the newer
features working on them; a new database gets the newest revision; a second
start changes nothing and does not even wait for the lock; replicas starting
together upgrade once; and the revisions make exactly the tables the code
declares (Alembic's autogenerate finds nothing to add).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, create_engine, insert, inspect, select, text
from sqlalchemy.engine import Engine

from actions_server.app import create_app
from actions_server.auth import hash_token
from actions_server.services import declared_tables
from conftest import ROOT, TOKEN, create_previous_release_tables, free_port, make_settings, pltf

HEAD = "0002"
TEAM_A = "group:default/team-a"
TOKENS = {
    # name: (token, actions, team)
    "a-dev": ("team-a-dev-token", ["cookiecutter:render", "catalog:register"], TEAM_A),
    "b-dev": ("team-b-dev-token", ["cookiecutter:render", "catalog:register"], "group:default/team-b"),
}
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LEGACY_ENTITY = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "legacy", "namespace": "default"},
    "spec": {"type": "service", "lifecycle": "production", "owner": "group:default/team-a"},
}
OWNER_COLUMNS = "ALTER TABLE runs ADD COLUMN team VARCHAR(253);" + (
    "ALTER TABLE catalog_locations ADD COLUMN team VARCHAR(253);"
    "ALTER TABLE catalog_locations ADD COLUMN caller VARCHAR(200)"
)


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    entries = [
        {"name": name, "sha256": hash_token(token), "actions": actions, "team": team}
        for name, (token, actions, team) in TOKENS.items()
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database that does not exist yet (SQLite) or is empty (PostgreSQL), as pltf's settings spell it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pltf.db'}"
    return str(request.getfixturevalue("postgres_url"))


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def database(database_url: str) -> Iterator[Engine]:
    """Our own engine on the database, for building old schemas and reading what pltf left."""
    engine = create_engine(sqlalchemy_url(database_url))
    yield engine
    engine.dispose()


def pltf_db(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return pltf("db", *args, env={"PLTF_DATABASE_URL": url}, cwd=ROOT)


def upgrade_json(url: str) -> dict[str, Any]:
    result = pltf_db("upgrade", "--json", url=url)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would write to make the database match the tables the code declares."""
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), declared_tables()))


# A little of everything, as the previous release stored it: table, row.
PREVIOUS_RELEASE_ROWS: list[tuple[str, dict[str, Any]]] = [
    (
        "runs",
        {
            "id": "old-run",
            "action": "cookiecutter:render",
            "status": "succeeded",
            "dry_run": False,
            "input": {"template": "demo"},
            "output": {"directory": "users-api"},
            "request_hash": "x",
            "caller": "api-token",
            "replica": "r",
            "cancel_requested": False,
            "created_at": 1.0,
            "started_at": 1.0,
            "finished_at": 2.0,
            "heartbeat_at": 2.0,
        },
    ),
    ("run_logs", {"run_id": "old-run", "seq": 1, "time": 1.5, "level": "info", "message": "rendered 3 files"}),
    (
        "catalog_locations",
        {
            "id": "loc-old",
            "type": "url",
            "target": "https://example.invalid/catalog-info.yaml",
            "created_at": 1,
            "refreshed_at": 1,
        },
    ),
    (
        "catalog_entities",
        {
            "ref": "component:default/legacy",
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": "Component",
            "namespace": "default",
            "name": "legacy",
            "location_id": "loc-old",
            "entity": LEGACY_ENTITY,
            "etag": "e",
            "updated_at": 1.0,
        },
    ),
    (
        "portal_deployments",
        {
            "id": "d-1",
            "service": "legacy",
            "environment": "production",
            "success": True,
            "time": 3.0,
            "changes": [],
            "source": "argocd",
        },
    ),
]


def make_previous_release(engine: Engine) -> MetaData:
    """The tables the last release before migrations made, holding a little of everything."""
    old = create_previous_release_tables(engine)
    with engine.begin() as conn:
        for table, row in PREVIOUS_RELEASE_ROWS:
            conn.execute(insert(old.tables[table]).values(**row))
    return old


def render(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    body = {"input": {"template": "demo", "values": {"name": "users-api"}}}
    response = client.post("/v1/actions/cookiecutter:render/runs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_server_upgrades_a_previous_release_database_keeping_its_rows(
    tmp_path: Path, database_url: str, database: Engine
) -> None:
    old = make_previous_release(database)
    settings = make_settings(tmp_path, token_file=token_file(tmp_path), database_url=database_url)
    with TestClient(create_app(settings)) as client:
        run = client.get("/v1/runs/old-run", headers=ADMIN)
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "succeeded" and run.json()["team"] is None
        assert [line["message"] for line in run.json()["log"]] == ["rendered 3 files"]
        # Runs from before teams are the admins' alone; new ones belong to the caller's team.
        assert client.get("/v1/runs/old-run", headers=bearer("a-dev")).status_code == 404
        new = render(client, bearer("a-dev"))
        assert new["team"] == TEAM_A
        assert client.get(f"/v1/runs/{new['id']}", headers=bearer("b-dev")).status_code == 404

        entity = client.get("/api/catalog/entities/by-name/component/default/legacy", headers=ADMIN)
        assert entity.status_code == 200 and entity.json()["spec"]["owner"] == "group:default/team-a"
        # A location from before owners were kept is the admins' to delete, and another team's is missing.
        assert client.delete("/api/catalog/locations/loc-old", headers=bearer("b-dev")).status_code == 404
        assert client.delete("/api/catalog/locations/loc-old", headers=ADMIN).status_code == 204

    assert revision_of(database) == HEAD
    assert differences(database) == []
    with database.connect() as conn:
        run_logs, deployments = old.tables["run_logs"], old.tables["portal_deployments"]
        logs = select(run_logs.c.message).where(run_logs.c.run_id == "old-run")
        assert conn.execute(logs).scalars().all() == ["rendered 3 files"]
        assert conn.execute(select(deployments.c.id)).scalars().all() == ["d-1"]


def test_an_install_that_has_the_owner_columns_without_migrations_is_recognised(
    database_url: str, database: Engine
) -> None:
    """Versions between the last release and migrations added the owner columns on start; nothing is added twice."""
    make_previous_release(database)
    with database.begin() as conn:
        for statement in OWNER_COLUMNS.split(";"):
            conn.execute(text(statement))
        conn.execute(text("UPDATE runs SET team = :team"), {"team": TEAM_A})

    assert upgrade_json(database_url) | {"database": None} == {"database": None, "before": None, "after": HEAD}
    assert revision_of(database) == HEAD
    assert differences(database) == []
    with database.connect() as conn:
        assert conn.execute(text("SELECT team FROM runs")).scalars().all() == [TEAM_A]


def test_a_new_database_gets_the_newest_revision_and_a_second_upgrade_waits_for_nothing(
    database_url: str, database: Engine
) -> None:
    current = pltf_db("current", url=database_url)
    assert current.returncode == 0, current.stderr
    assert current.stdout.startswith("none:")

    assert upgrade_json(database_url)["before"] is None
    assert differences(database) == []
    assert json.loads(pltf_db("current", "--json", url=database_url).stdout)["upToDate"] is True

    # The test holds the migration lock: a start that found work to do would wait for it (and time out).
    with database.connect() as conn:
        if database.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(874201)"))
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        assert upgrade_json(database_url) | {"database": None} == {"database": None, "before": HEAD, "after": HEAD}
        conn.rollback()


def test_replicas_starting_together_upgrade_once(database_url: str, database: Engine) -> None:
    starts = [
        subprocess.Popen(
            [sys.executable, "-m", "actions_server.cli", "db", "upgrade", "--json"],
            env={**os.environ, "PLTF_DATABASE_URL": database_url, "PLTF_URL": ""},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(start.communicate(timeout=120), start.returncode) for start in starts]
    assert [code for _, code in results] == [0, 0, 0], [err for (_, err), _ in results]
    befores = sorted(json.loads(out)["before"] or "none" for (out, _), _ in results)
    # One upgraded from nothing; the others waited for its lock and then found the newest revision.
    assert befores == [HEAD, HEAD, "none"]
    assert differences(database) == []


def test_tables_pltf_did_not_make_are_refused_and_left_as_they_were(database_url: str, database: Engine) -> None:
    with database.begin() as conn:
        conn.execute(text("CREATE TABLE workspaces (id VARCHAR(36) PRIMARY KEY, note TEXT)"))

    result = pltf_db("upgrade", url=database_url)
    assert result.returncode == 1
    assert "pltf: error: the database has tables that pltf did not make" in result.stderr
    assert (
        "(workspaces lacks archive, created_at, directory, files, run_id, size); it was left unchanged" in result.stderr
    )
    assert inspect(database).get_table_names() == ["workspaces"]


def test_a_database_upgraded_by_a_newer_pltf_is_refused(tmp_path: Path, database_url: str, database: Engine) -> None:
    assert upgrade_json(database_url)["after"] == HEAD
    with database.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))

    refusal = "pltf: error: the database is at schema revision '9999', which this pltf does not know"
    result = pltf_db("upgrade", url=database_url)
    assert result.returncode == 1 and refusal in result.stderr
    served = pltf(
        "serve",
        "--port",
        str(free_port()),
        env={"PLTF_DATABASE_URL": database_url, "PLTF_DATA_DIR": str(tmp_path / "data")},
        cwd=ROOT,
    )
    assert served.returncode == 1 and refusal in served.stderr and "Traceback" not in served.stderr
    assert revision_of(database) == "9999"


def test_pltf_db_revision_writes_nothing_when_the_revisions_match_the_code(tmp_path: Path) -> None:
    versions = sorted(path.name for path in (ROOT / "actions_server" / "migrations" / "versions").glob("*.py"))
    result = pltf_db("revision", "-m", "nothing", url=f"sqlite:///{tmp_path / 'unused.db'}")
    assert result.returncode == 1
    assert "nothing to write" in result.stderr
    assert sorted(path.name for path in (ROOT / "actions_server" / "migrations" / "versions").glob("*.py")) == versions


def test_the_portal_records_events_in_a_database_that_had_no_portal_tables(tmp_path: Path) -> None:
    """The last release made the portal's tables only when the portal was first used; the upgrade makes them."""
    settings = make_settings(tmp_path)
    settings.storage.data_dir.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{settings.storage.data_dir / 'pltf.db'}")
    create_previous_release_tables(engine, skip_prefix="portal_")
    deployment = {
        "type": "deployment",
        "id": "d-after-upgrade",
        "service": "legacy",
        "timestamp": "2026-01-01T00:00:00Z",
        "environment": "production",
        "status": "success",
    }
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json=deployment, headers=ADMIN).status_code == 202
    with engine.connect() as conn:
        assert conn.execute(text("SELECT service FROM portal_deployments")).scalars().all() == ["legacy"]
    engine.dispose()


def test_the_newest_revision_is_read_as_alembic_reads_it() -> None:
    from actions_server import migrations

    assert migrations.head() == migrations.scripts().get_current_head() == HEAD


def test_a_server_whose_schema_is_current_never_loads_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pltf.db'}"
    assert upgrade_json(url)["after"] == HEAD
    # What `pltf serve` does after its child process upgraded the schema, in a process of its own: the
    # test process has imported Alembic long ago.
    script = (
        "import sys\n"
        "from actions_server.app import create_app\n"
        "from actions_server.config import Settings\n"
        "from actions_server.db import connect\n"
        "settings = Settings()\n"
        "create_app(settings)\n"
        "connect(settings.storage.resolved_database_url).dispose()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))\n"
    )
    env = {**os.environ, "PLTF_DATABASE_URL": url, "PLTF_DATA_DIR": str(tmp_path / "data"), "PLTF_API_TOKEN": TOKEN}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
