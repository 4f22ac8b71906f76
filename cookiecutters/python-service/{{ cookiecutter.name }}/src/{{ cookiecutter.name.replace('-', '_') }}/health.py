"""Liveness and readiness.

`/healthz` only says the process serves requests, so Kubernetes restarts a
wedged pod but never restarts pods because a dependency is down.  `/readyz`
checks the dependencies, so a pod that cannot reach them gets no traffic.
"""

from collections.abc import Awaitable, Callable

{% if cookiecutter.database == "postgres" -%}
import psycopg
{% endif -%}
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

ReadinessCheck = Callable[[], Awaitable[None]]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            results[name] = f"failed: {type(exc).__name__}"
    ready = all(result == "ok" for result in results.values())
    body = Health(status="ok" if ready else "unavailable", checks=results)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
{%- if cookiecutter.database == "postgres" %}


class DatabaseNotConfiguredError(RuntimeError):
    pass


def postgres_check(dsn: str | None, timeout_seconds: float) -> ReadinessCheck:
    """A readiness check that opens a connection and runs `SELECT 1`."""

    async def check() -> None:
        if dsn is None:
            raise DatabaseNotConfiguredError("APP_DATABASE_URL is not set")
        connect_timeout = max(1, round(timeout_seconds))
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=connect_timeout) as connection:
            await connection.execute("SELECT 1")

    return check
{%- endif %}
