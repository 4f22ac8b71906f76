"""The four keys, computed from normalised records. Pure functions: docs/dora.md is their specification.

- Only successful deployments to `production` count.
- Deployment frequency: counted deploys in the window ÷ the window's days; the
  bucket follows Four Keys (daily / weekly / monthly / yearly).
- Lead time for changes: median, over every counted deploy in the window and
  every commit it shipped, of deploy time − commit time. Pairs of zero or less
  (a commit dated after its deploy: clock skew, rebases) are dropped, as Four Keys does.
- Change failure rate: counted deploys in the window that an incident is
  linked to ÷ counted deploys in the window. An incident is linked to the
  deploy that first shipped its root-cause commit when it names one (and such a
  deploy exists), else to the service's last counted deploy at or before the
  incident started.
- Time to restore: median of resolved − started over the incidents that
  started in the window and are resolved.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..errors import invalid_input
from .model import DAY, HOUR, Deployment, Incident

LEVELS = ("elite", "high", "medium", "low")
LEVELS_FILE = Path(__file__).parent / "data" / "dora_levels.yaml"
WEEK = 7 * DAY
MONTH = 30 * DAY


@dataclass
class Dataset:
    deployments: list[Deployment] = field(default_factory=list)
    change_times: dict[tuple[str, str], float] = field(default_factory=dict)
    push_commits: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    incidents: list[Incident] = field(default_factory=list)

    def shipped(self, deploy: Deployment) -> set[str]:
        """The commits a deploy shipped: those it names, those of the push whose head it deployed, and the head."""
        found = set(deploy.changes)
        if deploy.sha:
            found.add(deploy.sha)
            found |= self.push_commits.get((deploy.service, deploy.sha), set())
        return found

    def counted(self) -> list[Deployment]:
        return sorted((d for d in self.deployments if d.counts), key=lambda d: (d.time, d.id))


@dataclass
class Figures:
    deploys: int
    per_day: float
    bucket: str | None
    lead_time_hours: float | None
    lead_samples: int
    failed_deploys: int
    change_failure_rate: float | None
    restore_hours: float | None
    incidents: int
    levels: dict[str, str | None]
    level: str | None

    def to_json(self) -> dict[str, Any]:
        """The API's shape: null where there is no data."""
        return {
            "deploymentFrequency": {"perDay": _round(self.per_day), "bucket": self.bucket},
            "leadTimeForChanges": {"medianHours": _round(self.lead_time_hours)},
            "changeFailureRate": {"ratio": _round(self.change_failure_rate)},
            "timeToRestore": {"medianHours": _round(self.restore_hours)},
            "level": self.level,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def link_incidents(data: Dataset) -> dict[str, str | None]:
    """Incident id → the id of the deploy it is attributed to (None when the service had no deploy before it)."""
    by_service: dict[str, list[Deployment]] = defaultdict(list)
    for deploy in data.counted():
        by_service[deploy.service].append(deploy)
    links: dict[str, str | None] = {}
    for incident in data.incidents:
        deploys = by_service.get(incident.service, [])
        linked: str | None = None
        if incident.root_cause:
            cause = incident.root_cause.lower()
            for deploy in deploys:
                if any(sha.startswith(cause) for sha in data.shipped(deploy)):
                    linked = deploy.id
                    break
        if linked is None and incident.started_at is not None:
            times = [d.time for d in deploys]
            index = bisect.bisect_right(times, incident.started_at)
            linked = deploys[index - 1].id if index else None
        links[incident.id] = linked
    return links


def deployment_bucket(times: Iterable[float], start: float, end: float) -> str | None:
    """Four Keys' bucket over the window, counted back from its end in whole weeks and 30-day months."""
    stamps = sorted(t for t in times if start <= t < end)
    if not stamps:
        return None
    span = end - start
    weeks = max(1, int(span // WEEK))
    week_days: list[int] = []
    for i in range(weeks):
        week_end = end - i * WEEK
        week_start = max(start, week_end - WEEK)
        week_days.append(len({int((t - week_start) // DAY) for t in stamps if week_start <= t < week_end}))
    if statistics.median(week_days) >= 3:
        return "daily"
    if statistics.median([1 if days else 0 for days in week_days]) >= 1:
        return "weekly"
    months = max(1, int(span // MONTH))
    had = []
    for i in range(months):
        month_end = end - i * MONTH
        month_start = max(start, month_end - MONTH)
        had.append(1 if any(month_start <= t < month_end for t in stamps) else 0)
    if statistics.median(had) >= 1:
        return "monthly"
    return "yearly"


def compute(data: Dataset, services: set[str], start: float, end: float, version: str | None = None) -> Figures:
    deploys = [d for d in data.counted() if d.service in services and start <= d.time < end]
    days = (end - start) / DAY
    lead = [
        (deploy.time - data.change_times[(deploy.service, sha)]) / HOUR
        for deploy in deploys
        for sha in sorted(data.shipped(deploy))
        if (deploy.service, sha) in data.change_times and deploy.time > data.change_times[(deploy.service, sha)]
    ]
    links = link_incidents(data)
    failed = {links[i.id] for i in data.incidents if links.get(i.id)} & {d.id for d in deploys}
    restores = [
        (i.resolved_at - i.started_at) / HOUR
        for i in data.incidents
        if i.service in services
        and i.started_at is not None
        and start <= i.started_at < end
        and i.resolved_at is not None
        and i.resolved_at >= i.started_at
    ]
    incidents_in_window = sum(
        1 for i in data.incidents if i.service in services and i.started_at is not None and start <= i.started_at < end
    )
    figures = Figures(
        deploys=len(deploys),
        per_day=len(deploys) / days if days > 0 else 0.0,
        bucket=deployment_bucket((d.time for d in deploys), start, end),
        lead_time_hours=statistics.median(lead) if lead else None,
        lead_samples=len(lead),
        failed_deploys=len(failed),
        change_failure_rate=len(failed) / len(deploys) if deploys else None,
        restore_hours=statistics.median(restores) if restores else None,
        incidents=incidents_in_window,
        levels={},
        level=None,
    )
    figures.levels = metric_levels(figures, version)
    known = [level for level in figures.levels.values() if level is not None]
    figures.level = max(known, key=LEVELS.index) if known else None
    return figures


# -- levels -----------------------------------------------------------------------


@cache
def _levels_data() -> dict[str, Any]:
    data = yaml.safe_load(LEVELS_FILE.read_text())
    assert isinstance(data, dict)  # noqa: S101 - our own data file
    return data


def level_versions() -> list[str]:
    return sorted(_levels_data()["versions"])


def levels_for(version: str | None) -> dict[str, Any]:
    data = _levels_data()
    chosen = version or data["default"]
    if chosen not in data["versions"]:
        raise invalid_input(f"unknown DORA levels version {chosen!r}; known: {', '.join(level_versions())}")
    found = data["versions"][chosen]
    assert isinstance(found, dict)  # noqa: S101 - our own data file
    return found


def metric_levels(figures: Figures, version: str | None = None) -> dict[str, str | None]:
    table = levels_for(version)

    def grade(metric: str, passes: Any) -> str:
        for level in LEVELS[:-1]:
            rule = table[metric].get(level)
            if rule is not None and passes(rule):
                return level
        return "low"

    bucket, lead, cfr, ttr = figures.bucket, figures.lead_time_hours, figures.change_failure_rate, figures.restore_hours
    return {
        "deploymentFrequency": None
        if bucket is None
        else grade("deploymentFrequency", lambda r: bucket in r["buckets"]),
        "leadTimeForChanges": None if lead is None else grade("leadTimeForChanges", lambda r: lead < r["below"]),
        "changeFailureRate": None if cfr is None else grade("changeFailureRate", lambda r: cfr <= r["atMost"]),
        "timeToRestore": None if ttr is None else grade("timeToRestore", lambda r: ttr < r["below"]),
    }


def at_least(level: str | None, wanted: str) -> bool:
    return level is not None and LEVELS.index(level) <= LEVELS.index(wanted)


def trend(
    data: Dataset, services: set[str], start: float, end: float, points: int = 6, version: str | None = None
) -> list[tuple[float, Figures]]:
    """The figures over `points` equal slices of the window, oldest first, for the charts."""
    step = (end - start) / points
    return [
        (start + (i + 1) * step, compute(data, services, start + i * step, start + (i + 1) * step, version))
        for i in range(points)
    ]
