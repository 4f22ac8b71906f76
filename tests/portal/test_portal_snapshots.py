"""The portal serves stored results: computed when events, probes or pushes change them, not per page view."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import respx
import yaml
from fastapi.testclient import TestClient
from portal_replay import API_TOKEN, PORTAL_SETTINGS
from test_forge_embedded import AUTH_HEADER, create_repository, git

from actions_server.app import create_app
from actions_server.config import Settings
from actions_server.portal import snapshots as portal_snapshots
from actions_server.portal.snapshots import SETTLED_NS
from actions_server.snapshots import Readings
from conftest import ServerProcess, make_settings, wait_until

pytest_plugins = ["portal_fixtures"]

PROMETHEUS = "http://prometheus.test:9090"
END = "end=2024-07-01T00:00:00Z"


def deploy(n: int) -> dict[str, str]:
    return {
        "type": "deployment",
        "id": f"d-{n}",
        "service": "web",
        "environment": "production",
        "status": "success",
        "timestamp": f"2024-06-0{n}T00:00:00Z",
    }


def test_a_page_is_computed_once_per_state_of_its_inputs(tmp_path: Path) -> None:
    """Prometheus is asked while a page is computed: a second view asks nothing, a new event asks again."""
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "prometheus_url": PROMETHEUS})
    answer = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.7e9, "1"]}]}}
    with (
        respx.mock(base_url=PROMETHEUS) as prometheus,
        TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client,
    ):
        route = prometheus.get("/api/v1/query").mock(return_value=httpx.Response(200, json=answer))
        assert client.post("/v1/events", json=deploy(1)).status_code == 202
        first = client.get(f"/services/web?{END}")
        asked = route.call_count
        again = client.get(f"/services/web?{END}")
        assert asked > 0 and route.call_count == asked
        assert again.text == first.text and again.headers["etag"] == first.headers["etag"]

        assert client.post("/v1/events", json=deploy(2)).status_code == 202
        after = client.get(f"/services/web?{END}")
        assert route.call_count > asked
        assert "2024-06-02" in after.text and "2024-06-02" not in first.text
        assert after.headers["etag"] != first.headers["etag"]

        api = client.get(f"/v1/services/web/dora?{END}")
        assert api.status_code == 200 and api.json()["deploymentFrequency"]["perDay"] > 0
        assert api.headers["cache-control"].startswith("private")


def uptime_answer(value: str) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.7e9, value]}]}}


def test_a_page_that_only_aged_is_served_while_it_is_recomputed(tmp_path: Path) -> None:
    """Nothing it shows changed, only its window slid: the stored page answers at once (no view waits for
    the recompute), and the recomputed one answers once it is ready."""
    settings = make_settings(tmp_path, **{**PORTAL_SETTINGS, "prometheus_url": PROMETHEUS, "portal_refresh_seconds": 0})
    with (
        respx.mock(base_url=PROMETHEUS) as prometheus,
        TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client,
    ):
        route = prometheus.get("/api/v1/query").mock(return_value=httpx.Response(200, json=uptime_answer("1")))
        assert client.post("/v1/events", json=deploy(1)).status_code == 202
        first = client.get("/services/web")
        assert "100.00%" in first.text
        route.mock(return_value=httpx.Response(200, json=uptime_answer("0.5")))
        aged = client.get("/services/web")
        assert aged.text == first.text and aged.headers["etag"] == first.headers["etag"]
        recomputed = wait_until(
            lambda: (page := client.get("/services/web")).headers["etag"] != first.headers["etag"] and page,
            what="the recomputed page",
        )
        assert "50.00%" in recomputed.text


def test_pages_carry_an_etag_and_a_short_max_age(portal_client: TestClient, portal_settings: Settings) -> None:
    assert portal_client.post("/v1/events", json=deploy(1)).status_code == 202
    page = portal_client.get("/", headers={"Authorization": ""})
    assert page.headers["cache-control"] == f"public, max-age={portal_settings.portal.portal_cache_seconds}"
    tag = page.headers["etag"]
    unchanged = portal_client.get("/", headers={"Authorization": "", "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == tag
    assert portal_client.get("/", headers={"Authorization": "", "If-None-Match": '"other"'}).status_code == 200
    catalog = portal_client.get("/catalog")
    assert catalog.headers["cache-control"].startswith("public")
    assert portal_client.get("/catalog", headers={"If-None-Match": catalog.headers["etag"]}).status_code == 304


HOUR_NS = 3600 * 10**9


def settle(repository: Path) -> None:
    """Dates the repository's directories an hour back: their listings are then kept while their mtimes stay."""
    for directory in (repository, repository / "refs" / "heads"):
        then = time.time_ns() - HOUR_NS
        os.utime(directory, ns=(then, then))


