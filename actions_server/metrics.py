"""Prometheus metrics: runs by action and status, and how long they take."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        # A registry per server, so tests that start several apps do not collide.
        self.registry = CollectorRegistry()
        self.runs = Counter("pltf_runs", "Finished runs", ["action", "status"], registry=self.registry)
        self.duration = Histogram(
            "pltf_run_duration_seconds", "Run duration", ["action"], buckets=RUN_BUCKETS, registry=self.registry
        )
        self.requests = Counter("pltf_http_requests", "HTTP requests", ["method", "status"], registry=self.registry)

    def observe(self, action: str, status: str, seconds: float) -> None:
        self.runs.labels(action, status).inc()
        self.duration.labels(action).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
