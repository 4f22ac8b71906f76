"""Headless Chromium loads the portal's pages from a real server and reads the fixture's figures off them.

Needs Debian's chromium and the `playwright` Python package (tests/browser/install.sh
installs both; Playwright's own browser download is not used). Skipped locally
without them, failed in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from portal_replay import PORTAL_ENV, expected, replay

from actions_server.config import Settings
from actions_server.portal.events import record_platform_event
from actions_server.services import Services
from conftest import ROOT, ServerProcess

CHROMIUM = os.environ.get("PLTF_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
END = "2024-07-01T00:00:00Z"
# Playwright adds --headless and a fresh profile directory of its own (a new one per launch).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


def _need(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the browser test needs {why} in CI: run tests/browser/install.sh")
    pytest.skip(f"{why} is not installed (tests/browser/install.sh)")


@pytest.fixture
def browser() -> Iterator[Any]:
    _need(shutil.which(CHROMIUM) is not None or Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright Python package")
        raise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def portal_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess({**server_env, **PORTAL_ENV}, tmp_path / "server.log").start()
    side = Services.create(
        Settings(data_dir=Path(server_env["PLTF_DATA_DIR"]), templates_dir=Path(server_env["PLTF_TEMPLATES_DIR"]))
    )
    try:
        with server.client() as client:
            replay(client.post, lambda kind, body: record_platform_event(side, kind, body))
        yield server
    finally:
        side.close()
        server.stop()


def shown(value: float | None, kind: str) -> str:
    """How the pages print a figure (portal/pages.py's filters)."""
    if value is None:
        return "—"
    return {"hours": f"{value:.1f} h", "perday": f"{value:.2f}/day", "pct": f"{value * 100:.1f}%"}[kind]


def case(scope: str, name: str | None) -> dict[str, Any]:
    return next(c for c in expected()["cases"] if c["scope"] == scope and c["name"] == name and c["window"] == "30d")


def read_keys(page: Any) -> dict[str, str]:
    return {
        metric: page.locator(f"[data-metric={metric}] .value").first.inner_text().strip()
        for metric in ("deploymentFrequency", "leadTimeForChanges", "changeFailureRate", "timeToRestore")
    }


def want_keys(figures: dict[str, Any]) -> dict[str, str]:
    bucket = figures["deploymentFrequency"]["bucket"]
    return {
        "deploymentFrequency": shown(figures["deploymentFrequency"]["perDay"], "perday")
        + (f" · {bucket}" if bucket else ""),
        "leadTimeForChanges": shown(figures["leadTimeForChanges"]["medianHours"], "hours"),
        "changeFailureRate": shown(figures["changeFailureRate"]["ratio"], "pct"),
        "timeToRestore": shown(figures["timeToRestore"]["medianHours"], "hours"),
    }


def test_the_pages_show_the_fixture_figures(browser: Any, portal_server: ServerProcess) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda request: errors.append(request.url))

    for scope, name, path in (
        ("service", "users-api", "/services/users-api"),
        ("service", "orders-api", "/services/orders-api"),
        ("team", "payments", "/teams/payments"),
        ("portfolio", None, "/"),
    ):
        response = page.goto(f"{portal_server.url}{path}?end={END}")
        assert response is not None and response.status == 200
        figures = case(scope, name)["expected"]
        assert read_keys(page) == want_keys(figures), path
        if figures["level"]:
            assert page.locator("h1 [data-metric=level]").count() in (0, 1)
        page.screenshot(
            path=str(ARTIFACTS / f"portal{path.replace('/', '-').rstrip('-') or '-home'}.png"), full_page=True
        )

    page.goto(f"{portal_server.url}/?end={END}")
    rows = page.locator("table[data-table=services] tr[data-service]")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.service)")) == ["orders-api", "users-api"]
    levels = {
        s: page.locator(f"tr[data-service={s}] [data-col=level]").inner_text().strip()
        for s in ("users-api", "orders-api")
    }
    assert levels == {
        "users-api": case("service", "users-api")["expected"]["level"],
        "orders-api": case("service", "orders-api")["expected"]["level"],
    }
    # Escaped, not rendered: the alert's summary carries markup.
    page.goto(f"{portal_server.url}/services/users-api?end={END}")
    assert page.locator("table[data-table=incidents] b").count() == 0
    assert "<b>budget</b> burning" in page.locator("table[data-table=incidents]").inner_text()
    assert page.locator("svg.chart").count() == 4
    assert errors == []


def test_the_service_page_fits_a_phone(browser: Any, portal_server: ServerProcess) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page.goto(f"{portal_server.url}/services/users-api?end={END}")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px on a phone"
    assert read_keys(page) == want_keys(case("service", "users-api")["expected"])
    page.screenshot(path=str(ARTIFACTS / "portal-services-users-api-phone.png"), full_page=True)
