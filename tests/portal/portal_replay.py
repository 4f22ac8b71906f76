"""Replays tests/fixtures/dora/events.yaml through the real endpoints, signed as each sender signs."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "dora"
GITHUB_SECRET = "gh-webhook-secret-0123"
GITLAB_TOKEN = "gl-webhook-token-0123"
API_TOKEN = "test-token-0123456789"
PORTAL_SETTINGS: dict[str, Any] = {
    "github_webhook_secret": GITHUB_SECRET,
    "gitlab_webhook_token": GITLAB_TOKEN,
    "probe_interval_seconds": 0,
}
PORTAL_ENV = {
    "PLTF_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    "PLTF_GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
    "PLTF_PROBE_INTERVAL_SECONDS": "0",
}


def deliveries() -> list[dict[str, Any]]:
    return list(yaml.safe_load((FIXTURE / "events.yaml").read_text())["deliveries"])


def expected() -> dict[str, Any]:
    return dict(yaml.safe_load((FIXTURE / "expected.yaml").read_text()))


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request_for(delivery: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of one delivery, as its sender would send it."""
    body = json.dumps(delivery["body"]).encode()
    headers = {"Content-Type": "application/json"}
    via = delivery["via"]
    if via == "github":
        headers |= {
            "X-GitHub-Event": delivery["event"],
            "X-GitHub-Delivery": delivery["delivery"],
            "X-Hub-Signature-256": github_signature(body),
        }
        return "/webhooks/github", body, headers
    if via == "gitlab":
        headers |= {
            "X-Gitlab-Token": GITLAB_TOKEN,
            "X-Gitlab-Event": delivery["event"],
            "X-Gitlab-Event-UUID": delivery["delivery"],
        }
        return "/webhooks/gitlab", body, headers
    headers["Authorization"] = f"Bearer {API_TOKEN}"
    if via in ("argocd", "alertmanager"):
        return f"/webhooks/{via}", body, headers
    if via == "events":
        return "/v1/events", body, headers
    raise ValueError(f"unknown sender {via}")


def replay(
    post: Callable[..., Any], platform: Callable[[str, dict[str, Any]], bool], again: bool = False
) -> dict[str, int]:
    """Sends every delivery; returns how many were recorded and how many were duplicates.

    `again`: everything was sent before, so every delivery must come back a duplicate.
    """
    counts = {"recorded": 0, "duplicates": 0}
    for delivery in deliveries():
        if delivery["via"] == "platform":
            recorded = platform(delivery["kind"], delivery["body"])
            counts["recorded" if recorded else "duplicates"] += 1
            continue
        path, body, headers = request_for(delivery)
        response = post(path, content=body, headers=headers)
        assert response.status_code in (200, 202), (path, response.status_code, response.text)
        duplicate = response.json()["duplicate"]
        assert duplicate == (again or bool(delivery.get("duplicate"))), delivery
        counts["duplicates" if duplicate else "recorded"] += 1
    return counts


def dora_path(case: dict[str, Any]) -> str:
    query = f"?window={case['window']}&end={case['end']}"
    if case["scope"] == "service":
        return f"/v1/services/{case['name']}/dora{query}"
    if case["scope"] == "team":
        return f"/v1/teams/{case['name']}/dora{query}"
    return f"/v1/dora{query}"


def approx_json(expected: Any) -> Any:
    """Expected JSON with floats compared to 6 decimals."""
    if isinstance(expected, dict):
        return {k: approx_json(v) for k, v in expected.items()}
    if isinstance(expected, float):
        return pytest.approx(expected, abs=1e-6)
    return expected
