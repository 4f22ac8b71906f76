"""The relational schema, on SQLite by default or PostgreSQL for several replicas.

`metadata` holds every table once the parts that declare theirs are imported
(the composition root imports them all); the revisions in `migrations/` make
the same tables, and tests/test_migrations.py checks that they agree.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

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

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Record = TypeVar("Record", bound="DataclassInstance")

metadata = MetaData()

# The types of the values that several tables hold, so each is as wide everywhere.
UUID_TEXT = String(36)
"""A uuid4 as text: the ids of runs, workspaces and catalog locations and entities."""
DIGEST = String(64)
"""A hex SHA-256 or git commit id: a request's hash, an entity's etag, a commit."""
DNS_LABEL = String(63)
"""A Kubernetes or Backstage name, namespace or kind (at most 63 characters)."""
GROUP_REF = String(253)
"""A Backstage group or user ref such as `group:default/team-a`: a team or an owner."""
CALLER_NAME = String(200)
"""The name of the API token that made a row."""
REPLICA_ID = String(200)
"""The server replica that works on a row."""


# The columns that several tables declare alike. A Column belongs to one table, so each call makes a new one.


def time_column(name: str, *, nullable: bool = False) -> Column[float]:
    """A moment as Unix seconds (`time.time()`), the way every table stores its times.

    `nullable=True` for a moment that may not have come yet (a run's `finished_at`)."""
    return Column(name, Float, nullable=nullable)


runs = Table(
    "runs",
    metadata,
    Column("id", UUID_TEXT, primary_key=True),
    Column("action", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("input", JSON),
    Column("output", JSON),
    Column("error", JSON),
    # Scoped by caller, so one caller's key never reveals another's run.
    Column("idempotency_key", String(400), unique=True),
    Column("request_hash", DIGEST, nullable=False),
    Column("caller", CALLER_NAME, nullable=False),
    # The caller's team: who else may see and cancel the run (see visibility.py).
    Column("team", GROUP_REF),
    Column("replica", REPLICA_ID, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    time_column("created_at"),
    time_column("started_at", nullable=True),
    time_column("finished_at", nullable=True),
    time_column("heartbeat_at", nullable=True),
    Index("ix_runs_status", "status"),
    Index("ix_runs_action_created", "action", "created_at"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", UUID_TEXT, nullable=False),
    Column("seq", Integer, nullable=False),
    time_column("time"),
    Column("level", String(10), nullable=False),
    Column("step", String(100)),
    Column("message", Text, nullable=False),
    Column("fields", JSON),
    Index("ix_run_logs_run_seq", "run_id", "seq", unique=True),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", UUID_TEXT, primary_key=True),
    Column("run_id", UUID_TEXT),
    Column("directory", String(300), nullable=False),
    Column("files", JSON, nullable=False),
    # Kept in the database unless a shared directory is configured, so any
    # replica can use a workspace that another one rendered.
    Column("archive", LargeBinary),
    Column("size", Integer, nullable=False),
    time_column("created_at"),
)


def from_row(model: type[Record], row: Mapping[Any, Any], **converted: Any) -> Record:
    """A `model` dataclass from a row whose columns carry its field names; `converted` gives the fields
    whose value is not the column's as stored (or that have no column)."""
    stored = {field.name: row[field.name] for field in fields(model) if field.name not in converted}
    return model(**stored, **converted)


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
