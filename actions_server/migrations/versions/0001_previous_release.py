"""The schema of the last release made without migrations (a93b1bb), where every install starts.

Installs from before migrations already have some or all of these tables,
made by `create_all` (the portal's only once it was used), and no
alembic_version table. `actions_server.migrations` runs this revision over
them too, so every table and index is made only if it is not there yet; the
columns of the tables that were there are checked after the upgrade.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = [
    "runs",
    "run_logs",
    "workspaces",
    "catalog_locations",
    "catalog_entities",
    "catalog_relations",
    "catalog_search",
    "previews",
    "portal_raw_events",
    "portal_changes",
    "portal_push_commits",
    "portal_deployments",
    "portal_incidents",
    "portal_services",
    "portal_probes",
]


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=400), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=200), nullable=False),
        sa.Column("replica", sa.String(length=200), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        if_not_exists=True,
    )
    op.create_index("ix_runs_status", "runs", ["status"], if_not_exists=True)
    op.create_index("ix_runs_action_created", "runs", ["action", "created_at"], if_not_exists=True)

    op.create_table(
        "run_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_run_logs_run_seq", "run_logs", ["run_id", "seq"], unique=True, if_not_exists=True)

    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("directory", sa.String(length=300), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )

    op.create_table(
        "catalog_locations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("refreshed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("target"),
        if_not_exists=True,
    )
    op.create_table(
        "catalog_entities",
        sa.Column("ref", sa.String(length=400), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("location_id", sa.String(length=36), nullable=False),
        sa.Column("entity", sa.JSON(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ref"),
        sa.UniqueConstraint("uid"),
        if_not_exists=True,
    )
    op.create_index("ix_catalog_entities_location", "catalog_entities", ["location_id"], if_not_exists=True)
    op.create_table(
        "catalog_relations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("originating_ref", sa.String(length=400), nullable=False),
        sa.Column("source_ref", sa.String(length=400), nullable=False),
        sa.Column("type", sa.String(length=63), nullable=False),
        sa.Column("target_ref", sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_catalog_relations_originating", "catalog_relations", ["originating_ref"], if_not_exists=True)
    op.create_index("ix_catalog_relations_source", "catalog_relations", ["source_ref", "type"], if_not_exists=True)
    op.create_index("ix_catalog_relations_target", "catalog_relations", ["target_ref"], if_not_exists=True)
    op.create_table(
        "catalog_search",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity_ref", sa.String(length=400), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=True),
        sa.Column("original_value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_catalog_search_key_value", "catalog_search", ["key", "value"], if_not_exists=True)
    op.create_index("ix_catalog_search_entity_key", "catalog_search", ["entity_ref", "key"], if_not_exists=True)

    op.create_table(
        "previews",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("active_name", sa.String(length=63), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("repo_url", sa.String(length=500), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=True),
        sa.Column("pull_request", sa.Integer(), nullable=True),
        sa.Column("owner", sa.String(length=253), nullable=False),
        sa.Column("experiment", sa.String(length=63), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("logs", sa.JSON(), nullable=True),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("placement", sa.JSON(), nullable=True),
        sa.Column("replica", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("ready_at", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_name"),
        if_not_exists=True,
    )
    op.create_index("ix_previews_status", "previews", ["status"], if_not_exists=True)

    op.create_table(
        "portal_raw_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "delivery_id", name="uq_portal_raw_delivery"),
        if_not_exists=True,
    )
    op.create_table(
        "portal_changes",
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("service", "sha"),
        if_not_exists=True,
    )
    op.create_table(
        "portal_push_commits",
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("head", sa.String(length=64), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("service", "head", "sha"),
        if_not_exists=True,
    )
    op.create_table(
        "portal_deployments",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_portal_deployments_service_time", "portal_deployments", ["service", "time"], if_not_exists=True)
    op.create_table(
        "portal_incidents",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("root_cause", sa.String(length=64), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_portal_incidents_service", "portal_incidents", ["service"], if_not_exists=True)
    op.create_table(
        "portal_services",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("preview_url", sa.String(length=1000), nullable=True),
        sa.Column("specs", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        if_not_exists=True,
    )
    op.create_table(
        "portal_probes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_portal_probes_service_time", "portal_probes", ["service", "time"], if_not_exists=True)


def downgrade() -> None:
    # Indexes go with their tables.
    for table in reversed(TABLES):
        op.drop_table(table)
