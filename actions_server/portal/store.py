"""Reading the normalised tables back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, union
from sqlalchemy.engine import Engine

from ..db import from_row
from .dora import Dataset
from .model import Deployment, Incident
from .tables import changes, deployments, incidents, push_commits, raw_events, service_info


def load_dataset(engine: Engine, services: set[str] | None = None) -> Dataset:
    data = Dataset()

    def only(table: Any, column: str = "service") -> Any:
        query = select(table)
        return query if services is None else query.where(table.c[column].in_(sorted(services)))

    with engine.connect() as conn:
        for row in conn.execute(only(deployments)).mappings():
            data.deployments.append(
                from_row(Deployment, row, success=bool(row["success"]), changes=tuple(row["changes"] or ()))
            )
        for row in conn.execute(only(changes)).mappings():
            data.change_times[(row["service"], row["sha"])] = row["time"]
        for row in conn.execute(only(push_commits)).mappings():
            data.push_commits.setdefault((row["service"], row["head"]), set()).add(row["sha"])
        for row in conn.execute(only(incidents)).mappings():
            data.incidents.append(from_row(Incident, row))
    return data


def event_services(engine: Engine) -> set[str]:
    """Every service any event named."""
    query = union(
        select(deployments.c.service),
        select(changes.c.service),
        select(incidents.c.service),
        select(service_info.c.name),
    )
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(query)}


def service_rows(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {row["name"]: dict(row) for row in conn.execute(select(service_info)).mappings()}


def raw_event_count(engine: Engine, source: str | None = None) -> int:
    query = select(func.count()).select_from(raw_events)
    if source is not None:
        query = query.where(raw_events.c.source == source)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
