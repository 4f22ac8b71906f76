"""The portal's routes: the JSON API (token), the pages (open), the webhooks; and the prober's lifespan.

Mounted by one line in `create_app`: `app.include_router(portal_router(services))`.
FastAPI runs this router's lifespan inside the app's, so the prober starts once
the services exist and stops before they close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ..api.deps import Authed
from ..api.models import CostSummary, Dora, PortalServiceList, errors
from ..http_cache import cached_response
from ..services import Services
from . import cost, health, report
from .charts import trend_chart
from .dora import Figures
from .entities import directory
from .model import parse_end, parse_window
from .snapshots import portal_snapshots
from .webhooks import webhook_routes

TEMPLATES = Path(__file__).parent / "templates"
Window = Annotated[str, Query(max_length=10, description="e.g. 24h, 30d, 12w")]
End = Annotated[str | None, Query(max_length=40, description="ISO 8601 end of the window; default now")]


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), auto_reload=False)
    env.filters.update(
        hours=lambda v: "—" if v is None else f"{v:.1f} h",
        perday=lambda v: "—" if v is None else f"{v:.2f}/day",
        pct=lambda v: "—" if v is None else f"{v * 100:.1f}%",
        money=lambda v, currency="USD": "—" if v is None else f"{v:,.2f} {currency}",
        uptime=_uptime,
        chart=_chart,
    )
    return env


def _uptime(health_info: dict[str, Any], window: str) -> str:
    ratio = (health_info.get("uptime") or {}).get(window, {}).get("ratio")
    return "no probes" if ratio is None else f"{ratio * 100:.2f}%"


def _chart(trend: list[tuple[float, Figures]], field: str, label: str, bars: bool = False, unit: str = "") -> Markup:
    return trend_chart([(when, getattr(figures, field)) for when, figures in trend], label, unit, bars)


def portal_router(services: Callable[[], Services]) -> APIRouter:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        current = services()
        settings = current.settings
        prober = None
        if settings.portal.probe_interval_seconds > 0:
            prober = asyncio.create_task(health.run_prober(current, settings.portal.probe_interval_seconds))
        try:
            yield
        finally:
            if prober is not None:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober

    router = APIRouter(lifespan=lifespan)
    router.include_router(webhook_routes(services))
    pages = _environment()

    snapshots = portal_snapshots()

    async def stored(
        request: Request, compute: Callable[[], Awaitable[bytes]], *, end: str | None, page: bool
    ) -> Response:
        """The stored answer to this URL, computed only when its inputs changed; ETag and max-age on it."""
        current = services()
        key = f"{request.url.path}?{request.url.query}"
        found = await snapshots.get(current, key, compute, slides=end is None)
        media_type = "text/html; charset=utf-8" if page else "application/json"
        max_age = current.settings.portal.portal_cache_seconds
        return cached_response(request, found.body, media_type, max_age, public=page, etag=found.etag)

    async def stored_json(
        request: Request, compute: Callable[[], Awaitable[dict[str, Any]]], end: str | None = None
    ) -> Response:
        async def body() -> bytes:
            return bytes(JSONResponse(await compute()).body)

        return await stored(request, body, end=end, page=False)

    # -- JSON API -------------------------------------------------------------

    # The answers are stored bytes (see `stored`); response_model keeps their documented shape.
    api = APIRouter(prefix="/v1", tags=["portal"], responses=errors(401, 422))

    @api.get("/services/{name}/dora", response_model=Dora, responses=errors(404))
    async def service_dora(request: Request, name: str, _: Authed, window: Window = "30d", end: End = None) -> Response:
        """The four keys of one service: null where there is no data."""
        seconds, until = parse_window(window), parse_end(end)

        async def compute() -> dict[str, Any]:
            view = report.find_service(await anyio.to_thread.run_sync(directory, services()), name)
            return await anyio.to_thread.run_sync(report.dora_json, services(), {view.name}, until - seconds, until)

        return await stored_json(request, compute, end)

    @api.get("/teams/{team}/dora", response_model=Dora, responses=errors(404))
    async def team_dora(request: Request, team: str, _: Authed, window: Window = "30d", end: End = None) -> Response:
        """The four keys over all the services a team owns, pooled."""
        seconds, until = parse_window(window), parse_end(end)

        async def compute() -> dict[str, Any]:
            views = report.team_services(await anyio.to_thread.run_sync(directory, services()), team)
            names = {v.name for v in views}
            return await anyio.to_thread.run_sync(report.dora_json, services(), names, until - seconds, until)

        return await stored_json(request, compute, end)

    @api.get("/dora", response_model=Dora)
    async def portfolio_dora(request: Request, _: Authed, window: Window = "30d", end: End = None) -> Response:
        """The four keys over every service (the portfolio)."""
        seconds, until = parse_window(window), parse_end(end)

        async def compute() -> dict[str, Any]:
            names = set(await anyio.to_thread.run_sync(directory, services()))
            return await anyio.to_thread.run_sync(report.dora_json, services(), names, until - seconds, until)

        return await stored_json(request, compute, end)

    @api.get("/services", response_model=PortalServiceList)
    async def list_portal_services(request: Request, _: Authed, window: Window = "30d", end: End = None) -> Response:
        """Every service with its team, health, DORA level, scorecard level and cost."""
        seconds, until = parse_window(window), parse_end(end)

        async def compute() -> dict[str, Any]:
            found = await report.overview(services(), window, seconds, until)
            return {
                "services": [
                    {
                        "name": row["view"].name,
                        "team": row["view"].team,
                        "health": row["health"],
                        "dora": row["figures"].to_json(),
                        "scorecard": {
                            "level": row["scorecard"]["level"],
                            "passed": row["scorecard"]["passed"],
                            "total": row["scorecard"]["total"],
                        },
                        "cost": {
                            k: row["cost"][k]
                            for k in (
                                "currency",
                                "cost",
                                "forecastMonthly",
                                "budgetMonthly",
                                "warnings",
                                "estimate",
                                "basis",
                            )
                        },
                    }
                    for row in found["rows"]
                ]
            }

        return await stored_json(request, compute, end)

    @api.get("/services/{name}/health", response_model=dict[str, Any], responses=errors(404))
    async def service_health(request: Request, name: str, _: Authed, end: End = None) -> Response:
        """Uptime over 24 h, 7 d and 30 d; SLO status and the error budget left."""
        until = parse_end(end)

        async def compute() -> dict[str, Any]:
            view = report.find_service(await anyio.to_thread.run_sync(directory, services()), name)
            return await health.health(services(), view, until)

        return await stored_json(request, compute, end)

    @api.get("/services/{name}/scorecard", response_model=dict[str, Any], responses=errors(404))
    async def service_scorecard(request: Request, name: str, _: Authed, end: End = None) -> Response:
        """Every rule's result with how to fix it, and the level reached."""
        until = parse_end(end)

        async def compute() -> dict[str, Any]:
            view = report.find_service(await anyio.to_thread.run_sync(directory, services()), name)
            return await anyio.to_thread.run_sync(report.scorecard_for, services(), view, until)

        return await stored_json(request, compute, end)

    @api.get("/services/{name}/cost", response_model=dict[str, Any], responses=errors(404))
    async def service_cost(request: Request, name: str, _: Authed, window: Window = "30d") -> Response:
        """Cost per env over the window, the month's forecast, budgets and warnings."""
        seconds = parse_window(window)

        async def compute() -> dict[str, Any]:
            view = report.find_service(await anyio.to_thread.run_sync(directory, services()), name)
            found = await report.allocations(services(), window)
            return await anyio.to_thread.run_sync(cost.service_cost, services(), view, seconds, found)

        return await stored_json(request, compute)

    @api.get("/costs", response_model=CostSummary)
    async def costs(
        request: Request,
        _: Authed,
        window: Window = "30d",
        by: Annotated[str, Query(pattern="^(env|service|experiment)$")] = "service",
    ) -> Response:
        """Cost summed per env, per service or per experiment."""
        seconds = parse_window(window)

        async def compute() -> dict[str, Any]:
            views = await anyio.to_thread.run_sync(directory, services())
            found = await report.allocations(services(), window)

            def each() -> list[dict[str, Any]]:
                return [cost.service_cost(services(), view, seconds, found) for view in views.values()]

            reports = await anyio.to_thread.run_sync(each)
            return {
                "by": by,
                "window": window,
                "source": "opencost" if found is not None else "requests",
                "currency": cost.price_sheet(services().settings.portal.price_sheet)["currency"],
                "items": cost.aggregate(reports, by),
                "warnings": [w for r in reports for w in r["warnings"]],
            }

        return await stored_json(request, compute)

    router.include_router(api)

    # -- pages (no login) -----------------------------------------------------

    # Called in a worker thread: a page of hundreds of rows would otherwise hold up the event loop.
    def render(template: str, window: str, end: str | None, **context: Any) -> bytes:
        params = {k: v for k, v in (("window", window if window != "30d" else None), ("end", end)) if v}
        query = f"?{urlencode(params)}" if params else ""
        return pages.get_template(template).render(window=window, end_param=end, query=query, **context).encode()

    @router.get("/", response_class=HTMLResponse, tags=["portal: pages"], responses=errors(422))
    async def home_page(request: Request, window: Window = "30d", end: End = None) -> Response:
        seconds, until = parse_window(window), parse_end(end)

        async def compute() -> bytes:
            found = await report.overview(services(), window, seconds, until)
            return await anyio.to_thread.run_sync(lambda: render("home.html", window, end, **found))

        return await stored(request, compute, end=end, page=True)

    @router.get("/services/{name}", response_class=HTMLResponse, tags=["portal: pages"], responses=errors(404, 422))
    async def service_page(request: Request, name: str, window: Window = "30d", end: End = None) -> Response:
        seconds, until = parse_window(window), parse_end(end)

        async def compute() -> bytes:
            found = await report.service_page(services(), name, window, seconds, until)
            return await anyio.to_thread.run_sync(lambda: render("service.html", window, end, **found))

        return await stored(request, compute, end=end, page=True)

    @router.get("/teams/{team}", response_class=HTMLResponse, tags=["portal: pages"], responses=errors(404, 422))
    async def team_page(request: Request, team: str, window: Window = "30d", end: End = None) -> Response:
        seconds, until = parse_window(window), parse_end(end)

        async def compute() -> bytes:
            found = await report.overview(services(), window, seconds, until, team=team)
            return await anyio.to_thread.run_sync(lambda: render("team.html", window, end, team=team, **found))

        return await stored(request, compute, end=end, page=True)

    return router