@pytest.mark.parametrize("settled", [False, True], ids=["changed-just-now", "unchanged-for-an-hour"])
def test_a_push_changes_the_stored_page(server_env: dict[str, str], tmp_path: Path, settled: bool) -> None:
    """A new catalog-info.yaml pushed with stock git shows its owner on the very next view, also when the
    repository had not changed for long (its listing kept from earlier views)."""
    server = ServerProcess({**server_env, "PLTF_PROBE_INTERVAL_SECONDS": "0"}, tmp_path / "server.log").start()
    try:
        with server.client() as client:
            remote = create_repository(client, "team", "orders")["remoteUrl"]
        if settled:
            settle(Path(server_env["PLTF_DATA_DIR"]) / "git" / "team" / "orders.git")
            assert httpx.get(f"{server.url}/").status_code == 200  # lists it, dated an hour back
        before = httpx.get(f"{server.url}/")
        assert "/services/orders" in before.text and "/teams/checkout-team" not in before.text
        work = tmp_path / "orders"
        assert git("clone", "--quiet", remote, str(work)).returncode == 0
        entity = {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "orders"},
            "spec": {"type": "service", "lifecycle": "production", "owner": "group:default/checkout-team"},
        }
        (work / "catalog-info.yaml").write_text(yaml.safe_dump(entity))
        assert git("add", "catalog-info.yaml", cwd=work).returncode == 0
        assert git("commit", "--quiet", "-m", "owner", cwd=work).returncode == 0
        pushed = git("push", "origin", "HEAD", cwd=work, authorization=AUTH_HEADER)
        assert pushed.returncode == 0, pushed.stderr
        after = httpx.get(f"{server.url}/")
        assert "/teams/checkout-team" in after.text
        assert after.headers["etag"] != before.headers["etag"]
    finally:
        server.stop()


def bare_repository(root: Path) -> Path:
    heads = root / "team" / "orders.git" / "refs" / "heads"
    heads.mkdir(parents=True)
    (heads / "main").write_text("a" * 40 + "\n")
    return heads


def replace_ref(heads: Path, sha: str) -> None:
    """As git does: a new file renamed into place."""
    lock = heads / "main.lock"
    lock.write_text(sha * 40 + "\n")
    lock.replace(heads / "main")


def test_a_ref_replaced_within_one_clock_tick_of_the_last_change_is_seen(tmp_path: Path) -> None:
    """The directory changed just before it was listed: a second change that leaves its mtime alone
    (as two within one tick of the file system's clock do) still changes the state."""
    heads = bare_repository(tmp_path)
    before = portal_snapshots._repositories_state(str(tmp_path))
    mtime = heads.stat().st_mtime_ns
    replace_ref(heads, "b")
    os.utime(heads, ns=(mtime, mtime))
    assert portal_snapshots._repositories_state(str(tmp_path)) != before


def test_a_directory_unchanged_for_long_is_listed_again_only_when_its_mtime_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = bare_repository(tmp_path)
    settle(heads.parent.parent)
    settled_mtime = heads.stat().st_mtime_ns
    first = portal_snapshots._repositories_state(str(tmp_path))
    listed: list[str] = []
    scandir = os.scandir

    def counted(path: str) -> object:
        listed.append(os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(portal_snapshots.os, "scandir", counted)
    assert portal_snapshots._repositories_state(str(tmp_path)) == first
    assert str(heads) not in listed
    replace_ref(heads, "c")
    assert heads.stat().st_mtime_ns - settled_mtime > SETTLED_NS
    assert portal_snapshots._repositories_state(str(tmp_path)) != first
    assert str(heads) in listed


PARTS = SimpleNamespace()


def test_callers_share_a_reading_begun_after_they_asked() -> None:
    """Callers arriving during a reading get the next one, together; the first caller gets the first."""
    under_way, release = threading.Event(), threading.Event()
    began: list[int] = []

    def fingerprint(_: object) -> str:
        began.append(len(began) + 1)
        if len(began) == 1:
            under_way.set()
            release.wait(30)
        return f"reading {len(began)}"

    readings = Readings(fingerprint, min_gap_seconds=0)

    async def views() -> tuple[str, list[str]]:
        first = asyncio.create_task(readings.read(PARTS))
        await asyncio.to_thread(under_way.wait, 30)
        later = [asyncio.create_task(readings.read(PARTS)) for _ in range(3)]
        await asyncio.sleep(0)  # they ask while the first reading is under way
        release.set()
        return await first, list(await asyncio.gather(*later))

    first, later = asyncio.run(views())
    assert first == "reading 1" and later == ["reading 2"] * 3 and began == [1, 2]


def test_under_load_readings_begin_a_gap_apart_and_a_lone_caller_does_not_wait() -> None:
    gap = 0.3
    under_way, release = threading.Event(), threading.Event()
    began: list[float] = []

    def fingerprint(_: object) -> str:
        began.append(time.monotonic())
        if len(began) == 1:
            under_way.set()
            release.wait(30)
        return str(len(began))

    readings = Readings(fingerprint, min_gap_seconds=gap)
    lone = Readings(lambda _: "lone", min_gap_seconds=3600)

    asked: list[float] = []

    async def views() -> None:
        asked.append(time.monotonic())
        first = asyncio.create_task(readings.read(PARTS))
        await asyncio.to_thread(under_way.wait, 30)
        second = asyncio.create_task(readings.read(PARTS))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, second)
        # One caller after another, none arriving during a reading: no gap, or this would take an hour.
        for _ in range(3):
            assert await asyncio.wait_for(lone.read(PARTS), 60) == "lone"

    asyncio.run(views())
    assert len(began) == 2 and began[1] - asked[0] >= gap
