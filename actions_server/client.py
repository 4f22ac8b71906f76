"""How the CLI reaches the engine: over HTTP (`PLTF_URL`) or in this process.

Both backends answer the same calls with the same JSON as the HTTP API, so the
CLI never cares which one it has.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from .auth import Caller, read_generated_token
from .config import Settings
from .errors import FieldError, PltfError

LogCallback = Callable[[dict[str, Any]], None]


class Backend(Protocol):
    def actions(self) -> list[dict[str, Any]]: ...

    def templates(self) -> list[dict[str, Any]]: ...

    def run(
        self,
        action: str,
        input: dict[str, Any],
        dry_run: bool = False,
        idempotency_key: str | None = None,
        on_log: LogCallback | None = None,
    ) -> dict[str, Any]: ...


def backend_from_environment(settings: Settings | None = None) -> Backend:
    url = os.environ.get("PLTF_URL")
    settings = settings or Settings()
    if url:
        token = os.environ.get("PLTF_API_TOKEN") or read_generated_token(settings.generated_token_path)
        return RemoteBackend(url, token)
    return LocalBackend(settings)


class RemoteBackend:
    def __init__(self, url: str, token: str | None, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(30.0, read=120.0), transport=transport
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PltfError(
                f"cannot reach the action server at {self.client.base_url}: {exc}", 503, "unreachable"
            ) from None
        if response.status_code >= 400 and response.status_code != 202:
            raise _error_from(response)
        return response

    def actions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/actions").json()["actions"])

    def templates(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/templates").json()["templates"])

    def run(
        self,
        action: str,
        input: dict[str, Any],
        dry_run: bool = False,
        idempotency_key: str | None = None,
        on_log: LogCallback | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"input": input, "dryRun": dry_run}
        try:
            response = self.client.post(
                f"/v1/actions/{action}/runs", params={"wait": "false"}, json=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise PltfError(
                f"cannot reach the action server at {self.client.base_url}: {exc}", 503, "unreachable"
            ) from None
        if response.status_code >= 400:
            raise _error_from(response)
        run_id = response.json()["id"]
        self._follow(run_id, on_log)
        return dict(self._call("GET", f"/v1/runs/{run_id}").json())

    def _follow(self, run_id: str, on_log: LogCallback | None) -> None:
        try:
            with self.client.stream(
                "GET", f"/v1/runs/{run_id}/events", timeout=httpx.Timeout(30.0, read=None)
            ) as stream:
                event = ""
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:") and event == "log" and on_log is not None:
                        on_log(json.loads(line.partition(":")[2])["body"])
                    elif line.startswith("data:") and event == "completion":
                        return
        except httpx.HTTPError as exc:
            raise PltfError(f"lost the run's event stream: {exc}", 503, "unreachable") from None


def _error_from(response: httpx.Response) -> PltfError:
    try:
        error = response.json()["error"]
        fields = [FieldError(f["field"], f["message"]) for f in error.get("fields", [])]
        return PltfError(error["message"], response.status_code, error.get("code", "error"), fields)
    except (ValueError, KeyError, TypeError):
        return PltfError(f"the action server answered {response.status_code}", response.status_code, "http_error")


class LocalBackend:
    """Runs actions in this process, on the embedded defaults, with no server."""

    def __init__(self, settings: Settings) -> None:
        from .actions import discover
        from .logs import configure_logging
        from .services import Services

        if settings.replica_id is None:
            # Not the server's replica id: a server restarting must not take
            # this process's runs for its own leftovers.
            settings.replica_id = f"cli-{os.getpid()}"
        self.services = Services.create(settings)
        self.registry = discover()
        # The CLI shows the run's own log as progress; the JSON log is for servers.
        configure_logging(self.services.redactor, os.environ.get("PLTF_LOG_LEVEL", "error"))

    def actions(self) -> list[dict[str, Any]]:
        return [action.describe(self.services) for action in self.registry.values()]

    def templates(self) -> list[dict[str, Any]]:
        return [template.to_json() for template in self.services.templates.list()]

    def run(
        self,
        action: str,
        input: dict[str, Any],
        dry_run: bool = False,
        idempotency_key: str | None = None,
        on_log: LogCallback | None = None,
    ) -> dict[str, Any]:
        return asyncio.run(self._run(action, input, dry_run, idempotency_key, on_log))

    async def _run(
        self,
        action: str,
        input: dict[str, Any],
        dry_run: bool,
        idempotency_key: str | None,
        on_log: LogCallback | None,
    ) -> dict[str, Any]:
        from .runs import RunEngine

        engine = RunEngine(self.services, actions=self.registry)
        prepared = engine.prepare(action, {"input": input, "dryRun": dry_run})
        run_id, _ = await engine.submit(prepared, Caller("cli"), idempotency_key)
        async for kind, body in engine.events(run_id):
            if kind == "log" and on_log is not None:
                on_log(body)
        await engine.drain()
        return engine.get(run_id)
