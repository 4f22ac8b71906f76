"""A client that sends its request headers too slowly (slowloris) is answered 408 and disconnected.

uvicorn bounds only the idle time between requests; a client that trickles
header bytes would hold a connection for ever. The body has its own bound in
the ASGI layer (app.RequestContextMiddleware), where the request is known.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import PltfError


def _timeout_response(seconds: float) -> bytes:
    error = PltfError(f"the request headers took longer than {seconds:g} s", 408, "header_timeout")
    body = json.dumps({"error": error.to_json()}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol (pinned, so the bound does not depend on whether httptools is installed),
    with a timer from the start of each request until its headers are complete."""
    answer = _timeout_response(seconds)

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # this request's headers are in

        def on_response_complete(self) -> None:
            # Armed before the next request's bytes arrive; a pipelined one disarms it at once.
            self._arm()
            super().on_response_complete()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            # h11 cannot frame a response to a request it has not parsed; nothing follows it.
            self.transport.write(answer)
            self.transport.close()

    return HeaderTimeoutProtocol
