"""Golden-signal metrics: traffic, errors and latency per route, and requests in flight."""

import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

log = structlog.get_logger("http")


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, latency_slo_threshold_seconds: float) -> None:
        buckets = sorted({*DEFAULT_BUCKETS, latency_slo_threshold_seconds})
        self.requests = Counter(
            "http_requests", "HTTP requests handled.", ["method", "route", "code"], registry=registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to handle an HTTP request.",
            ["method", "route"],
            buckets=buckets,
            registry=registry,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress", "HTTP requests being handled.", ["method"], registry=registry
        )


def route_template(request: Request) -> str:
    """The matched route's path template, so that `/items/1` and `/items/2` share a series.

    Unmatched paths share one series, so scanners cannot blow up the label set.
    """
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def instrument(app: FastAPI, registry: CollectorRegistry, latency_slo_threshold_seconds: float) -> None:
    metrics = HttpMetrics(registry, latency_slo_threshold_seconds)
    unobserved = {"/metrics", "/healthz", "/readyz"}

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in unobserved:
            return await call_next(request)
        method = request.method
        started = time.perf_counter()
        code = 500
        metrics.in_progress.labels(method).inc()
        try:
            response = await call_next(request)
            code = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - started
            # Routing has run by now and recorded the matched route in the scope.
            route = route_template(request)
            metrics.in_progress.labels(method).dec()
            metrics.requests.labels(method, route, str(code)).inc()
            metrics.duration.labels(method, route).observe(elapsed)
            log.info("request", method=method, route=route, code=code, duration_ms=round(elapsed * 1000, 2))

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
