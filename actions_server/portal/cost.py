"""Cost per env, per service and per experiment, with budgets and a forecast.

By default the cost is what each namespace *requests* times the price sheet:
the ResourceQuota (`requests.cpu`, `requests.memory`) of the GitOps repository's
`envs/<env>/<service>/`, else the budget of the applied service spec, else the
service chart's `resources.requests` × replicas (values.yaml + values-prod.yaml).
With PLTF_OPENCOST_URL set, it is OpenCost's allocation instead:
`/allocation/compute?window=…&aggregate=namespace,label:app,label:experiment`.

The forecast is the month at the current rate; a budget (the Namespace
annotation `pltf.io/monthly-budget-usd` the service specs write, or the spec's `budget.monthly_usd`)
that the forecast passes gives a warning.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from ..errors import PltfError
from ..mappings import deep_merge
from .entities import ServiceView, gitops_repo
from .model import HOUR

if TYPE_CHECKING:
    from .parts import PortalParts

DEFAULT_PRICES = Path(__file__).parent / "data" / "prices.yaml"
# What the service specs write (actions_server/specs/manifests.py), on the Namespace and the ResourceQuota.
BUDGET_ANNOTATION = "pltf.io/monthly-budget-usd"
EXPERIMENT_LABELS = ("pltf.io/experiment", "experiment")
UNALLOCATED = "__unallocated__"
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_MEMORY_UNITS = {
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


@cache
def price_sheet(path: str | None = None) -> dict[str, Any]:
    source = Path(path) if path else DEFAULT_PRICES
    try:
        data = yaml.safe_load(source.read_text())
        sheet = {
            "currency": str(data.get("currency", "USD")),
            "hoursPerMonth": float(data.get("hoursPerMonth", 730)),
            "cpuCoreHour": float(data["cpuCoreHour"]),
            "memoryGiBHour": float(data["memoryGiBHour"]),
        }
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PltfError(f"cannot read the price sheet {source}: {exc}", 500, "bad_price_sheet") from None
    return sheet


def cpu_cores(value: Any) -> float | None:
    text = str(value).strip() if value is not None else ""
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None


def memory_gib(value: Any) -> float | None:
    match = _QUANTITY.match(str(value).strip()) if value is not None else None
    if not match or match.group(2) not in _MEMORY_UNITS:
        return None
    try:
        return float(match.group(1)) * _MEMORY_UNITS[match.group(2)] / 2**30
    except ValueError:
        return None


def gitops_envs(services: PortalParts, service: str) -> dict[str, dict[str, Any]]:
    """{env: {namespace, experiment, cpu, memoryGiB, budget}} from `envs/<env>/<service>/` of the GitOps repository."""
    wanted = services.settings.gitops.gitops_repository
    repo = gitops_repo(services)
    found: dict[str, dict[str, Any]] = {}
    if repo is None:
        return found
    for path in repo.glob(f"envs/*/{service}/*"):
        env = path.split("/")[1]
        row = found.setdefault(env, {"source": f"{wanted}:envs/{env}/{service}/"})
        for doc in repo.dicts(path):
            metadata = doc.get("metadata") or {}
            budget = _number((metadata.get("annotations") or {}).get(BUDGET_ANNOTATION))
            if budget is not None:
                row["budget"] = budget
            if doc.get("kind") == "Namespace":
                labels = metadata.get("labels") or {}
                row["namespace"] = metadata.get("name")
                row["experiment"] = next((labels[k] for k in EXPERIMENT_LABELS if labels.get(k)), None)
            elif doc.get("kind") == "ResourceQuota":
                hard = (doc.get("spec") or {}).get("hard") or {}
                row["cpu"] = cpu_cores(hard.get("requests.cpu", hard.get("cpu")))
                row["memoryGiB"] = memory_gib(hard.get("requests.memory", hard.get("memory")))
                row.setdefault("namespace", metadata.get("namespace"))
    return {env: row for env, row in found.items() if row.get("cpu") is not None or row.get("memoryGiB") is not None}


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and str(value).strip() else None
    except ValueError:
        return None


def chart_requests(view: ServiceView) -> dict[str, dict[str, Any]]:
    """{"prod": …} from the service chart: resources.requests × replicas (minReplicas when autoscaling)."""
    if view.repo is None:
        return {}
    base = f"charts/{view.name}"
    values: dict[str, Any] = {}
    for path in (f"{base}/values.yaml", f"{base}/values-prod.yaml"):
        for doc in view.repo.dicts(path):
            values = deep_merge(values, doc)
    requests = (values.get("resources") or {}).get("requests") or {}
    if not requests:
        return {}
    autoscaling = values.get("autoscaling") or {}
    replicas = autoscaling.get("minReplicas") if autoscaling.get("enabled") else values.get("replicaCount")
    count = _number(replicas) or 1.0
    cpu = cpu_cores(requests.get("cpu"))
    memory = memory_gib(requests.get("memory"))
    return {
        "prod": {
            "source": f"{base}/values-prod.yaml (requests × {count:g} replicas)",
            "namespace": f"{view.name}-prod",
            "experiment": None,
            "cpu": None if cpu is None else cpu * count,
            "memoryGiB": None if memory is None else memory * count,
            "budget": None,
        }
    }


def requested(services: PortalParts, view: ServiceView) -> dict[str, dict[str, Any]]:
    envs = gitops_envs(services, view.name)
    for env, spec in view.specs.items():
        row = envs.setdefault(env, {"source": "spec.applied"})
        row.setdefault("namespace", spec.get("namespace") or f"{view.name}-{env}")
        for key, given in (("cpu", cpu_cores(spec.get("cpu"))), ("memoryGiB", memory_gib(spec.get("memory")))):
            if row.get(key) is None:
                row[key] = given
        if row.get("budget") is None:
            row["budget"] = _number(spec.get("monthlyUsd"))
        if row.get("experiment") is None:
            row["experiment"] = spec.get("experiment")
    return envs or chart_requests(view)


def service_cost(
    services: PortalParts,
    view: ServiceView,
    window_seconds: float,
    allocations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The cost of one service per env over the window, the month's forecast and its budget."""
    sheet = price_sheet(services.settings.portal.price_sheet)
    hours = window_seconds / HOUR
    month = sheet["hoursPerMonth"]
    envs: list[dict[str, Any]] = []
    plan = requested(services, view)
    if allocations is not None:
        source = "opencost"
        for item in allocations:
            if item["app"] != view.name and not item["namespace"].startswith(f"{view.name}-"):
                continue
            env = _env_of(view.name, item["namespace"])
            budget = (plan.get(env) or {}).get("budget")
            covered = item["hours"] if item["hours"] > 0 else hours
            per_hour = item["totalCost"] / covered if covered > 0 else 0.0
            envs.append(
                _row(
                    env,
                    item["namespace"],
                    item["experiment"],
                    None,
                    None,
                    item["totalCost"],
                    per_hour * month,
                    budget,
                    "opencost",
                )
            )
    else:
        source = "requests"
        for env, row in sorted(plan.items()):
            cpu, memory = row.get("cpu") or 0.0, row.get("memoryGiB") or 0.0
            per_hour = cpu * sheet["cpuCoreHour"] + memory * sheet["memoryGiBHour"]
            envs.append(
                _row(
                    env,
                    row.get("namespace"),
                    row.get("experiment"),
                    cpu,
                    memory,
                    per_hour * hours,
                    per_hour * month,
                    row.get("budget"),
                    row.get("source"),
                )
            )
    budgets = [e["budget"] for e in envs if e["budget"] is not None]
    forecast = sum(e["forecastMonthly"] for e in envs)
    warnings = [
        f"{view.name} in {e['env']}: the month's forecast {e['forecastMonthly']:.2f} {sheet['currency']} "
        f"passes its budget of {e['budget']:.2f}"
        for e in envs
        if e["overBudget"]
    ]
    return {
        "service": view.name,
        "source": source,
        # Requests × prices is what the service would cost if it ran as asked, not what it cost.
        "estimate": source == "requests",
        "basis": (
            "opencost allocations"
            if source == "opencost"
            else f"estimate: requested resources × price sheet ({services.settings.portal.price_sheet or 'built-in prices'})"
        ),
        "currency": sheet["currency"],
        "windowHours": round(hours, 3),
        "cost": round(sum(e["cost"] for e in envs), 4) if envs else None,
        "forecastMonthly": round(forecast, 4) if envs else None,
        "budgetMonthly": round(sum(budgets), 4) if budgets else None,
        "warnings": warnings,
        "envs": envs,
    }


