"""The relational schema, on SQLite by default or PostgreSQL for several replicas."""

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
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .errors import PltfError

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
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

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
    _create_schema(engine)
    return engine


def _create_schema(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        # Replicas starting together would otherwise race on CREATE TABLE.
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(874201)"))
            metadata.create_all(conn)
            _add_missing_columns(conn)
        return
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            _add_missing_columns(conn)
    except DBAPIError:
        # Another process made the same table or column at the same moment; the second pass finds it.
        with engine.begin() as conn:
            metadata.create_all(conn)
            _add_missing_columns(conn)


def _add_missing_columns(conn: Connection) -> None:
    """Adds the nullable columns a newer version declares to tables an older one made.

    `create_all` makes missing tables but never changes existing ones. Until
    there are real migrations, a new column must be nullable to be added here.
    """
    inspector = inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(
                text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.format_column(column)} {kind}")
            )
