"""Health probes and uptime, SLOs from probes or Prometheus, cost from requests or OpenCost, and scorecards."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
import yaml
from fastapi.testclient import TestClient
from portal_replay import API_TOKEN, PORTAL_SETTINGS

from actions_server.app import create_app
from actions_server.portal import cost
from actions_server.portal.entities import RepoFiles, directory
from actions_server.portal.events import record_platform_event
from actions_server.portal.health import probe_once, probe_uptime
from actions_server.portal.scorecards import dockerfile_user
from actions_server.services import Services
from conftest import ROOT, get_documented, make_settings, need, wait_until

pytest_plugins = ["portal_fixtures"]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def bare_repo(root: Path, owner: str, name: str, files: dict[str, str]) -> Path:
    """A repository of the embedded forge's layout (<git root>/<owner>/<name>.git) holding `files`."""
    work = root.parent / f"work-{owner}-{name}"
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "files")
    target = root / owner / f"{name}.git"
    target.parent.mkdir(parents=True, exist_ok=True)
    git(root, "clone", "-q", "--bare", str(work), str(target))
    return target


# -- health ---------------------------------------------------------------------


def test_probes_give_uptime_and_the_slo(side_services: Services) -> None:
    record_platform_event(
        side_services, "preview.deployed", {"service": "users-api", "url": "http://users-api.preview.test/"}
    )
    answers = iter([200, 200, 503])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(next(answers))

    async def three_rounds() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            for _ in range(3):
                await probe_once(side_services, client)

    anyio.run(three_rounds)
    assert seen == ["http://users-api.preview.test/healthz"] * 3
    with TestClient(create_app(side_services.settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        health = get_documented(client, "/v1/services/users-api/health")
    assert health["source"] == "probes"
    assert health["uptime"]["24h"] == {"ratio": pytest.approx(2 / 3, abs=1e-6), "probes": 3}
    budget = 1 - 99.9 / 100
    assert health["slo"]["objective"] == 99.9 and health["slo"]["status"] == "breached"
    assert health["slo"]["errorBudgetRemaining"] == pytest.approx(1 - (1 / 3) / budget, abs=1e-4)


def test_the_last_probe_is_the_last_one_the_windows_count(side_services: Services) -> None:
    """The answer is as of `now` (the request's start, or a past `end`): a later probe is neither last nor counted."""
    record_platform_event(
        side_services, "preview.deployed", {"service": "users-api", "url": "http://users-api.preview.test/"}
    )
    answers = iter([200, 503])
    between: list[float] = []

    async def two_rounds() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(next(answers)))
        async with httpx.AsyncClient(transport=transport) as client:
            await probe_once(side_services, client)
            between.append(time.time())
            await probe_once(side_services, client)

    anyio.run(two_rounds)
    uptime = probe_uptime(side_services, "users-api", between[0])
    assert uptime["24h"] == {"ratio": 1.0, "probes": 1}
    assert uptime["last"] is not None and uptime["last"]["ok"] is True and uptime["last"]["status"] == 200
    assert probe_uptime(side_services, "users-api", time.time())["last"]["status"] == 503


@pytest.fixture
def healthy_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_server_probes_on_its_schedule(tmp_path: Path, healthy_server: str) -> None:
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "probe_interval_seconds": 0.2})
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        side = Services.create(settings.model_copy())
        record_platform_event(side, "preview.deployed", {"service": "web", "url": healthy_server})

        def probed() -> Any:
            body = get_documented(client, "/v1/services/web/health")
            return body if body["uptime"]["24h"]["probes"] >= 2 else None

        health = wait_until(probed, timeout=30, what="two probes of the preview")
        side.close()
    assert health["uptime"]["24h"]["ratio"] == 1.0
    assert health["last"]["status"] == 200 and health["url"] == f"{healthy_server}/healthz"
    assert health["slo"]["status"] == "met" and health["slo"]["errorBudgetRemaining"] == 1.0


