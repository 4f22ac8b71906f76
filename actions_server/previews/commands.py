"""What `pltf previews list | gc | destroy ID` do: over HTTP with `PLTF_URL`, else on the local data dir."""

from __future__ import annotations

import os
from typing import Any

import httpx

from ..auth import read_generated_token
from ..config import Settings
from ..errors import PltfError


def _remote() -> httpx.Client | None:
    url = os.environ.get("PLTF_URL")
    if not url:
        return None
    token = os.environ.get("PLTF_API_TOKEN") or read_generated_token(Settings().generated_token_path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(30.0, read=300.0))


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise PltfError(f"cannot reach the action server at {client.base_url}: {exc}", 503, "unreachable") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"the action server answered {response.status_code}"
        raise PltfError(message, response.status_code, "http_error")
    return response.json()


def _local_manager() -> Any:
    from ..logs import configure_logging
    from ..services import Services

    settings = Settings()
    settings.replica_id = settings.replica_id or f"cli-{os.getpid()}"
    services = Services.create(settings)
    configure_logging(services.redactor, os.environ.get("PLTF_LOG_LEVEL", "error"))
    return services.previews.get(services)


def list_previews(include_finished: bool) -> list[dict[str, Any]]:
    status = None if include_finished else "active"
    client = _remote()
    if client is not None:
        params = {"status": status} if status else {}
        return list(_call(client, "GET", "/v1/previews", params=params)["previews"])
    return list(_local_manager().list_previews(status))


def gc() -> tuple[list[str], list[str]]:
    """The reaper's pass now: expired and dead previews removed, leftovers swept; (removed, log lines)."""
    client = _remote()
    if client is not None:
        body = _call(client, "POST", "/v1/previews/gc")
        return list(body["removed"]), list(body["log"])
    lines: list[str] = []
    removed = _local_manager().gc(lines.append)
    return list(removed), lines
