"""The portal's routes: the JSON API under /v1 (token) and the pages (open).

Each answer is stored until its inputs change (`Stored`); the figures come from
portal/report.py, the pages are rendered by portal/pages.py. The webhooks are in
api/webhooks.py; the prober is started by the composition root (app.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..http_cache import cached_response
from ..portal import cost, health, report
from ..portal.entities import ServiceView, directory
from ..portal.model import parse_end, parse_window
from ..portal.pages import render_page
from ..portal.parts import PortalParts
from ..snapshots import Snapshots
from .deps import Authed, PortalPartsDep, PortalSnapshotsDep
from .models import CostSummary, Dora, Health, PortalServiceList, Scorecard, ServiceCost, errors

Window = Annotated[str, Query(max_length=10, description="e.g. 24h, 30d, 12w")]
End = Annotated[str | None, Query(max_length=40, description="ISO 8601 end of the window; default now")]


@dataclass(frozen=True)
class Period:
    """The time a figure covers: as asked (`window`, `end`), and as `seconds` up to `until`."""

    window: str
    end: str | None
    seconds: float
    until: float


async def _period(window: Window = "30d", end: End = None) -> Period:
    return Period(window, end, parse_window(window), parse_end(end))


PeriodDep = Annotated[Period, Depends(_period)]


@dataclass
class Stored:
    """The stored answer to this request's URL, computed only when its inputs changed; ETag and max-age on it."""

    request: Request
    snapshots: Snapshots[PortalParts]
    services: PortalParts

    async def answer(self, compute: Callable[[], Awaitable[bytes]], *, end: str | None, page: bool) -> Response:
        key = f"{self.request.url.path}?{self.request.url.query}"
        found = await self.snapshots.get(self.services, key, compute, slides=end is None)
        media_type = "text/html; charset=utf-8" if page else "application/json"
        max_age = self.services.settings.portal.portal_cache_seconds
        return cached_response(self.request, found.body, media_type, max_age, public=page, etag=found.etag)

    async def json(self, compute: Callable[[], Awaitable[dict[str, Any]]], end: str | None = None) -> Response:
        async def body() -> bytes:
            return bytes(JSONResponse(await compute()).body)

        return await self.answer(body, end=end, page=False)

    async def page(
        self, template: str, figures: Callable[[], Awaitable[dict[str, Any]]], period: Period, **context: Any
    ) -> Response:
        """A page rendered from its figures (in a worker thread: a page of hundreds of rows would hold up the loop)."""

        async def body() -> bytes:
            found = await figures()
            return await anyio.to_thread.run_sync(
                lambda: render_page(template, period.window, period.end, **context, **found)
            )

        return await self.answer(body, end=period.end, page=True)


async def _stored(request: Request, snapshots: PortalSnapshotsDep, services: PortalPartsDep) -> Stored:
    return Stored(request, snapshots, services)


StoredDep = Annotated[Stored, Depends(_stored)]


async def _service(services: PortalParts, name: str) -> ServiceView:
    return report.find_service(await anyio.to_thread.run_sync(directory, services), name)


# -- JSON API -------------------------------------------------------------

# The answers are stored bytes (see `Stored`); response_model keeps their documented shape.
api = APIRouter(prefix="/v1", tags=["portal"], responses=errors(401, 422))


async def _dora(
    services: PortalParts, stored: Stored, period: Period, names: Callable[[dict[str, ServiceView]], set[str]]
) -> Response:
    """The four keys over the services `names` picks from the directory."""

    async def compute() -> dict[str, Any]:
        picked = names(await anyio.to_thread.run_sync(directory, services))
        start = period.until - period.seconds
        return await anyio.to_thread.run_sync(report.dora_json, services, picked, start, period.until)

    return await stored.json(compute, period.end)


@api.get("/services/{name}/dora", response_model=Dora, responses=errors(404))
async def service_dora(
    name: str, _: Authed, period: PeriodDep, services: PortalPartsDep, stored: StoredDep
) -> Response:
    """The four keys of one service: null where there is no data."""
    return await _dora(services, stored, period, lambda views: {report.find_service(views, name).name})


@api.get("/teams/{team}/dora", response_model=Dora, responses=errors(404))
async def team_dora(team: str, _: Authed, period: PeriodDep, services: PortalPartsDep, stored: StoredDep) -> Response:
    """The four keys over all the services a team owns, pooled."""
    return await _dora(services, stored, period, lambda views: {v.name for v in report.team_services(views, team)})


@api.get("/dora", response_model=Dora)
async def portfolio_dora(_: Authed, period: PeriodDep, services: PortalPartsDep, stored: StoredDep) -> Response:
    """The four keys over every service (the portfolio)."""
    return await _dora(services, stored, period, set)