def test_uptime_and_the_error_budget_come_from_prometheus_when_set(tmp_path: Path) -> None:
    """Against Prometheus' documented /api/v1/query answer (an instant vector), mocked with respx."""
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "prometheus_url": "http://prometheus.test:9090"})

    def answer(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        value = "0.42" if query.startswith("slo:period_error_budget_remaining:ratio") else "0.9995"
        return httpx.Response(
            200,
            json={
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.7e9, value]}]},
            },
        )

    with (
        respx.mock(base_url="http://prometheus.test:9090", assert_all_called=True) as prometheus,
        TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client,
    ):
        route = prometheus.get("/api/v1/query").mock(side_effect=answer)
        client.post(
            "/v1/events",
            json={"type": "change", "id": "abcd1234", "service": "users-api", "timestamp": "2024-06-01T00:00:00Z"},
        )
        health = get_documented(client, "/v1/services/users-api/health")
    queries = [call.request.url.params["query"] for call in route.calls]
    assert any('job="users-api"' in q and "[30d]" in q for q in queries)
    assert health["source"] == "prometheus"
    assert {w: health["uptime"][w]["ratio"] for w in ("24h", "7d", "30d")} == {
        "24h": 0.9995,
        "7d": 0.9995,
        "30d": 0.9995,
    }
    assert health["slo"]["status"] == "met" and health["slo"]["errorBudgetRemaining"] == 0.42


# -- cost -----------------------------------------------------------------------

# As the service specs write them (actions_server/specs/manifests.py).
GITOPS = {
    "envs/prod/promoapi/namespace.yaml": yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "promoapi-prod",
                "labels": {"pltf.io/service": "promoapi", "pltf.io/env": "prod", "pltf.io/experiment": "checkout-v2"},
                "annotations": {"pltf.io/monthly-budget-usd": "10"},
            },
        }
    ),
    "envs/prod/promoapi/quota.yaml": yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": "budget",
                "namespace": "promoapi-prod",
                "annotations": {"pltf.io/monthly-budget-usd": "10"},
            },
            "spec": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi", "limits.memory": "8Gi"}},
        }
    ),
}


def test_cost_is_requests_times_the_price_sheet_with_a_budget_warning(
    portal_client: TestClient, side_services: Services
) -> None:
    bare_repo(side_services.settings.storage.data_dir / "git", "platform", "gitops", GITOPS)
    record_platform_event(side_services, "spec.applied", {"service": "promoapi", "env": "prod", "team": "growth"})
    record_platform_event(
        side_services,
        "spec.applied",
        {
            "service": "search",
            "env": "staging",
            "budget": {"monthly_usd": 500, "cpu": "500m", "memory": "512Mi"},
            "experiment": "ranker-b",
        },
    )
    prices = yaml.safe_load((ROOT / "actions_server/portal/data/prices.yaml").read_text())
    hourly = 2 * prices["cpuCoreHour"] + 4 * prices["memoryGiBHour"]
    promo = get_documented(portal_client, "/v1/services/promoapi/cost?window=30d")
    assert promo["source"] == "requests"
    [prod] = promo["envs"]
    assert prod["env"] == "prod" and prod["namespace"] == "promoapi-prod" and prod["experiment"] == "checkout-v2"
    assert (prod["cpu"], prod["memoryGiB"]) == (2.0, 4.0)
    assert prod["cost"] == pytest.approx(hourly * 720, abs=1e-3)
    assert prod["forecastMonthly"] == pytest.approx(hourly * prices["hoursPerMonth"], abs=1e-3)
    assert prod["budget"] == 10.0 and prod["overBudget"] is True
    assert promo["warnings"] and "passes its budget" in promo["warnings"][0]

    search = portal_client.get("/v1/services/search/cost").json()
    assert search["envs"][0]["forecastMonthly"] == pytest.approx(
        (0.5 * prices["cpuCoreHour"] + 0.5 * prices["memoryGiBHour"]) * prices["hoursPerMonth"], abs=1e-3
    )
    assert search["warnings"] == []
    by_experiment = portal_client.get("/v1/costs?by=experiment").json()
    assert [i["experiment"] for i in by_experiment["items"]] == ["checkout-v2", "ranker-b"]
    by_env = portal_client.get("/v1/costs?by=env").json()
    assert {i["env"] for i in by_env["items"]} == {"prod", "staging"}
    assert portal_client.get("/v1/costs?by=planet").status_code == 422
    home = portal_client.get("/").text
    assert "promoapi" in home and 'class="fail"' in home