def _row(
    env: str,
    namespace: Any,
    experiment: Any,
    cpu: float | None,
    memory: float | None,
    cost: float,
    forecast: float,
    budget: float | None,
    source: Any,
) -> dict[str, Any]:
    return {
        "env": env,
        "namespace": namespace,
        "experiment": None if experiment in (None, "", UNALLOCATED) else experiment,
        "cpu": None if cpu is None else round(cpu, 4),
        "memoryGiB": None if memory is None else round(memory, 4),
        "cost": round(cost, 4),
        "forecastMonthly": round(forecast, 4),
        "budget": budget,
        "overBudget": budget is not None and forecast > budget,
        "source": source,
    }


def _env_of(service: str, namespace: str) -> str:
    return namespace[len(service) + 1 :] if namespace.startswith(f"{service}-") else namespace


async def opencost_allocations(base: str, window: str, client: httpx.AsyncClient | None = None) -> list[dict[str, Any]]:
    """OpenCost's allocation, one row per (namespace, app, experiment), with the hours it covers."""
    own = client is None
    http = client or httpx.AsyncClient(timeout=20)
    try:
        response = await http.get(
            f"{base.rstrip('/')}/allocation/compute",
            params={"window": window, "aggregate": "namespace,label:app,label:experiment", "accumulate": "true"},
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PltfError(f"OpenCost did not answer: {type(exc).__name__}", 502, "opencost_unavailable") from None
    finally:
        if own:
            await http.aclose()
    if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise PltfError(
            f"OpenCost answered {response.status_code} without allocation data", 502, "opencost_unavailable"
        )
    totals: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(lambda: {"totalCost": 0.0, "hours": 0.0})
    for allocation_set in body["data"]:
        if not isinstance(allocation_set, dict):
            continue
        for name, item in allocation_set.items():
            if not isinstance(item, dict):
                continue
            properties = item.get("properties") or {}
            labels = properties.get("labels") or {}
            parts = str(item.get("name") or name).split("/")
            namespace = properties.get("namespace") or (parts[0] if parts else UNALLOCATED)
            app = labels.get("app") or (parts[1] if len(parts) > 1 else UNALLOCATED)
            experiment = labels.get("experiment") or (parts[2] if len(parts) > 2 else UNALLOCATED)
            row = totals[(namespace, app, experiment)]
            row["totalCost"] += float(item.get("totalCost") or 0.0)
            minutes = item.get("minutes")
            row["hours"] += float(minutes) / 60 if isinstance(minutes, int | float) else 0.0
    return [
        {"namespace": ns, "app": app, "experiment": exp, **values} for (ns, app, exp), values in sorted(totals.items())
    ]


def aggregate(reports: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Sums service reports by env, service or experiment."""
    if by not in ("env", "service", "experiment"):
        raise PltfError("by must be env, service or experiment", 422, "invalid_input")
    sums: dict[str, dict[str, float]] = defaultdict(lambda: {"cost": 0.0, "forecastMonthly": 0.0})
    for report in reports:
        for env in report["envs"]:
            key = {"env": env["env"], "service": report["service"], "experiment": env["experiment"] or "(none)"}[by]
            sums[key]["cost"] += env["cost"]
            sums[key]["forecastMonthly"] += env["forecastMonthly"]
    return [
        {by: key, "cost": round(v["cost"], 4), "forecastMonthly": round(v["forecastMonthly"], 4)}
        for key, v in sorted(sums.items())
    ]
