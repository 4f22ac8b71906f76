"""The raw event store, and the one entry point for the platform's own events.

Every accepted delivery is stored raw in `portal_raw_events`, keyed by
(source, delivery id), and its normalised records are written in the same
transaction. A delivery already stored is a duplicate: nothing is written and
nothing counts twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..logs import get_logger
from . import normalize
from .model import Normalised
from .tables import changes, deployments, incidents, push_commits, raw_events, service_info

MAX_DELIVERY_ID = 200


class HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


@dataclass(frozen=True)
class Recorded:
    duplicate: bool
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"accepted": True, "duplicate": self.duplicate, "recorded": self.counts}


def body_digest(value: Any) -> str:
    """A delivery id for senders that give none: the digest of the canonical body."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def record(
    engine: Engine, source: str, delivery_id: str, event_type: str, payload: Any, normalised: Normalised
) -> Recorded:
    delivery = delivery_id[:MAX_DELIVERY_ID]
    try:
        with engine.begin() as conn:
            conn.execute(
                raw_events.insert().values(
                    source=source,
                    delivery_id=delivery,
                    event_type=event_type[:100],
                    received_at=time.time(),
                    payload=payload,
                )
            )
            _apply(conn, normalised)
    except IntegrityError:
        with engine.connect() as conn:
            seen = conn.execute(
                select(raw_events.c.id).where(and_(raw_events.c.source == source, raw_events.c.delivery_id == delivery))
            ).first()
        if seen is None:
            raise
        return Recorded(True, {"changes": 0, "deployments": 0, "incidents": 0})
    return Recorded(False, normalised.counts())


def record_platform_event(services: HasEngine, kind: str, payload: Mapping[str, Any]) -> bool:
    """Records one of the platform's own events; True if recorded, False if a duplicate or not understood.

    `kind` is one of `normalize.PLATFORM_KINDS`; the payloads are described in
    docs/dora.md. It never raises: the golden path must not fail because the
    portal could not record something, so a failure is logged instead.
    """
    try:
        if kind not in normalize.PLATFORM_KINDS:
            get_logger().warning("portal: unknown platform event", kind=kind)
            return False
        body = dict(payload)
        delivery = str(body.get("deliveryId") or body_digest({"kind": kind, **body}))
        normalised = normalize.platform(kind, body)
        return not record(services.engine, "platform", delivery, kind, body, normalised).duplicate
    except Exception as exc:  # noqa: BLE001 - recording must never break the caller
        get_logger().warning("portal: could not record a platform event", kind=kind, error=str(exc)[:300])
        return False


def platform_event_recorder(services: HasEngine) -> Callable[[str, Mapping[str, Any]], None]:
    """The portal's subscriber to the event bus (events.py): each platform event, recorded."""

    def on_event(kind: str, payload: Mapping[str, Any]) -> None:
        record_platform_event(services, kind, payload)

    return on_event


# -- writing normalised records -------------------------------------------------


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _apply(conn: Connection, out: Normalised) -> None:
    for change in out.changes:
        stmt = _insert(conn, changes).values(service=change.service, sha=change.sha, time=change.time, source="event")
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["service", "sha"]))
        # A commit's time is the earliest any event gives for it, whatever order they arrive in.
        conn.execute(
            update(changes)
            .where(and_(changes.c.service == change.service, changes.c.sha == change.sha, changes.c.time > change.time))
            .values(time=change.time)
        )
    for pushed in out.push_commits:
        stmt = _insert(conn, push_commits).values(service=pushed.service, head=pushed.head, sha=pushed.sha)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["service", "head", "sha"]))
    for deployment in out.deployments:
        values = {
            "service": deployment.service,
            "environment": deployment.environment,
            "success": deployment.success,
            "time": deployment.time,
            "sha": deployment.sha,
            "changes": list(deployment.changes),
            "source": deployment.id.split(":", 1)[0],
        }
        stmt = _insert(conn, deployments).values(id=deployment.id, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=values))
    for incident in out.incidents:
        _upsert_incident(conn, incident)
    for info in out.services:
        _upsert_service(conn, info)


def _upsert_incident(conn: Connection, incident: Any) -> None:
    stmt = _insert(conn, incidents).values(
        id=incident.id,
        service=incident.service,
        started_at=incident.started_at,
        resolved_at=incident.resolved_at,
        root_cause=incident.root_cause,
        title=incident.title,
        source=incident.id.split(":", 1)[0],
    )
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
    row = conn.execute(select(incidents).where(incidents.c.id == incident.id)).mappings().one()
    changed: dict[str, Any] = {}
    if incident.started_at is not None and (row["started_at"] is None or incident.started_at < row["started_at"]):
        changed["started_at"] = incident.started_at
    if incident.resolved_at is not None:
        changed["resolved_at"] = incident.resolved_at
    if incident.root_cause is not None:
        changed["root_cause"] = incident.root_cause
    if incident.title and not row["title"]:
        changed["title"] = incident.title
    if changed:
        conn.execute(update(incidents).where(incidents.c.id == incident.id).values(**changed))


def _upsert_service(conn: Connection, info: Any) -> None:
    stmt = _insert(conn, service_info).values(name=info.name, specs={}, updated_at=time.time())
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
    row = conn.execute(select(service_info).where(service_info.c.name == info.name)).mappings().one()
    changed: dict[str, Any] = {"updated_at": time.time()}
    if info.team:
        changed["team"] = info.team
    if info.preview_url:
        changed["preview_url"] = info.preview_url
    if info.clear_preview:
        changed["preview_url"] = None
    if info.spec_env and info.spec is not None:
        changed["specs"] = {**(row["specs"] or {}), info.spec_env: info.spec}
    conn.execute(update(service_info).where(service_info.c.name == info.name).values(**changed))
