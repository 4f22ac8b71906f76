"""Health probes, uptime over 24 h / 7 d / 30 d, and SLO status with the error budget left.

The prober GETs each service's health URL (the `pltf.dev/health-url`
annotation, else `<preview URL>/healthz`) every PLTF_PROBE_INTERVAL_SECONDS;
2xx and 3xx are up. Uptime is the share of probes that were up.

With PLTF_PROMETHEUS_URL set, uptime and the SLO come from Prometheus
instead: availability is 1 − the 5xx ratio of `http_requests_total{job=<service>}`
(the golden template's metric), and the error budget left is Sloth's
`slo:period_error_budget_remaining:ratio` when the service has one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
import yaml
from sqlalchemy import and_, case, delete, func, select

from ..logs import get_logger
from .entities import ServiceView, directory
from .model import DAY
from .tables import probes

if TYPE_CHECKING:
    from .parts import PortalParts

UPTIME_WINDOWS = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
DEFAULT_OBJECTIVE = 99.9
SLO_ANNOTATION = "pltf.dev/slo-availability"
KEEP_PROBES_SECONDS = 35 * DAY


async def probe_once(services: PortalParts, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Probes every service with a health URL once, and stores the results."""
    views = await anyio.to_thread.run_sync(directory, services)
    targets = [(view.name, url) for view in views.values() if (url := view.health_url)]
    results: list[dict[str, Any]] = []

    async def one(name: str, url: str) -> None:
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            target, headers = loopback_target(url)
            response = await client.get(target, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        ms = round((time.perf_counter() - started) * 1000, 1)
        ok = status is not None and 200 <= status < 400
        results.append(
            {"service": name, "url": url, "time": time.time(), "ok": ok, "status": status, "ms": ms, "error": error}
        )

    async with anyio.create_task_group() as group:
        for name, url in targets:
            group.start_soon(one, name, url)
    if results:
        await anyio.to_thread.run_sync(_store, services, results)
    return results


def loopback_target(url: str) -> tuple[str, dict[str, str]]:
    """Where to send a probe of `url`, and the Host header it needs.

    Names under `.localhost` are the loopback interface by definition (RFC 6761), but not every
    resolver knows it, and local previews live at `<name>.preview.localhost`.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host.endswith(".localhost"):
        return url, {}
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"127.0.0.1{port}")), {"Host": f"{host}{port}"}


def _store(services: PortalParts, results: list[dict[str, Any]]) -> None:
    with services.engine.begin() as conn:
        conn.execute(probes.insert(), results)
        conn.execute(delete(probes).where(probes.c.time < time.time() - KEEP_PROBES_SECONDS))


async def run_prober(services: PortalParts, interval: float) -> None:
    """Probes forever, every `interval` seconds; the lifespan cancels it."""
    log = get_logger()
    async with httpx.AsyncClient(timeout=min(10.0, max(1.0, interval / 2)), follow_redirects=False) as client:
        while True:
            try:
                await probe_once(services, client)
            except Exception as exc:  # noqa: BLE001 - one bad round must not stop probing
                log.warning("portal: probe round failed", error=str(exc)[:300])
            await anyio.sleep(interval)


def probe_uptime(services: PortalParts, service: str, now: float) -> dict[str, Any]:
    return probe_uptimes(services, [service], now)[service]


def probe_uptimes(services: PortalParts, names: Iterable[str], now: float) -> dict[str, dict[str, Any]]:
    """Uptime per window and the last probe of each service, in two queries whatever the number of services."""
    wanted = sorted(set(names))
    out: dict[str, dict[str, Any]] = {
        name: {label: {"ratio": None, "probes": 0} for label in UPTIME_WINDOWS} | {"last": None} for name in wanted
    }
    if not wanted:
        return out
    columns = []
    for seconds in UPTIME_WINDOWS.values():
        inside = probes.c.time > now - seconds
        up = and_(inside, probes.c.ok.is_(True))
        columns += [func.sum(case((inside, 1), else_=0)), func.sum(case((up, 1), else_=0))]
    longest = max(UPTIME_WINDOWS.values())
    counted = (
        select(probes.c.service, *columns)
        .where(and_(probes.c.service.in_(wanted), probes.c.time > now - longest, probes.c.time <= now))
        .group_by(probes.c.service)
    )
    # The last probe as of `now`, as the windows count them: a probe stored while this request ran (or after
    # a past `end`) would be "last" yet in no window.
    newest = select(probes.c.service, func.max(probes.c.time).label("time")).where(
        and_(probes.c.service.in_(wanted), probes.c.time <= now)
    )
    newest_times = newest.group_by(probes.c.service).subquery()
    last = select(probes).join(
        newest_times, and_(probes.c.service == newest_times.c.service, probes.c.time == newest_times.c.time)
    )
    with services.engine.connect() as conn:
        for row in conn.execute(counted):
            for n, label in enumerate(UPTIME_WINDOWS):
                total, ups = int(row[1 + 2 * n] or 0), int(row[2 + 2 * n] or 0)
                out[row[0]][label] = {"ratio": ups / total if total else None, "probes": total}
        for found in conn.execute(last.order_by(probes.c.id)).mappings():
            out[found["service"]]["last"] = {k: found[k] for k in ("time", "ok", "status", "ms", "url")}
    return out


def objective(view: ServiceView) -> tuple[float, str]:
    """The availability objective in percent, and where it came from."""
    given = view.annotations.get(SLO_ANNOTATION)
    try:
        if given is not None:
            return float(given), "annotation"
    except (TypeError, ValueError):
        pass
    if view.repo is not None:
        for path in ("slo/sloth.yaml", "slo/sloth.yml"):
            try:
                spec = view.repo.yaml(path)
            except (FileNotFoundError, yaml.YAMLError):
                continue
            for slo in (spec or {}).get("slos") or []:
                if isinstance(slo, dict) and "availability" in str(slo.get("name", "")):
                    try:
                        return float(slo["objective"]), path
                    except (KeyError, TypeError, ValueError):
                        break
    return DEFAULT_OBJECTIVE, "default"


def slo_status(target: float, availability: float | None) -> dict[str, Any]:
    budget = 1 - target / 100
    if availability is None:
        return {"objective": target, "availability": None, "status": None, "errorBudgetRemaining": None}
    remaining = 1 - (1 - availability) / budget if budget > 0 else None
    return {
        "objective": target,
        "availability": round(availability, 6),
        "status": "met" if availability * 100 >= target else "breached",
        "errorBudgetRemaining": None if remaining is None else round(remaining, 6),
    }


async def health(
    services: PortalParts, view: ServiceView, now: float, client: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    prometheus = services.settings.portal.prometheus_url
    if prometheus:
        # Off the event loop: the objective may come from parsing the repository's SLO file.
        target, source = await anyio.to_thread.run_sync(objective, view)
        return await _from_prometheus(prometheus, view, target, source, client)
    return await anyio.to_thread.run_sync(probe_health, services, view, now)


def probe_health(
    services: PortalParts, view: ServiceView, now: float, uptime: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`health` from the stored probes (no Prometheus), with `probe_uptimes`' answer when the caller has it.

    Blocking, for a worker thread."""
    target, source = objective(view)
    uptime = uptime or probe_uptime(services, view.name, now)
    slo = slo_status(target, uptime["30d"]["ratio"])
    return {
        "source": "probes",
        "url": view.health_url,
        "uptime": {k: uptime[k] for k in UPTIME_WINDOWS},
        "last": uptime["last"],
        "slo": {**slo, "objectiveSource": source, "window": "30d"},
    }


async def _from_prometheus(
    base: str, view: ServiceView, target: float, source: str, client: httpx.AsyncClient | None
) -> dict[str, Any]:
    job = view.name
    own = client is None
    http = client or httpx.AsyncClient(timeout=10)
    try:

        async def query(expr: str) -> float | None:
            try:
                response = await http.get(f"{base.rstrip('/')}/api/v1/query", params={"query": expr})
                body = response.json()
            except (httpx.HTTPError, ValueError):
                return None
            result = (body.get("data") or {}).get("result") if isinstance(body, dict) else None
            if body.get("status") != "success" or not result:
                return None
            try:
                return float(result[0]["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                return None

        uptime: dict[str, Any] = {}
        for label in UPTIME_WINDOWS:
            errors = f'sum(rate(http_requests_total{{job="{job}",code=~"5.."}}[{label}]))'
            total = f'sum(rate(http_requests_total{{job="{job}"}}[{label}]))'
            ratio = await query(f"1 - (({errors}) or vector(0)) / {total}")
            uptime[label] = {"ratio": None if ratio is None else round(ratio, 6), "probes": None}
        slo = slo_status(target, uptime["30d"]["ratio"])
        remaining = await query(
            f'slo:period_error_budget_remaining:ratio{{sloth_service="{job}",sloth_slo="requests-availability"}}'
        )
        if remaining is not None:
            slo["errorBudgetRemaining"] = round(remaining, 6)
        return {
            "source": "prometheus",
            "url": view.health_url,
            "uptime": uptime,
            "last": None,
            "slo": {**slo, "objectiveSource": source, "window": "30d"},
        }
    finally:
        if own:
            await http.aclose()