OPENCOST_ANSWER = {
    "code": 200,
    "status": "success",
    "data": [
        {
            "promoapi-prod/promoapi/checkout-v2": {
                "name": "promoapi-prod/promoapi/checkout-v2",
                "properties": {
                    "cluster": "c",
                    "namespace": "promoapi-prod",
                    "labels": {"app": "promoapi", "experiment": "checkout-v2"},
                },
                "window": {"start": "2024-06-24T00:00:00Z", "end": "2024-07-01T00:00:00Z"},
                "start": "2024-06-24T00:00:00Z",
                "end": "2024-07-01T00:00:00Z",
                "minutes": 10080,
                "cpuCost": 1.2,
                "gpuCost": 0,
                "ramCost": 0.3,
                "pvCost": 0,
                "networkCost": 0,
                "sharedCost": 0,
                "externalCost": 0,
                "totalCost": 1.5,
            },
            "__idle__": {"name": "__idle__", "properties": {}, "minutes": 10080, "totalCost": 9.0},
        }
    ],
}


def test_cost_comes_from_the_opencost_allocation_api_when_set(tmp_path: Path) -> None:
    """Against OpenCost's documented /allocation/compute answer (one set, keyed by the aggregate), mocked with respx."""
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "opencost_url": "http://opencost.test:9003"})
    with (
        respx.mock(base_url="http://opencost.test:9003", assert_all_called=True) as opencost,
        TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client,
    ):
        route = opencost.get("/allocation/compute").mock(return_value=httpx.Response(200, json=OPENCOST_ANSWER))
        side = Services.create(settings.model_copy())
        record_platform_event(
            side, "spec.applied", {"service": "promoapi", "env": "prod", "budget": {"monthly_usd": 5}}
        )
        side.close()
        body = client.get("/v1/services/promoapi/cost?window=7d").json()
        experiments = client.get("/v1/costs?by=experiment&window=7d").json()
    params = route.calls.last.request.url.params
    assert params["window"] == "7d" and params["aggregate"] == "namespace,label:app,label:experiment"
    assert body["source"] == "opencost"
    [prod] = body["envs"]
    assert (prod["env"], prod["experiment"], prod["cost"]) == ("prod", "checkout-v2", 1.5)
    assert prod["forecastMonthly"] == pytest.approx(1.5 / (10080 / 60) * 730, abs=1e-3)
    assert prod["overBudget"] is True and body["warnings"]
    assert experiments["source"] == "opencost" and experiments["items"][0]["experiment"] == "checkout-v2"


def test_opencost_down_is_a_clear_502(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "opencost_url": "http://opencost.test:9003"})
    with (
        respx.mock(base_url="http://opencost.test:9003") as opencost,
        TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client,
    ):
        opencost.get("/allocation/compute").mock(return_value=httpx.Response(500, text="boom"))
        response = client.get("/v1/costs")
    assert response.status_code == 502 and response.json()["error"]["code"] == "opencost_unavailable"


@pytest.mark.parametrize(
    ("quantity", "cores", "gib"),
    [
        ("100m", 0.1, None),
        ("2", 2.0, None),
        ("1.5", 1.5, None),
        ("128Mi", None, 0.125),
        ("1Gi", None, 1.0),
        ("x", None, None),
    ],
)
def test_quantities(quantity: str, cores: float | None, gib: float | None) -> None:
    if cores is not None:
        assert cost.cpu_cores(quantity) == cores
    if gib is not None:
        assert cost.memory_gib(quantity) == gib
    if quantity == "x":
        assert cost.cpu_cores(quantity) is None and cost.memory_gib(quantity) is None


# -- scorecards -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "user"),
    [
        ("FROM a\nUSER 10001:10001\n", "10001:10001"),
        ("FROM a AS build\nUSER app\nFROM b\nRUN x\n", None),  # the final stage sets none: root
        ("FROM a\nUSER app\nUSER root\n", "root"),
    ],
)
def test_the_user_of_the_final_stage(dockerfile: str, user: str | None) -> None:
    assert dockerfile_user(dockerfile) == user


