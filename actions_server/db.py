"""The relational schema, on SQLite by default or PostgreSQL for several replicas.

`metadata` holds every table once the parts that declare theirs are imported
(the composition root imports them all); the revisions in `migrations/` make
the same tables, and tests/test_migrations.py checks that they agree.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine

from .errors import PltfError
from .migrations import upgrade
from .sqlite_writes import queued_write_connections

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("action", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("input", JSON),
    Column("output", JSON),
    Column("error", JSON),
    # Scoped by caller, so one caller's key never reveals another's run.
    Column("idempotency_key", String(400), unique=True),
    Column("request_hash", String(64), nullable=False),
    Column("caller", String(200), nullable=False),
    # The caller's team: who else may see and cancel the run (see visibility.py).
    Column("team", String(253)),
    Column("replica", String(200), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("heartbeat_at", Float),
    Index("ix_runs_status", "status"),
    Index("ix_runs_action_created", "action", "created_at"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("time", Float, nullable=False),
    Column("level", String(10), nullable=False),
    Column("step", String(100)),
    Column("message", Text, nullable=False),
    Column("fields", JSON),
    Index("ix_run_logs_run_seq", "run_id", "seq", unique=True),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", String(36)),
    Column("directory", String(300), nullable=False),
    Column("files", JSON, nullable=False),
    # Kept in the database unless a shared directory is configured, so any
    # replica can use a workspace that another one rendered.
    Column("archive", LargeBinary),
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)


def require_postgres_driver(setting: str) -> None:
    """PostgreSQL's driver is the `postgres` extra: SQLite users do not install it."""
    if importlib.util.find_spec("psycopg") is None:
        raise PltfError(
            f"{setting} names PostgreSQL, whose driver is not installed: pip install 'pltf[postgres]'",
            500,
            "missing_dependency",
        )


def connect(url: str) -> Engine:
    """The database at `url`, its schema brought to the newest revision first."""
    engine = open_engine(url)
    # Every table is made, and changed, by the revisions in migrations/ (Alembic), not by `metadata`.
    upgrade(engine)
    return engine


def open_engine(url: str) -> Engine:
    """The database at `url` as it is: `pltf db current` reads its revision without upgrading it."""
    if url.startswith("sqlite"):
        # This process's writers queue for SQLite's one write lock instead of polling for it (sqlite_writes.py).
        factory = queued_write_connections(wait_seconds=30)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30, "factory": factory})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets the event stream read while a run writes its log.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    else:
        require_postgres_driver("PLTF_DATABASE_URL")
        engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    return engine
