"""The composition root: builds the application from the settings and hands each part what it needs.

HTTP itself is in api/ (routers and their typed dependencies); every decision is
made in the run engine and the parts services.py builds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI

from . import __version__
from .api import changes, drift, ops, runs, templates
from .api.errors import add_error_handlers
from .api.middleware import RequestContextMiddleware
from .auth import load_tokens, read_generated_token
from .backstage_actions import backstage_actions_router
from .catalog.api import catalog_api
from .catalog.pages import catalog_pages
from .config import Settings
from .events import EventBus
from .forges.git_http import git_routes
from .logs import configure_logging, get_logger
from .metrics import Metrics
from .portal.routes import portal_router
from .portal.snapshots import fingerprint as portal_fingerprint
from .previews.api import PreviewRouter, preview_loop, preview_routes
from .redact import Redactor
from .runs import RunEngine
from .sandbox import sandbox_summary
from .services import Services


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    redactor = Redactor()
    configure_logging(redactor, settings.server.log_level)
    state: dict[str, Any] = {}
    events = EventBus()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.create(settings, redactor, events)
        tokens, generated = load_tokens(settings)
        if generated is not None:  # the local token is as secret as a configured one
            redactor.add([read_generated_token(generated) or ""])
        engine = RunEngine(services, metrics)
        interrupted = await anyio.to_thread.run_sync(engine.recover, True)
        await anyio.to_thread.run_sync(services.register_platform_entities)
        # Probed once, here: which isolation hooks and previews get (or why they will be refused).
        sandbox = await anyio.to_thread.run_sync(sandbox_summary, settings)
        state.update(services=services, engine=engine)
        app.state.tokens = tokens
        app.state.services = services
        app.state.engine = engine
        app.state.actions = engine.actions
        log = get_logger(replica=engine.replica)
        log.info(
            "pltf started",
            url=settings.server.base_url,
            data_dir=str(settings.storage.data_dir),
            database=settings.storage.resolved_database_url.split("://", 1)[0],
            token_file=str(generated) if generated else None,
            interrupted_runs=len(interrupted),
            **sandbox,
        )
        keep_alive = asyncio.create_task(engine.keep_alive())
        # Previews: adopt or clean up what a previous run left, then reap; stops with keep_alive.
        previews_task = asyncio.create_task(preview_loop(services))
        keep_alive.add_done_callback(lambda _: previews_task.cancel())
        try:
            yield
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
            await engine.drain()
            services.close()

    app = FastAPI(
        title="pltf action server",
        version=__version__,
        description="Self-describing platform actions, run with streamed logs. See README.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(RequestContextMiddleware, settings=settings, metrics=metrics)
    app.mount("/git", git_routes(settings, events))
    # Previews: clean URLs (by Host), /previews/<id>/, /v1/previews.
    app.add_middleware(PreviewRouter, settings=settings, state=state)
    app.include_router(preview_routes(state))

    def services() -> Services:
        return state["services"]  # type: ignore[no-any-return]

    app.include_router(portal_router(services))  # Portal: /, /services, /teams, /v1/dora…, webhooks, prober

    def engine() -> RunEngine:
        return state["engine"]  # type: ignore[no-any-return]

    app.include_router(catalog_api(services))
    app.include_router(backstage_actions_router(settings, engine, services))  # Backstage's actions registry
    # The catalog's list page is kept until the catalog changes, which the portal's fingerprint reads.
    app.include_router(catalog_pages(services, portal_fingerprint))
    add_error_handlers(app)
    for router in (ops.router, runs.router, templates.router, changes.router, drift.router):
        app.include_router(router)
    return app