def test_a_golden_path_service_shows_a_scorecard_and_a_cost(tmp_path: Path) -> None:
    """The first two steps of `pltf create service users api` (render, then repo:create into the
    embedded forge) → the portal scores the new repository and costs its chart."""
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "templates_dir": ROOT / "cookiecutters"})
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        values = {"name": "users-api", "owner": "group:default/platform-team"}
        rendered = client.post(
            "/v1/actions/cookiecutter:render/runs", json={"input": {"template": "python-service", "values": values}}
        ).json()
        assert rendered["status"] == "succeeded", rendered["error"]
        repo = {
            "workspaceId": rendered["output"]["workspaceId"],
            "provider": "embedded",
            "owner": "platform-team",
            "name": "users-api",
        }
        published = client.post("/v1/actions/repo:create/runs", json={"input": repo}).json()
        assert published["status"] == "succeeded", published["error"]
        scorecard = get_documented(client, "/v1/services/users-api/scorecard")
        spend = get_documented(client, "/v1/services/users-api/cost")
        page = client.get("/services/users-api").text
        home = client.get("/").text
    results = {rule["id"]: rule for rule in scorecard["rules"]}
    assert {i for i, r in results.items() if not r["passed"]} == {"dora-medium"}
    assert results["dora-medium"]["fix"]
    assert scorecard["level"] == "Silver"  # Gold needs every Gold rule: DORA has no deploys yet
    prices = yaml.safe_load((ROOT / "actions_server/portal/data/prices.yaml").read_text())
    repo = RepoFiles(settings.storage.data_dir / "git" / "platform-team" / "users-api.git")
    prod_values = yaml.safe_load(repo.read("charts/users-api/values-prod.yaml") or "")
    replicas = prod_values["autoscaling"]["minReplicas"]
    cores = cost.cpu_cores(prod_values["resources"]["requests"]["cpu"]) * replicas  # type: ignore[operator]
    gib = cost.memory_gib(prod_values["resources"]["requests"]["memory"]) * replicas  # type: ignore[operator]
    [prod] = spend["envs"]
    assert prod["env"] == "prod" and (prod["cpu"], prod["memoryGiB"]) == (pytest.approx(cores), pytest.approx(gib))
    assert prod["forecastMonthly"] == pytest.approx(
        (cores * prices["cpuCoreHour"] + gib * prices["memoryGiBHour"]) * 730, abs=1e-3
    )
    assert 'data-rule="dora-medium" data-passed="false"' in page and "How to fix" in page
    assert 'href="/teams/platform-team"' in home and "Silver" in home


def test_a_bare_repository_fails_rules_with_fixes(side_services: Services) -> None:
    bare_repo(
        side_services.settings.storage.data_dir / "git",
        "team-x",
        "legacy",
        {
            "Dockerfile": "FROM python:3.12\nCMD python app.py\n",
            "catalog-info.yaml": "kind: Component\nmetadata: {name: legacy}\nspec: {}\n",
        },
    )
    view = directory(side_services)["legacy"]
    from actions_server.portal.scorecards import scorecard

    card = scorecard(view, None)
    assert card["level"] is None
    failed = {r["id"]: r for r in card["rules"] if not r["passed"]}
    assert set(failed) == {
        "has-owner",
        "has-ci",
        "dockerfile-non-root",
        "has-slo",
        "has-runbook",
        "alerts-routed",
        "dora-medium",
    }
    assert all(r["fix"] for r in failed.values())
    assert "runs as root" in failed["dockerfile-non-root"]["detail"]


def test_an_applied_service_spec_shows_its_cost_budget_and_team(portal_client: TestClient) -> None:
    """`pltf apply` (service:provision) writes envs/prod/promoapi/ to the GitOps repository; the portal costs it."""
    need(
        "service:provision" in [a["id"] for a in portal_client.get("/v1/actions").json()["actions"]],
        "the service:provision action",
    )
    spec = yaml.safe_dump(
        {
            "kind": "service",
            "name": "promoapi",
            "env": "prod",
            "owner": "group:default/growth",
            "policy": "pii=false",
            "experiment": "checkout-v2",
            "budget": {"monthly_usd": 10, "cpu": "2", "memory": "4Gi"},
        }
    )
    applied = portal_client.post("/v1/actions/service:provision/runs", json={"input": {"spec": spec}}).json()
    assert applied["status"] == "succeeded", applied["error"]
    prices = yaml.safe_load((ROOT / "actions_server/portal/data/prices.yaml").read_text())
    body = portal_client.get("/v1/services/promoapi/cost").json()
    [prod] = body["envs"]
    assert (prod["namespace"], prod["experiment"], prod["cpu"], prod["memoryGiB"], prod["budget"]) == (
        "promoapi-prod",
        "checkout-v2",
        2.0,
        4.0,
        10.0,
    )
    forecast = (2 * prices["cpuCoreHour"] + 4 * prices["memoryGiBHour"]) * prices["hoursPerMonth"]
    assert prod["forecastMonthly"] == pytest.approx(forecast, abs=1e-3)
    assert body["warnings"] and "passes its budget" in body["warnings"][0]
    listed = {s["name"]: s for s in get_documented(portal_client, "/v1/services")["services"]}
    assert listed["promoapi"]["team"] == "growth"
    assert "promoapi" in portal_client.get("/teams/growth").text
