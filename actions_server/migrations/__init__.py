"""Schema migrations (Alembic): every database pltf opens is brought to the newest revision first.

The revisions are in `versions/`, one file each, numbered; `pltf db revision -m`
writes the next one from the difference between the tables the code declares
and what the revisions make. Replicas that start together take turns: one
upgrades while holding a lock (PostgreSQL's advisory lock; SQLite's write lock
on its file), the others wait for it and then find nothing left to do.

A database from before migrations has no alembic_version table: the first
revision runs over it making only what is missing, and afterwards its tables
must have every column a new database has, or the upgrade is rolled back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..errors import PltfError
from ..logs import get_logger

# Alembic is imported where a revision is run or read, not with this module: a database already at the
# newest revision (what a server finds once `pltf serve` has upgraded it) is checked with one SELECT, and
# the server never holds Alembic and Mako in its memory (6-7 MiB resident).
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
# Any constant works, as long as nothing else on the server takes the same advisory lock.
POSTGRES_LOCK_KEY = 874201
# Alembic keeps the running migration in module globals (`alembic.context`, `alembic.op`), so one thread at a time.
_in_process = threading.RLock()


def alembic_config(connection: Connection, target_metadata: MetaData | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(LOCATION))
    config.attributes["connection"] = connection
    config.attributes["target_metadata"] = target_metadata
    return config


@cache
def scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(LOCATION))


def head() -> str:
    """The newest revision. Revisions are numbered in order (`write_revision` names the next), so it is the
    largest number in versions/; a test holds this to Alembic's own reading of the files."""
    numbers = [path.name.split("_", 1)[0] for path in (LOCATION / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    assert numbers, "actions_server/migrations/versions has no revision"
    return max(numbers)


def current(engine: Engine) -> str | None:
    """The database's revision; None for a new database, or one made before migrations."""
    with engine.connect() as connection:
        return _revision_of(connection)


def _revision_of(connection: Connection) -> str | None:
    # What Alembic's MigrationContext.get_current_revision reads, without loading Alembic.
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    revisions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608 - a constant
    if len(revisions) > 1:
        raise PltfError(
            f"the database records several schema revisions ({', '.join(revisions)})", 500, "database_branched"
        )
    return revisions[0] if revisions else None


def upgrade(engine: Engine) -> str | None:
    """Brings the database to the newest revision, and answers the revision it was at."""
    before = current(engine)
    if before == head():
        return before
    from alembic import command

    with _in_process, _exclusive(engine) as connection:
        # Read again under the lock: another replica may have upgraded while this one waited.
        before = _revision_of(connection)
        if before == head():
            return before
        _known(before)
        # Tables but no revision: made by `create_all` before migrations, or by another application.
        adopting = before is None and bool(inspect(connection).get_table_names())
        try:
            command.upgrade(alembic_config(connection), "head")
        except DBAPIError as exc:
            if not adopting:
                raise
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
            raise _unknown_schema(reason) from exc
        if adopting:
            _check_columns(connection)
    get_logger(component="database").info("database schema upgraded", before=before, after=head())
    return before


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the database's migration lock until it commits."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_LOCK_KEY})
        elif engine.dialect.name == "sqlite":
            # Python's sqlite3 starts no transaction before DDL, so without this each CREATE would
            # commit on its own. IMMEDIATE takes the file's write lock now: a second process waits
            # here (busy_timeout) rather than reading a revision that is about to change.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()


def _known(revision: str | None) -> None:
    from alembic.util import CommandError

    if revision is None:
        return
    try:
        scripts().get_revision(revision)
    except CommandError as exc:
        raise PltfError(
            f"the database is at schema revision {revision!r}, which this pltf does not know (its newest is "
            f"{head()!r}): it was upgraded by a newer pltf; run that version or a newer one",
            500,
            "database_too_new",
        ) from exc


def _columns(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table != VERSION_TABLE
    }


@cache
def _new_database() -> dict[str, set[str]]:
    """The tables and columns the revisions make in an empty database."""
    from alembic import command

    engine = create_engine("sqlite://")
    try:
        with _in_process, engine.connect() as connection:
            command.upgrade(alembic_config(connection), "head")
            return _columns(connection)
    finally:
        engine.dispose()


def _check_columns(connection: Connection) -> None:
    """Refuses tables that were there before migrations but lack columns pltf's revisions would have made."""
    present = _columns(connection)
    lacking = {
        table: sorted(columns - present.get(table, set()))
        for table, columns in _new_database().items()
        if columns - present.get(table, set())
    }
    if lacking:
        raise _unknown_schema(
            "; ".join(f"{table} lacks {', '.join(columns)}" for table, columns in sorted(lacking.items()))
        )


def _unknown_schema(reason: str) -> PltfError:
    return PltfError(
        f"the database has tables that pltf did not make ({reason}); it was left unchanged",
        500,
        "database_unknown_schema",
    )


def write_revision(message: str, declared: MetaData) -> Path:
    """Writes the next revision into versions/: what `declared` has that the revisions do not make yet.

    Compared with a new SQLite database at the newest revision; check the
    file, as Alembic cannot tell a renamed column from a dropped and an added one.
    """
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import Script

    engine = create_engine("sqlite://")
    try:
        with _in_process, engine.connect() as connection:
            command.upgrade(alembic_config(connection), "head")
            if not compare_metadata(MigrationContext.configure(connection), declared):
                raise PltfError("nothing to write: the revisions make every table and column the code declares")
            written = command.revision(
                alembic_config(connection, declared),
                message=message,
                autogenerate=True,
                rev_id=f"{int(head()) + 1:04d}",
            )
    finally:
        engine.dispose()
        scripts.cache_clear()
    assert isinstance(written, Script)
    return Path(written.path)
