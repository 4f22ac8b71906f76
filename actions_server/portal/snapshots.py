"""The portal's pages and JSON, computed once per state of their inputs and then read, not recomputed per view.

Computing the home page reads every service's repository, events and probes:
seconds with hundreds of services, and the pages are public. So each response
is kept with the fingerprint of what it was computed from: the newest raw event
(webhooks and the platform's own events; every DORA record comes from one), the
newest probe, the catalog's entities, and the refs and metadata of every
embedded repository (a push, a new repository, a visibility change). A view
whose fingerprint still matches is served as stored. Replicas share the
database and the forge's git dir, so they agree on the fingerprint.

A response whose window ends "now" is also recomputed after
PLTF_PORTAL_REFRESH_SECONDS: the window slides, and Prometheus, OpenCost or a
Backstage catalog change without telling us.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import func, select

from ..catalog.db import catalog_entities
from ..forges.embedded import git_root
from ..http_cache import etag_of
from .tables import probes, raw_events

if TYPE_CHECKING:
    from ..services import Services

MAX_SNAPSHOTS = 256
# Anyone may ask for any window or end, each a key of its own: bound what they can make us keep.
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
# Git updates HEAD, packed-refs and branches by renaming a new file into place:
# the file gets a new inode and its directory a new mtime. Both are read, as two
# updates within one tick of the file system's clock can leave the mtime alone.
REPOSITORY_INPUTS = ("", "refs/heads")


@dataclass(frozen=True)
class Snapshot:
    body: bytes
    etag: str
    fingerprint: str
    computed_at: float


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _entries(directory: str) -> str:
    """The directory's mtime and every entry's name and inode (os.scandir has them without a stat per file)."""
    try:
        with os.scandir(directory) as found:
            names = sorted(f"{e.name}={e.inode()}" for e in found)
    except OSError:
        return "-"
    return f"{_mtime(directory)}:{'/'.join(names)}"


def _repositories_state(root: str) -> Iterator[str]:
    """Every repository and what moves in it when it changes; plain os calls, as this runs on every view."""
    yield f"{root}:{_mtime(root)}"
    try:
        owners = sorted(e.path for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return
    for owner in owners:
        yield f"{owner}:{_mtime(owner)}"
        try:
            repos = sorted(e.path for e in os.scandir(owner) if e.name.endswith(".git") and e.is_dir())
        except OSError:
            continue
        for repo in repos:
            yield repo + ":" + ",".join(_entries(os.path.join(repo, part)) for part in REPOSITORY_INPUTS)


def fingerprint(services: Services) -> str:
    """A digest that changes whenever anything the portal shows could have changed."""
    digest = hashlib.sha256()
    with services.engine.connect() as conn:
        digest.update(repr(conn.execute(select(func.max(raw_events.c.id))).scalar()).encode())
        digest.update(repr(conn.execute(select(func.max(probes.c.id))).scalar()).encode())
        catalog = conn.execute(select(func.count(), func.max(catalog_entities.c.updated_at))).one()
        digest.update(repr(catalog).encode())
    for line in _repositories_state(str(git_root(services.settings))):
        digest.update(line.encode())
    return digest.hexdigest()


class Snapshots:
    """The latest computed body per key (path and query), in this replica's memory."""

    def __init__(self, max_entries: int = MAX_SNAPSHOTS, max_bytes: int = MAX_SNAPSHOT_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._stored: OrderedDict[str, Snapshot] = OrderedDict()
        self._bytes = 0
        self._computing: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_reading: asyncio.Future[str] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _inputs(self, services: Services) -> str:
        """The fingerprint, read after this call began: calls arriving together share one reading.

        A page view must see every change made before it was asked for, so it
        cannot use a reading already under way; it waits for the next one, which
        serves everyone who arrived meanwhile. Under load that is one reading per
        few milliseconds instead of one per request.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._next_reading, self._reader = loop, None, None
        if self._next_reading is None:
            self._next_reading = loop.create_future()
        waiting = self._next_reading
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read(services))
        return await asyncio.shield(waiting)

    async def _read(self, services: Services) -> None:
        while self._next_reading is not None:
            reading, self._next_reading = self._next_reading, None
            try:
                reading.set_result(await anyio.to_thread.run_sync(fingerprint, services))
            except Exception as exc:  # noqa: BLE001 - handed to every caller waiting for this reading
                reading.set_exception(exc)

    def _current(self, key: str, inputs: str, refresh_seconds: float | None) -> Snapshot | None:
        found = self._stored.get(key)
        if found is None or found.fingerprint != inputs:
            return None
        if refresh_seconds is not None and time.time() - found.computed_at >= refresh_seconds:
            return None
        self._stored.move_to_end(key)
        return found

    async def get(
        self, services: Services, key: str, compute: Callable[[], Awaitable[bytes]], *, slides: bool
    ) -> Snapshot:
        """The stored body for `key`, or a fresh one; requests arriving while it is computed wait for that one.

        `slides`: the window ends now, so the body also ages out.
        """
        inputs = await self._inputs(services)
        refresh = services.settings.portal_refresh_seconds if slides else None
        found = self._current(key, inputs, refresh)
        if found is not None:
            return found
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
