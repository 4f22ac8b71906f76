"""Owner teams: runs.team, and catalog_locations.team and .caller (added without migrations since a93b1bb).

Installs that ran a version between a93b1bb and migrations may have some of
these columns already (the columns were then added on start), so each is added
only where it is missing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def added() -> list[tuple[str, sa.Column[str]]]:
    return [
        # The caller's team: who else may see and cancel the run.
        ("runs", sa.Column("team", sa.String(length=253), nullable=True)),
        # Who may delete and refresh a location: the registering token's team, or the token's name.
        ("catalog_locations", sa.Column("team", sa.String(length=253), nullable=True)),
        ("catalog_locations", sa.Column("caller", sa.String(length=200), nullable=True)),
    ]


def upgrade() -> None:
    for table, column in added():
        present = {existing["name"] for existing in sa.inspect(op.get_bind()).get_columns(table)}
        if column.name not in present:
            with op.batch_alter_table(table) as batch:
                batch.add_column(column)


def downgrade() -> None:
    for table, column in reversed(added()):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column.name)
