"""Where runs do their work: their scratch directory, and the turns at working that busy runs take."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from actions_server import config
from actions_server.action import Action, RunContext
from actions_server.config import MEMORY_SCRATCH, MEMORY_SCRATCH_MIN_FREE, _roomy_memory_file_system
from conftest import admin_client, make_settings, wait_until


class Params(BaseModel):
    label: str = ""


class Out(BaseModel):
    workspace: str = ""


def add_action(client: TestClient, action_id: str, handler: object, waits: bool = False) -> None:
    client.app.state.actions[action_id] = Action(  # type: ignore[attr-defined]
        action_id, "a test action", handler, input=Params, output=Out, waits=waits
    )


def test_a_run_works_in_the_scratch_directory_it_is_given_and_leaves_nothing(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with admin_client(make_settings(tmp_path, scratch_dir=scratch)) as client:

        def handler(ctx: RunContext, params: Params) -> Out:
            (ctx.workspace / "made.txt").write_text("scratch")
            return Out(workspace=str(ctx.workspace))

        add_action(client, "test:scratch", handler)
        run = client.post("/v1/actions/test:scratch/runs", json={"input": {}}).json()
        assert run["status"] == "succeeded", run
        assert Path(run["output"]["workspace"]).parent == scratch
        wait_until(lambda: not any(scratch.iterdir()), what="the run's scratch directory to be removed")


def test_the_default_scratch_is_memory_only_where_it_is_a_roomy_tmpfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _roomy_memory_file_system(tmp_path, 0) is False, "not a tmpfs mount point"
    assert _roomy_memory_file_system(tmp_path / "missing", 0) is False
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    shm_is_tmpfs = any(line.split()[1:3] == [str(MEMORY_SCRATCH), "tmpfs"] for line in mounts if line.strip())
    assert _roomy_memory_file_system(MEMORY_SCRATCH, 0) is (shm_is_tmpfs and os.access(MEMORY_SCRATCH, os.W_OK))
    assert _roomy_memory_file_system(MEMORY_SCRATCH, 1 << 62) is False, "more room than any machine has"
    monkeypatch.delenv("TMPDIR", raising=False)
    chosen = make_settings(tmp_path).runs.scratch_root
    assert chosen == (MEMORY_SCRATCH if _roomy_memory_file_system(MEMORY_SCRATCH, MEMORY_SCRATCH_MIN_FREE) else None)
    monkeypatch.setattr(config, "_memory_limited", lambda: True)
    assert make_settings(tmp_path).runs.scratch_root is None, "tmpfs pages would count against the limit"
    monkeypatch.undo()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert make_settings(tmp_path).runs.scratch_root is None, "the operator's TMPDIR is where scratch goes"
    assert make_settings(tmp_path, scratch_dir=tmp_path).runs.scratch_root == tmp_path


def test_a_run_cancelled_while_it_waits_for_its_turn_ends_without_working(tmp_path: Path) -> None:
    with admin_client(make_settings(tmp_path, max_working_runs=1)) as client:
        release = threading.Event()
        started: list[str] = []

        def work(ctx: RunContext, params: Params) -> Out:
            started.append(params.label)
            release.wait(timeout=30)
            return Out()

        add_action(client, "test:work", work)
        first = client.post("/v1/actions/test:work/runs?wait=false", json={"input": {"label": "first"}})
        wait_until(lambda: started == ["first"], what="the first run to take the one turn")
        second = client.post("/v1/actions/test:work/runs?wait=false", json={"input": {"label": "second"}})
        location = second.headers["Location"]
        wait_until(lambda: client.get(location).json()["status"] == "running", what="the second run to wait")
        assert client.post(f"{location}/cancel").status_code == 200
        cancelled = wait_until(
            lambda: (r := client.get(location).json())["status"] == "cancelled" and r, what="the cancel"
        )
        assert cancelled["error"]["code"] == "cancelled"
        assert started == ["first"], "the cancelled run never worked"
        release.set()
        first_location = first.headers["Location"]
        wait_until(lambda: client.get(first_location).json()["status"] == "succeeded", what="the first run")


def test_with_a_remote_forge_runs_take_no_turns_by_default(tmp_path: Path) -> None:
    runs = make_settings(tmp_path, max_concurrent_runs=12).runs
    assert runs.working_runs("embedded") == 2 * (os.cpu_count() or 1)
    assert runs.working_runs("github") == 12
    assert make_settings(tmp_path, max_working_runs=3).runs.working_runs("github") == 3


def test_working_runs_take_turns_while_waiting_runs_and_steps_do_not(tmp_path: Path) -> None:
    with admin_client(make_settings(tmp_path, max_working_runs=1, max_concurrent_runs=4)) as client:
        release = threading.Event()
        inside: list[str] = []
        lock = threading.Lock()

        def work(ctx: RunContext, params: Params) -> Out:
            with lock:
                inside.append(params.label)
            release.wait(timeout=30)
            return Out()

        def wait_then_step(ctx: RunContext, params: Params) -> Out:
            # A composite that waits: its own step takes the turn, and a step inside that step must not wait for
            # a second one (it would wait forever with one turn).
            ctx.run_step("inner", "test:nested", {"label": params.label})
            return Out()

        def nested(ctx: RunContext, params: Params) -> Out:
            ctx.run_step("work", "test:work", {"label": params.label})
            return Out()

        add_action(client, "test:work", work)
        add_action(client, "test:waiting", work, waits=True)
        add_action(client, "test:composite", wait_then_step, waits=True)
        add_action(client, "test:nested", nested)

        first = client.post("/v1/actions/test:work/runs?wait=false", json={"input": {"label": "first"}})
        wait_until(lambda: inside == ["first"], what="the first working run to start")
        second = client.post("/v1/actions/test:work/runs?wait=false", json={"input": {"label": "second"}})
        waiting = client.post("/v1/actions/test:waiting/runs?wait=false", json={"input": {"label": "waiting"}})
        wait_until(lambda: "waiting" in inside, what="the waiting run to start beside the working one")
        assert client.get(second.headers["Location"]).json()["status"] == "running"
        assert "second" not in inside, "the second working run started without a turn"

        release.set()
        for started in (first, second, waiting):
            location = started.headers["Location"]
            wait_until(lambda at=location: client.get(at).json()["status"] == "succeeded", what=location)
        assert inside.index("second") > inside.index("first")

        composite = client.post("/v1/actions/test:composite/runs", json={"input": {"label": "deep"}})
        assert composite.json()["status"] == "succeeded", composite.text
        assert inside[-1] == "deep"