COST_KEYS = ("currency", "cost", "forecastMonthly", "budgetMonthly", "warnings", "estimate", "basis")


@api.get("/services", response_model=PortalServiceList)
async def list_portal_services(_: Authed, period: PeriodDep, services: PortalPartsDep, stored: StoredDep) -> Response:
    """Every service with its team, health, DORA level, scorecard level and cost."""

    async def compute() -> dict[str, Any]:
        found = await report.overview(services, period.window, period.seconds, period.until)
        return {
            "services": [
                {
                    "name": row["view"].name,
                    "team": row["view"].team,
                    "health": row["health"],
                    "dora": row["figures"].to_json(),
                    "scorecard": {k: row["scorecard"][k] for k in ("level", "passed", "total")},
                    "cost": {k: row["cost"][k] for k in COST_KEYS},
                }
                for row in found["rows"]
            ]
        }

    return await stored.json(compute, period.end)


@api.get("/services/{name}/health", response_model=Health, responses=errors(404))
async def service_health(
    name: str, _: Authed, services: PortalPartsDep, stored: StoredDep, end: End = None
) -> Response:
    """Uptime over 24 h, 7 d and 30 d; SLO status and the error budget left."""
    until = parse_end(end)

    async def compute() -> dict[str, Any]:
        return await health.health(services, await _service(services, name), until)

    return await stored.json(compute, end)


@api.get("/services/{name}/scorecard", response_model=Scorecard, responses=errors(404))
async def service_scorecard(
    name: str, _: Authed, services: PortalPartsDep, stored: StoredDep, end: End = None
) -> Response:
    """Every rule's result with how to fix it, and the level reached."""
    until = parse_end(end)

    async def compute() -> dict[str, Any]:
        view = await _service(services, name)
        return await anyio.to_thread.run_sync(report.scorecard_for, services, view, until)

    return await stored.json(compute, end)


@api.get("/services/{name}/cost", response_model=ServiceCost, responses=errors(404))
async def service_cost(
    name: str, _: Authed, services: PortalPartsDep, stored: StoredDep, window: Window = "30d"
) -> Response:
    """Cost per env over the window, the month's forecast, budgets and warnings."""
    seconds = parse_window(window)

    async def compute() -> dict[str, Any]:
        view = await _service(services, name)
        found = await report.allocations(services, window)
        return await anyio.to_thread.run_sync(cost.service_cost, services, view, seconds, found)

    return await stored.json(compute)


@api.get("/costs", response_model=CostSummary)
async def costs(
    _: Authed,
    services: PortalPartsDep,
    stored: StoredDep,
    window: Window = "30d",
    by: Annotated[str, Query(pattern="^(env|service|experiment)$")] = "service",
) -> Response:
    """Cost summed per env, per service or per experiment."""
    seconds = parse_window(window)

    async def compute() -> dict[str, Any]:
        views = await anyio.to_thread.run_sync(directory, services)
        found = await report.allocations(services, window)

        def each() -> list[dict[str, Any]]:
            return [cost.service_cost(services, view, seconds, found) for view in views.values()]

        reports = await anyio.to_thread.run_sync(each)
        return {
            "by": by,
            "window": window,
            "source": "opencost" if found is not None else "requests",
            "currency": cost.price_sheet(services.settings.portal.price_sheet)["currency"],
            "items": cost.aggregate(reports, by),
            "warnings": [w for r in reports for w in r["warnings"]],
        }

    return await stored.json(compute)


# -- pages (no login) -----------------------------------------------------

pages = APIRouter(tags=["portal: pages"])


@pages.get("/", response_class=HTMLResponse, responses=errors(422))
async def home_page(period: PeriodDep, services: PortalPartsDep, stored: StoredDep) -> Response:
    window, seconds, until = period.window, period.seconds, period.until
    return await stored.page("home.html", lambda: report.overview(services, window, seconds, until), period)


@pages.get("/services/{name}", response_class=HTMLResponse, responses=errors(404, 422))
async def service_page(name: str, period: PeriodDep, services: PortalPartsDep, stored: StoredDep) -> Response:
    window, seconds, until = period.window, period.seconds, period.until
    return await stored.page(
        "service.html", lambda: report.service_page(services, name, window, seconds, until), period
    )


@pages.get("/teams/{team}", response_class=HTMLResponse, responses=errors(404, 422))
async def team_page(team: str, period: PeriodDep, services: PortalPartsDep, stored: StoredDep) -> Response:
    window, seconds, until = period.window, period.seconds, period.until
    return await stored.page(
        "team.html", lambda: report.overview(services, window, seconds, until, team=team), period, team=team
    )


router = APIRouter()
router.include_router(api)
router.include_router(pages)
