"""What the pages and the JSON API show, computed once per request from the stored events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..errors import not_found
from ..updates.fleet import template_versions
from . import cost, dora, health, scorecards
from .entities import ServiceView, directory
from .model import DAY, iso
from .store import load_dataset

if TYPE_CHECKING:
    from .parts import PortalParts

RECENT = 10
SCORECARD_WINDOW = 30 * DAY


def find_service(views: dict[str, ServiceView], name: str) -> ServiceView:
    view = views.get(name.lower())
    if view is None:
        raise not_found(f"no service named {name!r}: it has no catalog entry, repository or events")
    return view


def team_services(views: dict[str, ServiceView], team: str) -> list[ServiceView]:
    found = [v for v in views.values() if v.team and v.team.lower() == team.lower()]
    if not found:
        raise not_found(f"no team named {team!r} owns a service")
    return found


def dora_figures(services: PortalParts, names: set[str], start: float, end: float) -> dora.Figures:
    data = load_dataset(services.engine, names)
    return dora.compute(data, names, start, end, services.settings.portal.dora_levels)


def dora_json(services: PortalParts, names: set[str], start: float, end: float) -> dict[str, Any]:
    return dora_figures(services, names, start, end).to_json()


def recent(services: PortalParts, names: set[str]) -> dict[str, list[dict[str, Any]]]:
    data = load_dataset(services.engine, names)
    links = dora.link_incidents(data)
    failed = {deploy_id for deploy_id in links.values() if deploy_id}
    deploys = sorted(data.deployments, key=lambda d: d.time, reverse=True)[:RECENT]
    incidents = sorted(data.incidents, key=lambda i: i.started_at or 0, reverse=True)[:RECENT]
    return {
        "deployments": [
            {
                "id": d.id,
                "service": d.service,
                "environment": d.environment,
                "status": "success" if d.success else "failure",
                "time": iso(d.time),
                "sha": d.sha,
                "counts": d.counts,
                "linkedIncident": d.id in failed,
            }
            for d in deploys
        ],
        "incidents": [
            {
                "id": i.id,
                "service": i.service,
                "title": i.title,
                "startedAt": iso(i.started_at),
                "resolvedAt": iso(i.resolved_at),
                "rootCause": i.root_cause,
                "linkedDeployment": links.get(i.id),
            }
            for i in incidents
        ],
    }


async def allocations(services: PortalParts, window: str) -> list[dict[str, Any]] | None:
    base = services.settings.portal.opencost_url
    return await cost.opencost_allocations(base, window) if base else None


def scorecard_for(services: PortalParts, view: ServiceView, end: float) -> dict[str, Any]:
    level = dora_figures(services, {view.name}, end - SCORECARD_WINDOW, end).level
    versions = template_versions(services.settings, services.templates)
    return scorecards.scorecard(view, level, services.settings.portal.scorecard_file, versions)


async def service_page(services: PortalParts, name: str, window: str, seconds: float, end: float) -> dict[str, Any]:
    views = await anyio.to_thread.run_sync(directory, services)
    view = find_service(views, name)
    start = end - seconds
    names = {view.name}

    def compute() -> dict[str, Any]:
        data = load_dataset(services.engine, names)
        version = services.settings.portal.dora_levels
        return {
            "figures": dora.compute(data, names, start, end, version),
            "trend": dora.trend(data, names, start, end, version=version),
            "recent": recent(services, names),
            "scorecard": scorecard_for(services, view, end),
        }

    computed = await anyio.to_thread.run_sync(compute)
    found = await allocations(services, window)
    return {
        "view": view,
        "health": await health.health(services, view, end),
        "cost": await anyio.to_thread.run_sync(cost.service_cost, services, view, seconds, found),
        **computed,
    }


async def overview(
    services: PortalParts, window: str, seconds: float, end: float, team: str | None = None
) -> dict[str, Any]:
    """The home page's (or a team page's) rows: every service with health, DORA level and cost."""
    views = await anyio.to_thread.run_sync(directory, services)
    chosen = team_services(views, team) if team else list(views.values())
    names = {v.name for v in chosen}
    start = end - seconds
    found = await allocations(services, window)

    def compute() -> dict[str, Any]:
        data = load_dataset(services.engine, names)
        version = services.settings.portal.dora_levels
        uptimes = None if services.settings.portal.prometheus_url else health.probe_uptimes(services, names, end)
        rows = []
        for view in chosen:
            figures = dora.compute(data, {view.name}, start, end, version)
            rows.append(
                {
                    "view": view,
                    "figures": figures,
                    "cost": cost.service_cost(services, view, seconds, found),
                    "scorecard": scorecards.scorecard(
                        view,
                        figures.level,
                        services.settings.portal.scorecard_file,
                        template_versions(services.settings, services.templates),
                    )
                    if seconds == SCORECARD_WINDOW
                    else scorecard_for(services, view, end),
                }
            )
            if uptimes is not None:
                rows[-1]["health"] = health.probe_health(services, view, end, uptimes[view.name])
        return {
            "rows": rows,
            "figures": dora.compute(data, names, start, end, version),
            "trend": dora.trend(data, names, start, end, version=version),
            "recent": recent(services, names),
        }

    computed = await anyio.to_thread.run_sync(compute)
    for row in computed["rows"]:
        if "health" not in row:
            row["health"] = await health.health(services, row["view"], end)
    return computed
