"""What `pltf previews list | gc | destroy ID` do: over HTTP with `PLTF_URL`, else on the local data dir."""

from __future__ import annotations

from typing import Any

import httpx

from ..client import call, local_services, remote_client
from ..config import Settings


def _remote() -> httpx.Client | None:
    return remote_client(Settings(), read_timeout=300.0)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    return call(client, method, path, **kwargs).json()


def _local_manager() -> Any:
    services = local_services(Settings())
    return services.previews.get(services)


def list_previews(include_finished: bool) -> list[dict[str, Any]]:
    status = None if include_finished else "active"
    client = _remote()
    if client is not None:
        params = {"status": status} if status else {}
        found: list[dict[str, Any]] = []
        while True:
            page = _call(client, "GET", "/v1/previews", params=params)
            found.extend(page["previews"])
            if not page.get("nextCursor"):
                return found
            params = {**params, "cursor": page["nextCursor"]}
    return list(_local_manager().list_previews(status).items)


def gc() -> tuple[list[str], list[str]]:
    """The reaper's pass now: expired and dead previews removed, leftovers swept; (removed, log lines)."""
    client = _remote()
    if client is not None:
        body = _call(client, "POST", "/v1/previews/gc")
        return list(body["removed"]), list(body["log"])
    lines: list[str] = []
    removed = _local_manager().gc(lines.append)
    return list(removed), lines
