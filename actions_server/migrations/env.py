"""Alembic's environment: runs the revisions on the connection `actions_server.migrations` hands it.

There is no alembic.ini and no URL here: the caller has opened the database
from pltf's settings and holds the migration lock in an open transaction.
"""

from __future__ import annotations

from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"],
    # Only `pltf db revision` and the tests compare against the tables; upgrading needs none.
    target_metadata=config.attributes.get("target_metadata"),
    # SQLite cannot ALTER most of a table: batch operations copy it into a new one instead.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
