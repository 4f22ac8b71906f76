"""Request ids, access logs, request metrics and the bounds on request bodies, below the routers."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from ..config import Settings
from ..errors import FieldError, PltfError, invalid_input
from ..logs import get_logger
from ..metrics import Metrics
from .errors import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
# Parsers recurse per level; real documents (catalog entities, webhooks) stay far below this.
MAX_JSON_DEPTH = 64
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
OPENERS = frozenset(b"[{")


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`, found without recursing."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for byte in JSON_STRING.sub(b"", body).translate(None, NOT_BRACKETS):
        depth += 1 if byte in OPENERS else -1
        if depth > limit:
            return True
    return False


class RequestContextMiddleware:
    """Request ids, access logs, request metrics and the bounds on request bodies.

    The size limit answers 413 only after reading the whole body, because a
    server that replies and closes mid-upload makes clients see a reset
    connection instead of the error. A body that stalls, or trickles in slower
    than `min_body_bytes_per_second` allows, gets 408 (the headers' bound is in
    http_timeouts, below the ASGI layer), and JSON nested too deep
    for the parsers gets 422.
    """

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        receive = self._bounded_wait(receive)
        try:
            if scope["method"] in ("POST", "PUT", "PATCH") and not scope["path"].startswith("/git/"):
                limited = await self._limited(receive, send_with_id)
                if limited is None:
                    return
                receive = limited
            await self.app(scope, receive, send_with_id)
        finally:
            status = status_holder["status"]
            self.metrics.requests.labels(scope["method"], str(status)).inc()
            if scope["path"] not in ("/healthz", "/readyz", "/metrics"):
                get_logger().info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
            structlog.contextvars.unbind_contextvars("request_id")

    def _bounded_wait(self, receive: Receive) -> Receive:
        """`receive`, raising a 408 PltfError when the client sends no body for too long."""
        seconds = self.settings.server.body_timeout_seconds
        body_done = False

        async def bounded() -> Message:
            nonlocal body_done
            if body_done:  # later calls wait for a disconnect (streams do), which may take for ever
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), seconds)
            except TimeoutError:
                raise PltfError(f"no part of the request body arrived for {seconds:g} s", 408, "body_timeout") from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return bounded

    async def _limited(self, receive: Receive, send: Send) -> Receive | None:
        limit = self.settings.server.max_body_bytes
        # The gap bound alone lets a byte every few seconds hold the connection for ever.
        allowed = self.settings.server.body_timeout_seconds + limit / self.settings.server.min_body_bytes_per_second
        deadline = time.monotonic() + allowed
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except (PltfError, TimeoutError) as exc:
                error = (
                    exc
                    if isinstance(exc, PltfError)
                    else PltfError(f"the request body did not arrive within {allowed:g} s", 408, "body_timeout")
                )
                await error_response(error, {"Connection": "close"})({"type": "http"}, receive, send)
                return None
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            if size <= limit:
                chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if size > limit:
            error = PltfError(f"the request body is {size} bytes; the limit is {limit}", 413, "body_too_large")
            response = error_response(error)
            await response({"type": "http"}, receive, send)
            return None
        body = b"".join(chunks)
        if json_too_deep(body, MAX_JSON_DEPTH):
            error = invalid_input(
                f"the body nests deeper than {MAX_JSON_DEPTH} levels",
                [FieldError("(body)", f"at most {MAX_JSON_DEPTH} levels of arrays and objects")],
            )
            await error_response(error)({"type": "http"}, receive, send)
            return None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay
