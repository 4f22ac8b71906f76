"""Runs survive restarts; interrupted runs are failed with a reason; replicas share one PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from actions_server.db import runs
from actions_server.services import Services, run_engine
from conftest import ServerProcess, make_settings, wait_until

RENDER = "/v1/actions/cookiecutter:render/runs"


class HookGate:
    """Sees each start of the blocking-hook template's hook, and lets them go on.

    The hook runs in the sandbox, without a network and without the test's files; it can write only
    its own directory, in the server's run workspace. So the servers get `PLTF_SCRATCH_DIR=runs`, the hook leaves
    `hook-started` there and waits for `hook-go` beside it.
    """

    def __init__(self, runs: Path) -> None:
        runs.mkdir(parents=True, exist_ok=True)
        self.runs = runs
        self.env = {"PLTF_SCRATCH_DIR": str(runs)}
        self._seen: set[Path] = set()

    @property
    def calls(self) -> list[Path]:
        """Every start seen so far (a finished run's workspace, marker included, is removed)."""
        self._seen.update(self.runs.glob("pltf-run-*/**/hook-started"))
        return sorted(self._seen)

    def release(self) -> None:
        for started in self.calls:
            if started.parent.is_dir():
                (started.parent / "hook-go").write_text("go\n")


@pytest.fixture
def hook_gate(tmp_path: Path) -> HookGate:
    return HookGate(tmp_path / "runs")


def test_restart_keeps_runs_and_fails_interrupted_ones(
    tmp_path: Path, server_env: dict[str, str], hook_gate: HookGate
) -> None:
    server = ServerProcess({**server_env, **hook_gate.env}, tmp_path / "server.log").start()
    try:
        with server.client() as http:
            keyed = {"Idempotency-Key": "survives-restarts"}
            done = http.post(RENDER, json={"input": {"template": "demo"}}, headers=keyed).json()
            blocking = {"template": "blocking-hook", "values": {"gate": "files"}}
            started = http.post(f"{RENDER}?wait=false", json={"input": blocking})
            assert started.status_code == 202
            wait_until(lambda: hook_gate.calls, what="the blocking hook to start")
            assert http.get(started.headers["Location"]).json()["status"] == "running"
        server.kill()
        server.start()
        with server.client() as http:
            interrupted = http.get(started.headers["Location"]).json()
            assert interrupted["status"] == "failed"
            assert interrupted["error"]["code"] == "interrupted"
            assert "restarted" in interrupted["log"][-1]["message"]
            kept = http.get(f"/v1/runs/{done['id']}").json()
            assert kept["status"] == "succeeded" and kept["output"] == done["output"]
            assert [line["message"] for line in kept["log"]] == [line["message"] for line in done["log"]]
            replayed = http.post(RENDER, json={"input": {"template": "demo"}}, headers=keyed)
            assert replayed.json()["id"] == done["id"] and replayed.headers["Idempotent-Replayed"] == "true"
    finally:
        server.stop()


def test_runs_of_a_replica_that_stopped_beating_are_failed(tmp_path: Path) -> None:
    services = Services.create(make_settings(tmp_path, stale_run_seconds=30, replica_id="alive"))
    engine = run_engine(services)
    now = time.time()
    common = {"action": "cookiecutter:render", "dry_run": False, "request_hash": "x", "caller": "t"}
    with services.engine.begin() as conn:
        conn.execute(
            insert(runs).values(
                id="dead", status="running", replica="gone", created_at=now - 120, heartbeat_at=now - 60, **common
            )
        )
        conn.execute(
            insert(runs).values(
                id="busy", status="running", replica="other", created_at=now - 120, heartbeat_at=now, **common
            )
        )
    assert engine.recover(startup=False) == ["dead"]
    with services.engine.connect() as conn:
        statuses = dict(conn.execute(select(runs.c.id, runs.c.status)).all())
    assert statuses == {"dead": "failed", "busy": "running"}


@pytest.mark.postgres
def test_two_replicas_share_one_postgres_and_run_a_key_once(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str, hook_gate: HookGate
) -> None:
    env = {**server_env, **hook_gate.env, "PLTF_DATABASE_URL": postgres_url}
    first = ServerProcess({**env, "PLTF_DATA_DIR": str(tmp_path / "a")}, tmp_path / "a.log").start()
    second = ServerProcess({**env, "PLTF_DATA_DIR": str(tmp_path / "b")}, tmp_path / "b.log").start()
    body = {"input": {"template": "blocking-hook", "values": {"gate": "files"}}}
    headers = {"Idempotency-Key": "one-run-only"}
    try:
        with first.client() as a, second.client() as b:

            def send(n: int) -> tuple[int, str]:
                response = (a if n % 2 else b).post(RENDER, json=body, headers=headers)
                return response.status_code, response.json()["id"]

            with ThreadPoolExecutor(max_workers=20) as pool:
                pending = [pool.submit(send, n) for n in range(20)]
                wait_until(lambda: hook_gate.calls, what="the one run to start")
                # Every request is now either waiting on the run or about to; let it finish.
                hook_gate.release()
                results = [future.result() for future in pending]
            assert {status for status, _ in results} == {200}
            assert len({run_id for _, run_id in results}) == 1
            assert len(hook_gate.calls) == 1  # the hook ran exactly once
            assert len(a.get("/v1/runs").json()["runs"]) == 1
            assert len(b.get("/v1/runs").json()["runs"]) == 1
            run_id = results[0][1]
            # A run made by one replica is readable, with its log, from the other.
            assert a.get(f"/v1/runs/{run_id}").json()["log"] == b.get(f"/v1/runs/{run_id}").json()["log"]
    finally:
        first.stop()
        second.stop()


@pytest.mark.postgres
def test_workspace_rendered_by_one_replica_downloads_from_another(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str
) -> None:
    env = {**server_env, "PLTF_DATABASE_URL": postgres_url}
    first = ServerProcess({**env, "PLTF_DATA_DIR": str(tmp_path / "a")}, tmp_path / "a.log").start()
    second = ServerProcess({**env, "PLTF_DATA_DIR": str(tmp_path / "b")}, tmp_path / "b.log").start()
    try:
        with first.client() as a, second.client() as b:
            run = a.post(RENDER, json={"input": {"template": "demo"}}).json()
            archive = b.get(f"/v1/workspaces/{run['output']['workspaceId']}/archive")
            assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"
            events = b.get(f"/v1/runs/{run['id']}/events").text
            assert "event: completion" in events
    finally:
        first.stop()
        second.stop()
