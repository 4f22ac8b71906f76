"""The schema of the last release before migrations (commit a93b1bb), frozen: tables made by its `create_all`.

A copy, not an import: the package's tables move on, and the upgrade tests must
start from what existing installs really have. Comments and column order are
as that release declared them.
"""

from __future__ import annotations

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
    UniqueConstraint,
)

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

catalog_locations = Table(
    "catalog_locations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("type", String(20), nullable=False),
    # Unique: registering one target twice is a conflict, also across replicas.
    Column("target", String(2000), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("refreshed_at", Float, nullable=False),
)

catalog_entities = Table(
    "catalog_entities",
    metadata,
    # Lowercase kind:namespace/name: one entity per ref, whichever location claims it first.
    Column("ref", String(400), primary_key=True),
    Column("uid", String(36), nullable=False, unique=True),
    Column("kind", String(63), nullable=False),
    Column("namespace", String(63), nullable=False),
    Column("name", String(63), nullable=False),
    Column("location_id", String(36), nullable=False),
    Column("entity", JSON, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_catalog_entities_location", "location_id"),
)

catalog_relations = Table(
    "catalog_relations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The entity whose spec declared it; its refresh replaces these rows.
    Column("originating_ref", String(400), nullable=False),
    Column("source_ref", String(400), nullable=False),
    Column("type", String(63), nullable=False),
    Column("target_ref", String(400), nullable=False),
    Index("ix_catalog_relations_originating", "originating_ref"),
    Index("ix_catalog_relations_source", "source_ref", "type"),
    Index("ix_catalog_relations_target", "target_ref"),
)

catalog_search = Table(
    "catalog_search",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity_ref", String(400), nullable=False),
    Column("key", String(200), nullable=False),
    # Lowercase for matching; NULL when too long to index (the key still says the field exists).
    Column("value", String(200)),
    Column("original_value", Text),
    Index("ix_catalog_search_key_value", "key", "value"),
    Index("ix_catalog_search_entity_key", "entity_ref", "key"),
)

previews_table = Table(
    "previews",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(63), nullable=False),
    # The name while the preview is active, NULL after: unique, so one environment per name.
    Column("active_name", String(63), unique=True),
    Column("namespace", String(63), nullable=False),
    Column("service", String(63), nullable=False),
    Column("provider", String(20), nullable=False),
    Column("repo_url", String(500), nullable=False),
    Column("ref", String(200)),
    Column("pull_request", Integer),
    Column("owner", String(253), nullable=False),
    Column("experiment", String(63)),
    Column("status", String(16), nullable=False),
    Column("detail", Text),
    Column("logs", JSON),
    Column("url", String(500), nullable=False),
    Column("placement", JSON),
    Column("replica", String(200), nullable=False),
    Column("run_id", String(36)),
    Column("ttl_seconds", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ready_at", Float),
    Column("expires_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("ix_previews_status", "status"),
)

raw_events = Table(
    "portal_raw_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(40), nullable=False),
    # The sender's delivery id (X-GitHub-Delivery, X-Gitlab-Event-UUID) or a
    # digest of the body: the same delivery sent twice is stored, and counted, once.
    Column("delivery_id", String(200), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("payload", JSON, nullable=False),
    UniqueConstraint("source", "delivery_id", name="uq_portal_raw_delivery"),
)

changes = Table(
    "portal_changes",
    metadata,
    Column("service", String(100), primary_key=True),
    Column("sha", String(64), primary_key=True),
    # The earliest time any event gives for the commit.
    Column("time", Float, nullable=False),
    Column("source", String(40), nullable=False),
)

# Which commits a push brought, by the push's head: a deploy of that head ships them (Four Keys' rule).
push_commits = Table(
    "portal_push_commits",
    metadata,
    Column("service", String(100), primary_key=True),
    Column("head", String(64), primary_key=True),
    Column("sha", String(64), primary_key=True),
)

deployments = Table(
    "portal_deployments",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("service", String(100), nullable=False),
    Column("environment", String(100), nullable=False),
    Column("success", Boolean, nullable=False),
    Column("time", Float, nullable=False),
    Column("sha", String(64)),
    Column("changes", JSON, nullable=False),
    Column("source", String(40), nullable=False),
    Index("ix_portal_deployments_service_time", "service", "time"),
)

incidents = Table(
    "portal_incidents",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("service", String(100), nullable=False),
    Column("started_at", Float),
    Column("resolved_at", Float),
    Column("root_cause", String(64)),
    Column("title", Text),
    Column("source", String(40), nullable=False),
    Index("ix_portal_incidents_service", "service"),
)

service_info = Table(
    "portal_services",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("team", String(200)),
    Column("preview_url", String(1000)),
    # {env: {"monthlyUsd", "cpu", "memory", "namespace", "experiment"}} from applied service specs.
    Column("specs", JSON),
    Column("updated_at", Float, nullable=False),
)

probes = Table(
    "portal_probes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(100), nullable=False),
    Column("url", String(1000), nullable=False),
    Column("time", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status", Integer),
    Column("ms", Float),
    Column("error", String(300)),
    Index("ix_portal_probes_service_time", "service", "time"),
)
