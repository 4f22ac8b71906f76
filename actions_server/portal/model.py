"""Normalised records (changes, deployments, incidents), time and window parsing."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import FieldError, invalid_input

SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9._]{0,98}[a-z0-9])?$")
SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
WINDOW = re.compile(r"^(\d{1,4})([hdw])$")
WINDOW_UNITS = {"h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
MAX_WINDOW_SECONDS = 400 * 86400.0
DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True)
class Change:
    service: str
    sha: str
    time: float


@dataclass(frozen=True)
class PushCommit:
    service: str
    head: str
    sha: str


@dataclass(frozen=True)
class Deployment:
    id: str
    service: str
    environment: str
    success: bool
    time: float
    sha: str | None = None
    changes: tuple[str, ...] = ()

    @property
    def counts(self) -> bool:
        """Only successful production deployments count toward DORA."""
        return self.success and self.environment == "production"


@dataclass(frozen=True)
class Incident:
    id: str
    service: str
    started_at: float | None = None
    resolved_at: float | None = None
    root_cause: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class ServiceUpdate:
    """Facts about a service from the platform's own events."""

    name: str
    team: str | None = None
    preview_url: str | None = None
    clear_preview: bool = False
    spec_env: str | None = None
    spec: dict[str, Any] | None = None


@dataclass
class Normalised:
    changes: list[Change] = field(default_factory=list)
    push_commits: list[PushCommit] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    services: list[ServiceUpdate] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "changes": len(self.changes),
            "deployments": len(self.deployments),
            "incidents": len(self.incidents),
        }


def parse_time(value: Any, what: str = "timestamp") -> float:
    """ISO 8601 (with Z, an offset, or GitLab's `2024-06-26 09:00:00 UTC`) or epoch seconds, as epoch seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an ISO 8601 time")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be an ISO 8601 time")
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"{what} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def maybe_time(value: Any) -> float | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def service_name(value: Any) -> str | None:
    """A service name as the portal keys it (lowercase), or None when it is not one."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    return name if SERVICE_NAME.match(name) else None


def parse_window(window: str) -> float:
    match = WINDOW.match(window.strip())
    if not match:
        raise invalid_input(
            "window must be a number and a unit: h, d or w (e.g. 24h, 30d, 12w)", [FieldError("window", "bad format")]
        )
    seconds = int(match.group(1)) * WINDOW_UNITS[match.group(2)]
    if not 0 < seconds <= MAX_WINDOW_SECONDS:
        raise invalid_input("window must be between 1h and 400d", [FieldError("window", "out of range")])
    return seconds


def parse_end(end: str | None) -> float:
    if end is None or not end.strip():
        return time.time()
    try:
        return parse_time(end, "end")
    except ValueError as exc:
        raise invalid_input(str(exc), [FieldError("end", "not an ISO 8601 time")]) from None
