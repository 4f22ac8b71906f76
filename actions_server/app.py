"""The composition root: builds the application from the settings and hands each part what it needs.

HTTP itself is in api/ (routers and their typed dependencies); every decision is
made in the run engine and the parts services.py builds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI

from . import __version__
from .api import (
    backstage_actions,
    catalog,
    catalog_pages,
    changes,
    drift,
    ops,
    portal,
    previews,
    runs,
    templates,
    webhooks,
)
from .api.backstage_auth import BackstageTokens
from .api.errors import add_error_handlers
from .api.middleware import RequestContextMiddleware
from .api.preview_proxy import PreviewRouter
from .auth import load_tokens, read_generated_token
from .config import Settings
from .events import EventBus
from .forges.git_http import git_routes
from .logs import configure_logging, get_logger
from .metrics import Metrics
from .portal.health import run_prober
from .portal.snapshots import portal_inputs
from .previews.manager import preview_loop
from .redact import Redactor
from .sandbox import sandbox_summary
from .services import Services, run_engine
from .snapshots import Snapshots
from .templates.render_pool import render_pool


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    redactor = Redactor()
    configure_logging(redactor, settings.server.log_level)
    events = EventBus()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.create(settings, redactor, events)
        # Render workers import for seconds: started now, in the background, they take the first burst.
        renders = render_pool(settings)
        renders.start_early(settings)
        tokens, generated = load_tokens(settings)
        if generated is not None:  # the local token is as secret as a configured one
            redactor.add([read_generated_token(generated) or ""])
        engine = run_engine(services, metrics)
        interrupted = await anyio.to_thread.run_sync(engine.recover, True)
        await anyio.to_thread.run_sync(services.register_platform_entities)
        # Probed once, here: which isolation hooks and previews get (or why they will be refused).
        sandbox = await anyio.to_thread.run_sync(sandbox_summary, settings)
        app.state.tokens = tokens
        app.state.services = services
        app.state.engine = engine
        app.state.actions = engine.actions
        app.state.backstage_tokens = BackstageTokens(settings, services.catalog)
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
        previews_task = asyncio.create_task(reap_previews(services))
        keep_alive.add_done_callback(lambda _: previews_task.cancel())
        # The portal's prober records uptime (every configured secret is registered by Services.create).
        prober = None
        if settings.portal.probe_interval_seconds > 0:
            prober = asyncio.create_task(run_prober(services, settings.portal.probe_interval_seconds))
        try:
            yield
        finally:
            if prober is not None:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
            await engine.drain()
            await anyio.to_thread.run_sync(renders.close)  # its workers end with the server
            services.close()

    app = FastAPI(
        title="pltf action server",
        version=__version__,
        description="Self-describing platform actions, run with streamed logs. See README.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    # The catalog's list page is kept until the catalog changes, which the portal's fingerprint reads:
    # both stores wait on the same readings of it.
    inputs = portal_inputs()
    app.state.portal_snapshots = Snapshots(inputs)
    app.state.catalog_snapshots = Snapshots(inputs)
    app.add_middleware(RequestContextMiddleware, settings=settings, metrics=metrics)
    app.mount("/git", git_routes(settings, events))
    # Previews: clean URLs (by Host), /previews/<id>/, /v1/previews.
    app.add_middleware(PreviewRouter, settings=settings)
    add_error_handlers(app)
    for module in (
        previews,
        webhooks,  # the portal's: /webhooks/…, /v1/events
        portal,  # /v1/dora, /v1/services…, and the pages /, /services, /teams
        catalog,
        backstage_actions,  # Backstage's actions registry
        catalog_pages,
        ops,
        runs,
        templates,
        changes,
        drift,
    ):
        app.include_router(module.router)
    return app


async def reap_previews(services: Services) -> None:
    """The preview loop, with the manager built when it starts (as the first request would build it)."""
    await preview_loop(services.previews.get(services), services.settings.previews.preview_reap_seconds)
