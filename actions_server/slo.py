"""Multi-window, multi-burn-rate SLO alerting rules, as Sloth generates them.

The policy is the one from the Google SRE workbook ("Alerting on SLOs"):
page when the error budget of a 30-day period would be gone in about two days
(14.4x over 1h, confirmed over 5m) or five days (6x over 6h, confirmed over
30m); open a ticket at 3x over 1d (confirmed over 2h) and 1x over 3d (confirmed
over 6h).  The short window makes an alert stop soon after the problem does.

The golden-path template (`cookiecutters/python-service`) renders the same
rules with Jinja so that a generated repository needs no pltf at all; a test
keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WINDOW_PLACEHOLDER = "{{.window}}"
"""Sloth's placeholder for the range of an SLI query, e.g. `rate(x[{{.window}}])`."""

# Decimal places kept of the error budget; enough for a 99.9999% objective
# while keeping float noise such as 0.0010000000000000009 out of the rules.
BUDGET_PRECISION = 10


@dataclass(frozen=True)
class BurnRateAlert:
    severity: str
    factor: float
    long_window: str
    short_window: str


MULTIWINDOW_POLICY: tuple[BurnRateAlert, ...] = (
    BurnRateAlert("page", 14.4, "1h", "5m"),
    BurnRateAlert("page", 6, "6h", "30m"),
    BurnRateAlert("ticket", 3, "1d", "2h"),
    BurnRateAlert("ticket", 1, "3d", "6h"),
)
SLI_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
ALERT_NAMES = {"page": "SLOErrorBudgetBurnPage", "ticket": "SLOErrorBudgetBurnTicket"}


def error_budget(objective: float) -> float:
    """The allowed error ratio of an objective given in percent: 99.9 -> 0.001."""
    if not 0 < objective < 100:
        raise ValueError(f"objective must be a percentage between 0 and 100, got {objective}")
    return round(1 - objective / 100, BUDGET_PRECISION)


