"""The ASGI application: `uvicorn {{ cookiecutter.name.replace('-', '_') }}.app:app`."""

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from . import __version__
from .health import {% if cookiecutter.database == "postgres" %}ReadinessCheck, postgres_check{% else %}ReadinessCheck{% endif %}
from .health import router as health_router
from .items import router as items_router
from .logging_config import configure_logging
from .metrics import instrument
from .settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title={{ cookiecutter.name | python_string }},
        description={{ cookiecutter.description | python_string }},
        version=__version__,
    )
    # One registry per app, so tests can build several apps in one process.
    instrument(app, CollectorRegistry(), settings.latency_slo_threshold_seconds)
    readiness_checks: dict[str, ReadinessCheck] = {}
{%- if cookiecutter.database == "postgres" %}
    readiness_checks["database"] = postgres_check(settings.database_dsn(), settings.database_timeout_seconds)
{%- endif %}
    app.state.readiness_checks = readiness_checks
    app.include_router(health_router)
    app.include_router(items_router)
    return app


app = create_app()
