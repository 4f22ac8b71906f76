"""How the CLI reaches the engine: over HTTP (`PLTF_URL`) or in this process.

Both backends answer the same calls with the same JSON as the HTTP API, so the
CLI never cares which one it has.
"""

from __future__ import annotations

import asyncio
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from .auth import Caller, read_generated_token
from .config import Settings
from .errors import FieldError, PltfError
from .redact import Redactor

if TYPE_CHECKING:
    from .services import Services

LogCallback = Callable[[dict[str, Any]], None]


class Backend(ABC):
    server_url: str | None
    """The action server's URL; None when actions run in this process."""

    @abstractmethod
    def actions(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def templates(self) -> list[dict[str, Any]]: ...

    def run(
        self,
        action: str,
        input: dict[str, Any],
        dry_run: bool = False,
        idempotency_key: str | None = None,
        on_log: LogCallback | None = None,
    ) -> dict[str, Any]:
        """Runs `action` to its end, passing each log line to `on_log`, and answers the finished run."""
        return self._run(action, {"input": input, "dryRun": dry_run}, idempotency_key, on_log)

    @abstractmethod
    def _run(
        self, action: str, body: dict[str, Any], idempotency_key: str | None, on_log: LogCallback | None
    ) -> dict[str, Any]:
        """`run` with the body of `POST /v1/actions/{action}/runs`."""


def backend_from_environment(settings: Settings | None = None) -> Backend:
    settings = settings or Settings()
    client = remote_client(settings)
    return LocalBackend(settings) if client is None else RemoteBackend(client)


def remote_client(settings: Settings, read_timeout: float = 120.0) -> httpx.Client | None:
    """A client of the action server at PLTF_URL, with PLTF_API_TOKEN (else the generated local token);
    None when the CLI is to work in-process."""
    if not settings.server.url:
        return None
    token = (
        settings.server.api_token.get_secret_value()
        if settings.server.api_token is not None
        else read_generated_token(settings.storage.generated_token_path)
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=settings.server.url.rstrip("/"), headers=headers, timeout=httpx.Timeout(30.0, read=read_timeout)
    )


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the action server; its error answers become the PltfError they describe."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise PltfError(f"cannot reach the action server at {client.base_url}: {exc}", 503, "unreachable") from None
    if response.status_code >= 400:
        raise _error_from(response)
    return response


def local_services(settings: Settings) -> Services:
    """The parts, built in this process for the CLI (which shows a run's own log, so the JSON log stays
    quiet unless PLTF_LOG_LEVEL asks otherwise)."""
    from .services import Services

    if settings.server.replica_id is None:
        # Not the server's replica id: a server restarting must not take
        # this process's runs for its own leftovers.
        settings = settings.replace(replica_id=f"cli-{os.getpid()}")
    redactor = Redactor()
    # Before the parts are built: opening the database may upgrade it, which is logged.
    quiet_logging(settings, redactor)
    return Services.create(settings, redactor)


def quiet_logging(settings: Settings, redactor: Redactor) -> None:
    """The JSON log of a CLI command, which prints what it did itself: errors only, unless PLTF_LOG_LEVEL is set."""
    from .logs import configure_logging

    configure_logging(
        redactor, settings.server.log_level if "log_level" in settings.server.model_fields_set else "error"
    )


class RemoteBackend(Backend):
    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.server_url: str | None = str(client.base_url)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return call(self.client, method, path, **kwargs)

    def actions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/actions").json()["actions"])

    def templates(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/templates").json()["templates"])

    def _run(
        self, action: str, body: dict[str, Any], idempotency_key: str | None, on_log: LogCallback | None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._call(
            "POST", f"/v1/actions/{action}/runs", params={"wait": "false"}, json=body, headers=headers
        )
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


class LocalBackend(Backend):
    """Runs actions in this process, on the embedded defaults, with no server."""

    def __init__(self, settings: Settings) -> None:
        from .services import built_in_actions

        self.services = local_services(settings)
        self.registry = built_in_actions(self.services)
        self.server_url: str | None = None

    def actions(self) -> list[dict[str, Any]]:
        return [action.describe() for action in self.registry.values()]

    def templates(self) -> list[dict[str, Any]]:
        return [template.to_json() for template in self.services.templates.list()]

    def _run(
        self, action: str, body: dict[str, Any], idempotency_key: str | None, on_log: LogCallback | None
    ) -> dict[str, Any]:
        return asyncio.run(self._run_in_loop(action, body, idempotency_key, on_log))

    async def _run_in_loop(
        self, action: str, request: dict[str, Any], idempotency_key: str | None, on_log: LogCallback | None
    ) -> dict[str, Any]:
        from .services import run_engine

        engine = run_engine(self.services, actions=self.registry)
        prepared = engine.prepare(action, request)
        run_id, _ = await engine.submit(prepared, Caller("cli"), idempotency_key)
        async for kind, body in engine.events(run_id):
            if kind == "log" and on_log is not None:
                on_log(body)
        await engine.drain()
        return engine.get(run_id)