def burn_rate_rules(
    service: str,
    objective: float,
    *,
    slo: str = "requests-availability",
    errors_query: str | None = None,
    total_query: str | None = None,
    period_days: int = 30,
    runbook_url: str = "",
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Prometheus rule file (`{"groups": [...]}`) for one SLO of `service`.

    `objective` is in percent (Sloth's convention).  The queries count events
    over `{{.window}}`; by default they are the 5xx ratio of the
    `http_requests_total` counter of the Prometheus job named `service`.
    Three groups come back, named like Sloth's: the SLI error ratio over every
    window the alerts need, the SLO's metadata (objective, budget, burn), and
    the page and ticket alerts.
    """
    budget = error_budget(objective)
    errors = errors_query or f'sum(rate(http_requests_total{{job="{service}",code=~"5.."}}[{WINDOW_PLACEHOLDER}]))'
    total = total_query or f'sum(rate(http_requests_total{{job="{service}"}}[{WINDOW_PLACEHOLDER}]))'
    slo_id = f"{service}-{slo}"
    labels = {"sloth_id": slo_id, "sloth_service": service, "sloth_slo": slo}
    selector = f'{{sloth_id="{slo_id}", sloth_service="{service}", sloth_slo="{slo}"}}'

    def over(query: str, window: str) -> str:
        return query.replace(WINDOW_PLACEHOLDER, window)

    sli_rules: list[dict[str, Any]] = [
        {
            "record": f"slo:sli_error:ratio_rate{window}",
            "expr": f"({over(errors, window)})\n/\n({over(total, window)})\n",
            "labels": {**labels, "sloth_window": window},
        }
        for window in SLI_WINDOWS
    ]
    period = f"{period_days}d"
    sli_rules.append(
        {
            "record": f"slo:sli_error:ratio_rate{period}",
            "expr": (
                f"sum_over_time(slo:sli_error:ratio_rate5m{selector}[{period}])\n"
                f"/ ignoring (sloth_window)\n"
                f"count_over_time(slo:sli_error:ratio_rate5m{selector}[{period}])\n"
            ),
            "labels": {**labels, "sloth_window": period},
        }
    )

    meta_rules: list[dict[str, Any]] = [
        {
            "record": "slo:objective:ratio",
            "expr": f"vector({round(objective / 100, BUDGET_PRECISION)})",
            "labels": labels,
        },
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget})", "labels": labels},
        {"record": "slo:time_period:days", "expr": f"vector({period_days})", "labels": labels},
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": (
                f"slo:sli_error:ratio_rate5m{selector}\n"
                f"/ on (sloth_id, sloth_slo, sloth_service) group_left\n"
                f"slo:error_budget:ratio{selector}\n"
            ),
            "labels": labels,
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": (
                f"slo:sli_error:ratio_rate{period}{selector}\n"
                f"/ on (sloth_id, sloth_slo, sloth_service) group_left\n"
                f"slo:error_budget:ratio{selector}\n"
            ),
            "labels": labels,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{selector}",
            "labels": labels,
        },
    ]

    def burning(window: str, alert: BurnRateAlert) -> str:
        return f"max(slo:sli_error:ratio_rate{window}{selector} > ({alert.factor} * {budget})) without (sloth_window)"

    alert_rules: list[dict[str, Any]] = []
    for severity in ("page", "ticket"):
        conditions = [
            f"(\n  {burning(alert.short_window, alert)}\n  and\n  {burning(alert.long_window, alert)}\n)"
            for alert in MULTIWINDOW_POLICY
            if alert.severity == severity
        ]
        alert_rules.append(
            {
                "alert": ALERT_NAMES[severity],
                "expr": "\nor\n".join(conditions) + "\n",
                "labels": {**(extra_labels or {}), "severity": severity, "sloth_severity": severity, **labels},
                "annotations": {
                    "summary": f"{service}: the {slo} SLO is burning its error budget too fast",
                    "description": (
                        f"{service} is spending the error budget of its {objective}% {slo} SLO "
                        f"faster than it can afford ({severity} policy)."
                    ),
                    "runbook_url": runbook_url,
                },
            }
        )

    return {
        "groups": [
            {"name": f"sloth-slo-sli-recordings-{slo_id}", "rules": sli_rules},
            {"name": f"sloth-slo-meta-recordings-{slo_id}", "rules": meta_rules},
            {"name": f"sloth-slo-alerts-{slo_id}", "rules": alert_rules},
        ]
    }


def latency_total_query(service: str) -> str:
    """Every request the latency histogram observed."""
    return f'sum(rate(http_request_duration_seconds_count{{job="{service}"}}[{WINDOW_PLACEHOLDER}]))'


def latency_errors_query(service: str, threshold_ms: int) -> str:
    """Requests slower than `threshold_ms`, from the `http_request_duration_seconds` histogram.

    The threshold must be one of the histogram's bucket bounds; the generated
    service adds it to its buckets.
    """
    le = bucket_label(threshold_ms)
    return (
        f'sum(rate(http_request_duration_seconds_count{{job="{service}"}}[{WINDOW_PLACEHOLDER}]))'
        f' - sum(rate(http_request_duration_seconds_bucket{{job="{service}",le="{le}"}}[{WINDOW_PLACEHOLDER}]))'
    )


def bucket_label(threshold_ms: int) -> str:
    """The `le` label prometheus_client writes for a bucket of `threshold_ms`: 300 -> "0.3", 1000 -> "1.0"."""
    return str(threshold_ms / 1000)


def service_slo_rules(
    service: str,
    availability: float,
    latency: float,
    latency_threshold_ms: int,
    *,
    runbook_url: str = "",
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The availability and latency SLO rules of a golden-path service, in one rule file."""
    availability_rules = burn_rate_rules(
        service, availability, slo="requests-availability", runbook_url=runbook_url, extra_labels=extra_labels
    )
    latency_rules = burn_rate_rules(
        service,
        latency,
        slo="requests-latency",
        errors_query=latency_errors_query(service, latency_threshold_ms),
        total_query=latency_total_query(service),
        runbook_url=runbook_url,
        extra_labels=extra_labels,
    )
    return {"groups": availability_rules["groups"] + latency_rules["groups"]}
