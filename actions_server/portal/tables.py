"""The portal's tables, in the shared schema (`db.metadata`), made by the revisions in `migrations/`."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, String, Table, Text, UniqueConstraint

from ..db import DIGEST, metadata, time_column

SERVICE_NAME = String(100)
"""A service as the portal's events name it."""
EVENT_SOURCE = String(40)
"""Where an event came from: github, gitlab, argocd, pltf…"""

raw_events = Table(
    "portal_raw_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", EVENT_SOURCE, nullable=False),
    # The sender's delivery id (X-GitHub-Delivery, X-Gitlab-Event-UUID) or a
    # digest of the body: the same delivery sent twice is stored, and counted, once.
    Column("delivery_id", String(200), nullable=False),
    Column("event_type", String(100), nullable=False),
    time_column("received_at"),
    Column("payload", JSON, nullable=False),
    UniqueConstraint("source", "delivery_id", name="uq_portal_raw_delivery"),
)

changes = Table(
    "portal_changes",
    metadata,
    Column("service", SERVICE_NAME, primary_key=True),
    Column("sha", DIGEST, primary_key=True),
    # The earliest time any event gives for the commit.
    time_column("time"),
    Column("source", EVENT_SOURCE, nullable=False),
)

# Which commits a push brought, by the push's head: a deploy of that head ships them (Four Keys' rule).
push_commits = Table(
    "portal_push_commits",
    metadata,
    Column("service", SERVICE_NAME, primary_key=True),
    Column("head", DIGEST, primary_key=True),
    Column("sha", DIGEST, primary_key=True),
)

deployments = Table(
    "portal_deployments",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("service", SERVICE_NAME, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("success", Boolean, nullable=False),
    time_column("time"),
    Column("sha", DIGEST),
    Column("changes", JSON, nullable=False),
    Column("source", EVENT_SOURCE, nullable=False),
    Index("ix_portal_deployments_service_time", "service", "time"),
)

incidents = Table(
    "portal_incidents",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("service", SERVICE_NAME, nullable=False),
    time_column("started_at", nullable=True),
    time_column("resolved_at", nullable=True),
    Column("root_cause", DIGEST),
    Column("title", Text),
    Column("source", EVENT_SOURCE, nullable=False),
    Index("ix_portal_incidents_service", "service"),
)

service_info = Table(
    "portal_services",
    metadata,
    Column("name", SERVICE_NAME, primary_key=True),
    Column("team", String(200)),
    Column("preview_url", String(1000)),
    # {env: {"monthlyUsd", "cpu", "memory", "namespace", "experiment"}} from applied service specs.
    Column("specs", JSON),
    time_column("updated_at"),
)

probes = Table(
    "portal_probes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", SERVICE_NAME, nullable=False),
    Column("url", String(1000), nullable=False),
    time_column("time"),
    Column("ok", Boolean, nullable=False),
    Column("status", Integer),
    Column("ms", Float),
    Column("error", String(300)),
    Index("ix_portal_probes_service_time", "service", "time"),
)
