from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from actions_server.app import create_app
from actions_server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_TEMPLATES = ROOT / "tests" / "fixtures" / "templates"
TOKEN = "test-token-0123456789"
POSTGRES_URL = os.environ.get("PLTF_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
PREVIOUS_RELEASE_DDL = ROOT / "tests" / "fixtures" / "previous-release"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "templates_dir": FIXTURE_TEMPLATES,
        "api_token": TOKEN,
        "hook_timeout_seconds": 20,
        # Most tests count or register catalog entities themselves; fresh-install tests turn it on.
        "register_platform_entities": False,
        # Render workers start with every server and import for seconds; the tests of them ask for them.
        "render_processes": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@contextlib.contextmanager
def admin_client(settings: Settings) -> Iterator[TestClient]:
    """The application built from `settings`, started, and called with the admin token."""
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with admin_client(settings) as test_client:
        yield test_client


def pltf(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """The `pltf` command line in a process of its own, on this process's environment with `env` over it:
    in-process (no server) unless `env` gives PLTF_URL."""
    return subprocess.run(
        [sys.executable, "-m", "actions_server.cli", *args],
        env={**os.environ, "PLTF_URL": "", **(env or {})},
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A real `pltf serve` in its own process, for restarts and replicas."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PLTF_PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        # Tests may wrap it, e.g. in `unshare -m sh -c '<mounts>; exec "$@"'`.
        self.command = [sys.executable, "-m", "actions_server.cli", "serve"]

    def start(self) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not get ready: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown handlers run."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        # Local previews outlive their server by design (a restart adopts them); a test's must not.
        data_dir = self.env.get("PLTF_DATA_DIR")
        if data_dir:
            kill_processes_under(Path(data_dir))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def kill_processes_under(directory: Path) -> None:
    """Kills every process whose command line names a path inside `directory` (preview services)."""
    marker = str(directory.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PLTF_DATA_DIR": str(tmp_path / "data"),
        "PLTF_TEMPLATES_DIR": str(FIXTURE_TEMPLATES),
        "PLTF_API_TOKEN": TOKEN,
        "PLTF_HEARTBEAT_SECONDS": "0.5",
        "PLTF_REGISTER_PLATFORM_ENTITIES": "false",
    }


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database per test; in CI a missing server fails instead of skipping."""
    import psycopg

    admin = POSTGRES_URL
    name = f"pltf_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {admin}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {admin}")
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_previous_release_tables(engine: Engine, *, skip_prefix: str | None = None) -> MetaData:
    """Makes the tables an install of the last release before migrations (commit a93b1bb) has, and returns them.

    The DDL is data, not code that follows today's tables: tests/fixtures/previous-release/<dialect>.sql was
    written once by a throwaway script, run on `git archive a93b1bb actions_server | tar -x -C /tmp/old`:

        sys.path.insert(0, "/tmp/old")
        import actions_server.db as db, actions_server.catalog.db, actions_server.portal.tables
        import actions_server.previews.manager  # the modules that declared that release's tables
        for table in db.metadata.sorted_tables:  # what its create_all ran, per dialect
            print(CreateTable(table).compile(dialect=dialect), ";")
            for index in sorted(table.indexes, key=lambda i: i.name):
                print(CreateIndex(index).compile(dialect=dialect), ";")

    Tables whose name starts with `skip_prefix` are left out. The tables are returned as reflected.
    """
    script = (PREVIOUS_RELEASE_DDL / f"{engine.dialect.name}.sql").read_text()
    statements = [s.strip() for s in re.sub(r"(?m)^--.*$", "", script).split(";") if s.strip()]
    with engine.begin() as conn:
        for statement in statements:
            table = re.search(r"(?:TABLE|ON) (\w+)", statement)
            if skip_prefix is None or table is None or not table.group(1).startswith(skip_prefix):
                conn.exec_driver_sql(statement)
    tables = MetaData()
    tables.reflect(engine)
    return tables


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Polls a condition; a bound on waiting, never a guess at how long something takes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def need(present: bool, what: str) -> None:
    """A piece the test needs: skipped when missing on a developer's machine, a failure under CI, which has them all."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must have it")
    pytest.skip(f"{what} is missing")


def operation_of(document: dict[str, Any], method: str, url: str) -> dict[str, Any]:
    for template, operations in document["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, url) and method.lower() in operations:
            found: dict[str, Any] = operations[method.lower()]
            return found
    raise AssertionError(f"{method} {url} is not in the OpenAPI document")


def assert_documented(document: dict[str, Any], response: httpx.Response) -> Any:
    """The response's status is documented for its operation, and its JSON body has that status's schema."""
    request = response.request
    operation = operation_of(document, request.method, request.url.path)
    documented = operation["responses"]
    assert str(response.status_code) in documented, (
        f"{request.method} {request.url.path} answered {response.status_code}; documented: {sorted(documented)}"
    )
    schema = documented[str(response.status_code)].get("content", {}).get("application/json", {}).get("schema")
    assert schema is not None, f"{request.method} {request.url.path} {response.status_code} documents no JSON schema"
    body = response.json()
    # The operation's schema refers to #/components/…; validate it as part of the whole document.
    Draft202012Validator({**schema, "components": document["components"]}).validate(body)
    return body


def get_documented(client: httpx.Client | TestClient, url: str, **kwargs: Any) -> Any:
    """GET `url`'s JSON body, after checking its status and body against the answering app's OpenAPI document."""
    response = client.get(url, **kwargs)
    return assert_documented(client.get("/openapi.json").json(), response)
