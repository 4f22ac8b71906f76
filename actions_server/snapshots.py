"""Computed answers kept until their inputs change: the store behind the portal's and the catalog's pages.

A page is computed once and served from memory while the fingerprint of its
inputs (a cheap reading, given by whoever makes the store) stays the same.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import anyio

from .http_cache import etag_of
from .logs import get_logger

if TYPE_CHECKING:
    from .config import Settings


class HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


# What the fingerprint reads (the portal's or the catalog's parts); its settings give the refresh period.
Parts = TypeVar("Parts", bound=HasSettings, contravariant=True)

MAX_SNAPSHOTS = 256
# Anyone may ask for any window or end, each a key of its own: bound what they can make us keep.
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
# Under load, the fingerprint is read at most this often (see `Readings`).
MIN_READING_GAP_SECONDS = 0.05


@dataclass(frozen=True)
class Snapshot:
    body: bytes
    etag: str
    fingerprint: str
    computed_at: float


class Readings(Generic[Parts]):
    """Readings of a fingerprint: each call gets one begun after it was made; calls arriving together share it.

    A page view must see every change made before it was asked for, so it
    cannot use a reading already under way; it waits for the next one, which
    serves everyone who arrived meanwhile. When callers arrive during a reading
    (under load), the next begins `min_gap_seconds` after the previous one
    began: reading every repository costs milliseconds of CPU, and back-to-back
    readings took half the server's CPU under 50 concurrent page views (a
    caller gives up at most that gap in latency; one finding no reading under
    way does not wait). The stores of one application share one `Readings`
    when their fingerprints are the same function, so they share each reading too.
    """

    def __init__(self, fingerprint: Callable[[Parts], str], min_gap_seconds: float = MIN_READING_GAP_SECONDS) -> None:
        self.fingerprint = fingerprint
        self.min_gap_seconds = min_gap_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_reading: asyncio.Future[str] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def read(self, parts: Parts) -> str:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._next_reading, self._reader = loop, None, None
        if self._next_reading is None:
            self._next_reading = loop.create_future()
        waiting = self._next_reading
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read(parts))
        return await asyncio.shield(waiting)

    async def _read(self, parts: Parts) -> None:
        loop = asyncio.get_running_loop()
        while self._next_reading is not None:
            reading, self._next_reading = self._next_reading, None
            began = loop.time()
            try:
                reading.set_result(await anyio.to_thread.run_sync(self.fingerprint, parts))
            except Exception as exc:  # noqa: BLE001 - handed to every caller waiting for this reading
                reading.set_exception(exc)
            if self._next_reading is not None:
                # Callers arrived during that reading: under load, so the next one waits for the gap (and
                # whoever arrives meanwhile joins it). A caller finding no reading under way never waits.
                await asyncio.sleep(max(0.0, began + self.min_gap_seconds - loop.time()))


class Snapshots(Generic[Parts]):
    """The latest computed body per key (path and query), in this replica's memory."""

    def __init__(
        self,
        inputs: Readings[Parts],
        max_entries: int = MAX_SNAPSHOTS,
        max_bytes: int = MAX_SNAPSHOT_BYTES,
    ) -> None:
        # What the stored bodies are computed from, read cheaply: a body is kept until it changes.
        self.inputs = inputs
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._stored: OrderedDict[str, Snapshot] = OrderedDict()
        self._bytes = 0
        self._computing: dict[str, asyncio.Lock] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    def _current(self, key: str, inputs: str, refresh_seconds: float | None) -> Snapshot | None:
        found = self._stored.get(key)
        if found is None or found.fingerprint != inputs:
            return None
        if refresh_seconds is not None and time.time() - found.computed_at >= refresh_seconds:
            return None
        self._stored.move_to_end(key)
        return found

    async def get(self, parts: Parts, key: str, compute: Callable[[], Awaitable[bytes]], *, slides: bool) -> Snapshot:
        """The stored body for `key`, or a fresh one; requests arriving while it is computed wait for that one.

        `slides`: the window ends now, so the body also ages out. A body that has only aged (nothing it was
        computed from changed) is still served while one recompute runs in the background: with 200
        services the home page takes about a second to compute, and every view meanwhile waited for it.
        """
        inputs = await self.inputs.read(parts)
        refresh = parts.settings.portal.portal_refresh_seconds if slides else None
        found = self._current(key, inputs, refresh)
        if found is not None:
            return found
        aged = self._current(key, inputs, None)
        if aged is not None:
            self._refresh_later(key, inputs, refresh, compute)
            return aged
        return await self._compute(key, inputs, refresh, compute)

    async def _compute(
        self, key: str, inputs: str, refresh: float | None, compute: Callable[[], Awaitable[bytes]]
    ) -> Snapshot:
        lock = self._computing.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                found = self._current(key, inputs, refresh)
                if found is not None:
                    return found
                body = await compute()
                found = Snapshot(body, etag_of(body), inputs, time.time())
                replaced = self._stored.pop(key, None)
                self._bytes += len(body) - (len(replaced.body) if replaced else 0)
                self._stored[key] = found
                while len(self._stored) > 1 and (len(self._stored) > self.max_entries or self._bytes > self.max_bytes):
                    _, evicted = self._stored.popitem(last=False)
                    self._bytes -= len(evicted.body)
                return found
        finally:
            # Keys are as many as the URLs anyone asks for: keep a lock only while it is in use.
            if not lock.locked():
                self._computing.pop(key, None)

    def _refresh_later(
        self, key: str, inputs: str, refresh: float | None, compute: Callable[[], Awaitable[bytes]]
    ) -> None:
        loop = asyncio.get_running_loop()
        under_way = self._refreshing.get(key)
        # A task of a loop that has ended (a test's client) never finishes: it does not count.
        if under_way is not None and not under_way.done() and under_way.get_loop() is loop:
            return
        task = loop.create_task(self._refresh(key, inputs, refresh, compute))
        self._refreshing[key] = task
        task.add_done_callback(
            lambda done: self._refreshing.pop(key, None) if self._refreshing.get(key) is done else None
        )

    async def _refresh(
        self, key: str, inputs: str, refresh: float | None, compute: Callable[[], Awaitable[bytes]]
    ) -> None:
        try:
            await self._compute(key, inputs, refresh, compute)
        except Exception as exc:  # noqa: BLE001 - the aged body stays; the next view tries again
            get_logger().warning("a stored page could not be recomputed", key=key[:200], error=str(exc)[:300])
