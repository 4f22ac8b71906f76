"""The embedded catalog's tables, on the shared metadata (db.py); the revisions in migrations/ make them.

Entities are stored whole (JSON). Filtering uses `catalog_search`, one row
per leaf field with lowercase key and value, as Backstage's own search table
does, so `kind=component,spec.type=service` is plain SQL on SQLite and
PostgreSQL alike. Relations are rows of their own: an entity's relations are
those whose source it is, whichever entity declared them.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, Integer, String, Table, Text

from ..db import CALLER_NAME, DIGEST, DNS_LABEL, GROUP_REF, UUID_TEXT, metadata, time_column

MAX_TARGET_LENGTH = 2000
MAX_REF_LENGTH = 400
ENTITY_REF = String(MAX_REF_LENGTH)
"""A lowercase `kind:namespace/name`."""

catalog_locations = Table(
    "catalog_locations",
    metadata,
    Column("id", UUID_TEXT, primary_key=True),
    Column("type", String(20), nullable=False),
    # Unique: registering one target twice is a conflict, also across replicas.
    Column("target", String(MAX_TARGET_LENGTH), nullable=False, unique=True),
    time_column("created_at"),
    time_column("refreshed_at"),
    # Who may delete and refresh it: the registering token's team (a group ref), or for a token
    # without a team its name. Both NULL (locations from before owners were kept): admins only.
    Column("team", GROUP_REF),
    Column("caller", CALLER_NAME),
)

catalog_entities = Table(
    "catalog_entities",
    metadata,
    # Lowercase kind:namespace/name: one entity per ref, whichever location claims it first.
    Column("ref", ENTITY_REF, primary_key=True),
    Column("uid", UUID_TEXT, nullable=False, unique=True),
    Column("kind", DNS_LABEL, nullable=False),
    Column("namespace", DNS_LABEL, nullable=False),
    Column("name", DNS_LABEL, nullable=False),
    Column("location_id", UUID_TEXT, nullable=False),
    Column("entity", JSON, nullable=False),
    Column("etag", DIGEST, nullable=False),
    time_column("updated_at"),
    Index("ix_catalog_entities_location", "location_id"),
)

catalog_relations = Table(
    "catalog_relations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The entity whose spec declared it; its refresh replaces these rows.
    Column("originating_ref", ENTITY_REF, nullable=False),
    Column("source_ref", ENTITY_REF, nullable=False),
    Column("type", String(63), nullable=False),
    Column("target_ref", ENTITY_REF, nullable=False),
    Index("ix_catalog_relations_originating", "originating_ref"),
    Index("ix_catalog_relations_source", "source_ref", "type"),
    Index("ix_catalog_relations_target", "target_ref"),
)

catalog_search = Table(
    "catalog_search",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity_ref", ENTITY_REF, nullable=False),
    Column("key", String(200), nullable=False),
    # Lowercase for matching; NULL when too long to index (the key still says the field exists).
    Column("value", String(200)),
    Column("original_value", Text),
    Index("ix_catalog_search_key_value", "key", "value"),
    Index("ix_catalog_search_entity_key", "entity_ref", "key"),
)
