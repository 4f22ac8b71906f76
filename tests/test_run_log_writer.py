"""Runs' log lines and outputs written in batches (actions_server/run_log_writer.py): fewer transactions,
the same lines in the same order, nothing kept from a reader, and a failed write reaching its run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from actions_server.db import connect, open_engine, run_logs, runs
from actions_server.run_log_writer import RunLogWriter
from conftest import wait_until


def line(run_id: str, seq: int) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "time": 1.0, "level": "info", "step": None, "message": f"line {seq}"}


def stored(engine: Any, run_id: str, after: int = 0) -> list[int]:
    query = select(run_logs.c.seq).where(run_logs.c.run_id == run_id, run_logs.c.seq > after).order_by(run_logs.c.seq)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def test_the_lines_of_several_runs_are_written_together_and_at_once_for_a_reader(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'pltf.db'}")
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    written: list[str] = []
    writer = RunLogWriter(engine, written.append, flush_seconds=3600)  # only flush() writes here
    for seq in range(1, 11):
        writer.append(line("run-a", seq))
        writer.append(line("run-b", seq))
    assert stored(engine, "run-a") == [] and writer.pending("run-a")
    writer.flush("run-a")  # what a reader of run-a, or its end, does first
    assert stored(engine, "run-a") == list(range(1, 11)) and stored(engine, "run-b") == list(range(1, 11))
    assert len(commits) == 1  # twenty lines, one transaction
    assert written == ["run-a", "run-b"]  # the event streams of both runs wake
    writer.flush("run-a")
    assert len(commits) == 1  # nothing kept: nothing written


def test_lines_kept_without_a_reader_are_written_by_the_flusher(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'pltf.db'}")
    writer = RunLogWriter(engine, lambda run_id: None, flush_seconds=0.01)
    for seq in range(1, 4):
        writer.append(line("run-a", seq))
    wait_until(lambda: stored(engine, "run-a") == [1, 2, 3], what="the flusher to write the lines")
    assert not writer.pending("run-a")


def test_lines_taken_later_are_committed_later(tmp_path: Path) -> None:
    # The event stream and Last-Event-ID resume read `seq > last seen`: a later line committed before
    # an earlier one would be skipped for ever.
    engine = connect(f"sqlite:///{tmp_path / 'pltf.db'}")
    writer = RunLogWriter(engine, lambda run_id: None, flush_seconds=3600)
    holding, release = threading.Event(), threading.Event()

    def hold_the_first_batch(*args: Any) -> None:
        if "INSERT INTO run_logs" in args[2] and not holding.is_set():
            holding.set()
            release.wait(10)

    event.listen(engine, "before_cursor_execute", hold_the_first_batch)
    writer.append(line("run-a", 1))
    first = threading.Thread(target=writer.flush)
    first.start()
    assert holding.wait(10)  # line 1 taken, not written yet
    writer.append(line("run-a", 2))
    second = threading.Thread(target=writer.flush, args=("run-a",))  # a reader of this process
    second.start()
    second.join(0.5)  # time enough to write line 2 if it were let
    seen_meanwhile = stored(engine, "run-a")
    release.set()
    first.join(10)
    second.join(10)
    assert seen_meanwhile == []
    assert stored(engine, "run-a") == [1, 2]


def test_a_failed_write_reaches_each_run_whose_lines_it_held(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every write fails
    writer = RunLogWriter(engine, lambda run_id: None, flush_seconds=3600)
    writer.append(line("run-a", 1))
    writer.append(line("run-b", 1))
    with pytest.raises(OperationalError):
        writer.flush("run-a")  # the run that flushed hears at once
    with pytest.raises(OperationalError):
        writer.append(line("run-b", 2))  # the other from its next line, and so fails as it did before
    writer.append(line("run-b", 3))
    assert writer.pending("run-b")


def test_one_runs_line_that_cannot_be_written_costs_the_other_runs_none_of_theirs(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'pltf.db'}")
    writer = RunLogWriter(engine, lambda run_id: None, flush_seconds=3600)
    writer.append(line("run-a", 1))
    writer.flush()
    writer.append(line("run-a", 1))  # the same seq again (another replica wrote it): refused
    writer.append(line("run-b", 1))
    writer.flush()  # by the flusher or another run's reader: run-a's failure waits for run-a
    assert stored(engine, "run-b") == [1]
    writer.flush("run-a", reader=True)  # nor does a reader of run-a take it from run-a
    with pytest.raises(IntegrityError):
        writer.flush("run-a")


def a_run(engine: Any, run_id: str, status: str = "running") -> None:
    row = {"id": run_id, "action": "test:publish", "status": status, "request_hash": "h", "caller": "c"}
    with engine.begin() as conn:
        conn.execute(insert(runs).values(**row, replica="r", created_at=1.0))


def output_of(engine: Any, run_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(runs.c.output).where(runs.c.id == run_id)).scalar_one()


def test_published_outputs_go_with_the_lines_and_never_over_a_finished_runs_output(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'pltf.db'}")
    a_run(engine, "run-a")
    a_run(engine, "run-b")
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    writer = RunLogWriter(engine, lambda run_id: None, flush_seconds=3600)
    writer.publish("run-a", {"remoteUrl": "first"})
    writer.publish("run-a", {"remoteUrl": "first", "entityRef": "second"})  # the last one counts
    writer.append(line("run-b", 1))
    writer.publish("run-b", {"made": True})
    assert output_of(engine, "run-a") is None and writer.pending("run-a")
    writer.flush("run-a", reader=True)  # a reader of run-a sees what it published so far
    assert output_of(engine, "run-a") == {"remoteUrl": "first", "entityRef": "second"}
    assert output_of(engine, "run-b") == {"made": True} and stored(engine, "run-b") == [1]
    assert len(commits) == 1  # two runs' outputs and a line: one transaction
    # A run that has ended wrote its final output itself: a late batch does not undo it.
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == "run-a").values(status="succeeded", output={"final": 1}))
    writer.publish("run-a", {"remoteUrl": "stale"})
    writer.flush()
    assert output_of(engine, "run-a") == {"final": 1}
