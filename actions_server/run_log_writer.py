"""Runs' log lines and published outputs, written to the database in batches.

A transaction per line made every line of every run queue for the database's write lock (SQLite
takes one writer at a time, and a Create logs a line per step and more). Lines are kept in memory and written
together, every `flush_seconds`, in one transaction for all the runs of this process, and at once
when a reader of this process asks for a run, or when the run ends (before its status says so).
An output a run publishes while it runs (`ctx.output`, four per Create) goes in the same batch: a
transaction each was a quarter of the time a burst of Creates held the write lock.
A stream's order and `Last-Event-ID` resume rest on each line's `seq`, given when it is logged, and
on one writer at a time committing the lines in the order they were taken.

What a crash costs: the lines not yet written, those of the last `flush_seconds` (more while a write
waits for the database); the run itself is then failed as interrupted, as before. A line that cannot
be written fails its run as before, from its next line or its end; the other runs' lines in the same
batch are written on their own. A reader on another replica sees a line or an output up to
`flush_seconds` later than the line was logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, insert, update
from sqlalchemy.engine import Engine

from .db import run_logs, runs

# Short enough that a follower on another replica sees lines as they come; long enough that the lines of
# the runs in progress share a transaction.
FLUSH_SECONDS = 0.02
# A flusher with nothing to write for this long ends; the next line starts one.
IDLE_SECONDS = 5.0


class RunLogWriter:
    def __init__(self, database: Engine, written: Callable[[str], None], flush_seconds: float = FLUSH_SECONDS) -> None:
        self.database = database
        self.written = written  # told each run whose lines were written (the event stream wakes on it)
        self.flush_seconds = flush_seconds
        self._pending: list[dict[str, Any]] = []
        self._outputs: dict[str, Any] = {}  # a run's outputs so far, the last published
        self._lock = threading.Condition()
        # One writer at a time: lines taken later are committed later, so a reader never sees a line
        # before an earlier one of the same run.
        self._writing = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._failed: dict[str, Exception] = {}

    def append(self, row: dict[str, Any]) -> None:
        """Keeps a line (a `run_logs` row) to write; raises what writing this run's earlier lines raised."""
        with self._lock:
            failure = self._failed.pop(row["run_id"], None)
            if failure is not None:
                raise failure
            self._pending.append(row)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_periodically, name="run-log-writer", daemon=True)
                self._flusher.start()
            elif len(self._pending) == 1:
                self._lock.notify()

    def publish(self, run_id: str, output: Any) -> None:
        """Keeps a run's outputs so far (all of them, JSON) to write with the next batch."""
        with self._lock:
            self._outputs[run_id] = output
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_periodically, name="run-log-writer", daemon=True)
                self._flusher.start()
            elif len(self._outputs) == 1 and not self._pending:
                self._lock.notify()

    def pending(self, run_id: str) -> bool:
        with self._lock:
            return self._keeps(run_id)

    def _keeps(self, run_id: str) -> bool:
        return run_id in self._outputs or any(row["run_id"] == run_id for row in self._pending)

    def flush(self, run_id: str | None = None, reader: bool = False) -> None:
        """Writes the lines kept so far (all of them: one transaction), if `run_id` has any (or always,
        without one). The run itself (not a `reader`) is raised what writing its lines raised."""
        owner = None if reader else run_id  # who hears of a failed write now
        with self._writing:
            with self._lock:
                failure = self._failed.pop(owner, None) if owner is not None else None
                if failure is not None:
                    raise failure
                if run_id is not None and not self._keeps(run_id):
                    return
                rows, self._pending = self._pending, []
                outputs, self._outputs = self._outputs, {}
            if not rows and not outputs:
                return
            written = list(dict.fromkeys([*(row["run_id"] for row in rows), *outputs]))
            try:
                self._write(rows, outputs)
            except Exception:  # noqa: BLE001 - one run's bad line must not cost the others theirs
                failures = self._write_each_run(rows, outputs)
                with self._lock:
                    self._failed.update(failures)  # each run hears of it from its next line or its end
                    failure = self._failed.pop(owner, None) if owner is not None else None
                if failure is not None:
                    raise failure from None
        for run in written:
            self.written(run)

    def _write(self, rows: list[dict[str, Any]], outputs: dict[str, Any]) -> None:
        with self.database.begin() as conn:
            if rows:
                conn.execute(insert(run_logs), rows)
            for run_id, output in outputs.items():
                # Not over a finished run's final output (written by the run itself, after its last batch).
                conn.execute(
                    update(runs)
                    .where(and_(runs.c.id == run_id, runs.c.status.in_(("queued", "running"))))
                    .values(output=output)
                )

    def _write_each_run(self, rows: list[dict[str, Any]], outputs: dict[str, Any]) -> dict[str, Exception]:
        """After a batch failed: each run's lines and outputs on their own, and what failed for which run."""
        failures: dict[str, Exception] = {}
        for run in dict.fromkeys([*(row["run_id"] for row in rows), *outputs]):
            try:
                self._write(
                    [row for row in rows if row["run_id"] == run], {run: outputs[run]} if run in outputs else {}
                )
            except Exception as exc:  # noqa: BLE001 - reported to the run (see append and flush)
                failures[run] = exc
        return failures

    def _flush_periodically(self) -> None:
        while True:
            with self._lock:
                if not self._pending and not self._outputs:
                    self._lock.wait(IDLE_SECONDS)
                    if not self._pending and not self._outputs:
                        self._flusher = None
                        return
            # Lines that come meanwhile join this transaction.
            time.sleep(self.flush_seconds)
            try:
                self.flush()  # a failed write is kept for the runs whose lines it held
            except BaseException:
                with self._lock:
                    self._flusher = None  # the next line starts another
                raise
