"""Serves previews through the action server: Host-header routing, plus a path-based fallback.

    http://users-api-pr-7.preview.localhost:8787/healthz  →  the preview users-api-pr-7, path /healthz
    http://127.0.0.1:8787/previews/users-api-pr-7/healthz  →  the same (the id works in place of the name)

`*.localhost` resolves to the loopback address without any DNS set-up, so the
clean URL works on a laptop as it is. Bodies stream both ways. Everything else
goes on to the application untouched. Mounted in `create_app` with one line:

    app.add_middleware(PreviewRouter, settings=settings)

A preview runs code from a repository, so it is not trusted with what reaches pltf:

- credentials never reach it: `Authorization`, `Proxy-Authorization`, `Cookie`,
  `X-Api-Key`, `X-Auth-Token` and every `X-Pltf-*` header are dropped. Behind
  Backstage's proxy, which adds pltf's token to each request, the preview would
  otherwise receive that token. So a preview cannot rely on cookies or an
  `Authorization` header of its own through this proxy.
- who the client is comes from the proxy alone: a client's `Forwarded`,
  `X-Forwarded-*` and `X-Real-IP` are dropped and the proxy sets its own.
- a path-based URL (`/previews/<id>/`) is on the API's own origin, so its
  answers lose `Set-Cookie` (it would set cookies for the API) and gain
  `Content-Security-Policy: sandbox allow-scripts allow-forms allow-popups`:
  the page runs, but in an opaque origin, so its scripts can neither read the
  API origin's cookies and storage nor the API's answers. (A redirect to the
  clean URL would be the other choice; the path-based URL exists for where
  clean URLs do not resolve, such as behind Backstage's proxy, so it must
  answer itself.) A CSP the preview sends is kept beside ours: browsers
  enforce every policy, so the stricter wins. Clean URLs are an origin of
  their own and keep the preview's headers.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import httpx

from ..config import Settings
from .deps import preview_manager

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH_PREFIX = "/previews/"
_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_PATH = re.compile(rf"^/previews/(?P<key>{_NAME})(?P<rest>/.*)?$")
# Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Credentials meant for pltf (or Backstage), never for a preview; and anything named X-Pltf-*.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"})
PLTF_HEADER_PREFIX = "x-pltf-"
# Who the client is and how it came: the proxy says so itself, so a client cannot make a preview believe
# another address, host or scheme (the first of two X-Forwarded-For values is the one most apps read).
FORWARDING_HEADERS = frozenset(
    {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-prefix", "x-real-ip"}
)
# The server this proxy runs in (uvicorn) writes its own: the preview's would make them appear twice.
SERVER_OWN_HEADERS = frozenset({"date", "server"})
PATH_BASED_CSP = (b"content-security-policy", b"sandbox allow-scripts allow-forms allow-popups")


def forwarded(name: str) -> bool:
    """Whether a request header goes on to the preview."""
    name = name.lower()
    return (
        name not in HOP_BY_HOP
        and name not in CREDENTIAL_HEADERS
        and name not in FORWARDING_HEADERS
        and not name.startswith(PLTF_HEADER_PREFIX)
    )


def _json(
    status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()
    return status, [(b"content-type", b"application/json"), *(headers or [])], body


class PreviewRouter:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        domain = re.escape(settings.previews.preview_domain)
        self.host = re.compile(rf"^(?P<key>{_NAME})\.{domain}(:\d+)?$", re.IGNORECASE)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Until the application has started (its parts are on app.state), everything goes on to it.
        if scope["type"] != "http" or not hasattr(scope["app"].state, "services"):
            await self.app(scope, receive, send)
            return
        host = ""
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1").lower()
                break
        by_host = self.host.match(host)
        by_path = None if by_host else _PATH.match(scope["path"])
        if by_host is None and by_path is None:
            await self.app(scope, receive, send)
            return
        if by_host is not None:
            key, path, prefix = by_host.group("key").lower(), scope["path"], ""
        else:
            assert by_path is not None
            key, path = by_path.group("key"), by_path.group("rest") or "/"
            prefix = f"{PATH_PREFIX}{key}"
        await self._proxy(scope, receive, send, key, path, prefix, by_id=by_host is None)

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0), follow_redirects=False)
            self._clients[loop] = client
        return client

    async def _proxy(
        self, scope: Scope, receive: Receive, send: Send, key: str, path: str, prefix: str, by_id: bool
    ) -> None:
        manager = preview_manager(scope["app"].state)
        found = await anyio.to_thread.run_sync(manager.route, key)
        if found is None and by_id:
            found = await anyio.to_thread.run_sync(manager.route, key, True)
        if found is None:
            await _answer(send, *_json(404, "no_preview", f"there is no active preview {key!r}"))
            return
        status, upstream = found
        if upstream is None or status != "ready":
            await _answer(send, *_json(503, "preview_starting", f"preview {key} is {status}", [(b"retry-after", b"2")]))
            return
        headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if forwarded(k.decode("latin-1"))
        ]
        client_host = (scope.get("client") or ("", 0))[0]
        headers += [
            ("x-forwarded-for", client_host),
            ("x-forwarded-proto", scope.get("scheme", "http")),
            ("x-forwarded-host", next((v for k, v in headers if k.lower() == "host"), "")),
        ]
        if prefix:
            headers.append(("x-forwarded-prefix", prefix))
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{upstream}{path}" + (f"?{query}" if query else "")

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        method = scope["method"]
        has_body = method not in ("GET", "HEAD", "OPTIONS", "DELETE") or any(
            k.lower() in ("content-length", "transfer-encoding") for k, _ in headers
        )
        client = self._client()
        request = client.build_request(method, url, headers=headers, content=body() if has_body else None)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await _answer(
                send, *_json(502, "preview_unreachable", f"preview {key} did not answer: {type(exc).__name__}")
            )
            return
        try:
            dropped = HOP_BY_HOP | SERVER_OWN_HEADERS | ({"set-cookie"} if prefix else set())
            answer_headers = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.multi_items()
                if k.lower() not in dropped
            ]
            if prefix:
                answer_headers.append(PATH_BASED_CSP)
            await send({"type": "http.response.start", "status": response.status_code, "headers": answer_headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
