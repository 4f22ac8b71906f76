"""SQLite connections of one process that take turns to write, in a queue instead of SQLite's sleeps.

SQLite lets one connection write at a time. A connection that finds the write lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5 … up to 100 ms between tries whatever the holder does: with
eight runs writing their log lines, a one-statement insert waited tens of milliseconds for a lock held
for one. Here a connection takes a process-wide lock at its first INSERT, UPDATE or DELETE and gives it
back when its transaction ends, so writers of this process queue on that lock and each starts the moment
the previous one commits. SQLite's own locking is unchanged: other processes sharing the file (another
replica, `pltf db`) still meet it, and its busy timeout still applies to them.

Readers never take the lock: WAL lets them read while one connection writes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _writes(statement: str) -> bool:
    return statement.lstrip()[:7].upper().startswith(_WRITES)


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return self._queued(super().execute, sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        return self._queued(super().executemany, sql, parameters)

    def _queued(self, run: Callable[[str, Any], Any], sql: str, parameters: Any) -> _Cursor:
        connection: QueuedWriteConnection = self.connection  # type: ignore[assignment]
        connection.before(sql)
        try:
            run(sql, parameters)
        finally:
            connection.after()
        return self


class QueuedWriteConnection(sqlite3.Connection):
    """A `sqlite3.Connection` holding `write_lock` from its first write to the end of that transaction."""

    write_lock: threading.Lock
    # How long to queue before writing anyway (and meeting SQLite's busy timeout, as without the queue).
    wait_seconds: float = 30.0
    _holding = False

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    # sqlite3's own shortcuts make a plain cursor: these go through ours.
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def before(self, statement: str) -> None:
        if not self._holding and _writes(statement):
            self._holding = self.write_lock.acquire(timeout=self.wait_seconds)

    def after(self) -> None:
        # A write outside a transaction (autocommit), or a failed first write, holds nothing afterwards.
        if self._holding and not self.in_transaction:
            self._release()

    # The transaction ends: the queue moves on once it has, not before (the next writer would meet SQLite's lock).
    def commit(self) -> None:
        self._ending(super().commit)

    def rollback(self) -> None:
        self._ending(super().rollback)

    def close(self) -> None:
        self._ending(super().close)

    def _ending(self, end: Callable[[], None]) -> None:
        try:
            end()
        finally:
            self._release()

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self.write_lock.release()


def queued_write_connections(wait_seconds: float) -> type[QueuedWriteConnection]:
    """A connection class whose connections share one write queue: one per engine (per database file)."""
    return type(
        "QueuedWriteConnection",
        (QueuedWriteConnection,),
        {"write_lock": threading.Lock(), "wait_seconds": wait_seconds},
    )
