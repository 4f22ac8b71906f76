"""The portal's pages and JSON, computed once per state of their inputs and then read, not recomputed per view.

Computing the home page reads every service's repository, events and probes:
seconds with hundreds of services, and the pages are public. So each response
is kept with the fingerprint of what it was computed from: the newest raw event
(webhooks and the platform's own events; every DORA record comes from one), the
newest probe, the catalog's entities, and the refs and metadata of every
embedded repository (a push, a new repository, a visibility change). A view
whose fingerprint still matches is served as stored. Replicas share the
database and the forge's git dir, so they agree on the fingerprint. One
application's stores share its readings (`portal_inputs`), and a repository
directory that has not changed for a while is not listed again until its mtime
moves (`SETTLED_NS`): with 200 repositories a reading cost 7 ms of CPU, most of
it listing 400 directories; it now costs about 2 ms.

A response whose window ends "now" is also recomputed after
PLTF_PORTAL_REFRESH_SECONDS: the window slides, and Prometheus, OpenCost or a
Backstage catalog change without telling us. Views meanwhile get the aged one
(nothing it was computed from changed) rather than all waiting for the recompute.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from ..catalog.db import catalog_entities
from ..forges.embedded import git_root
from ..snapshots import Readings
from .tables import probes, raw_events

if TYPE_CHECKING:
    from .parts import PortalParts

# Git updates HEAD, packed-refs and branches by renaming a new file into place:
# the file gets a new inode and its directory a new mtime. Both are read, as two
# updates within one tick of the file system's clock can leave the mtime alone.
REPOSITORY_INPUTS = ("", "refs/heads")
# A directory listed this long after its mtime keeps that listing while its mtime stays: a later change
# falls on a later tick of the clock, so it moves the mtime. One changed more recently is listed again
# on every reading, as a second change within its tick could leave the mtime alone. (The file system's
# clock is the kernel's; on a network file system, the server's clock should not be a second behind.)
SETTLED_NS = 1_000_000_000


@dataclass(frozen=True)
class Listing:
    mtime_ns: int
    listed_at_ns: int
    state: str


# Per git root: each repository directory's last listing. Listing 400 directories per reading was
# most of a reading's cost; their mtimes are one stat each.
_listings: dict[str, dict[str, Listing]] = {}
_listings_lock = threading.Lock()


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _entries(directory: str, known: dict[str, Listing], seen: dict[str, Listing]) -> str:
    """The directory's mtime and every entry's name and inode (os.scandir has them without a stat per file)."""
    mtime = _mtime(directory)
    listing = known.get(directory)
    if listing is None or listing.mtime_ns != mtime or listing.listed_at_ns - mtime < SETTLED_NS:
        listed_at = time.time_ns()
        try:
            with os.scandir(directory) as found:
                names = sorted(f"{e.name}={e.inode()}" for e in found)
        except OSError:
            return "-"
        listing = Listing(mtime, listed_at, f"{mtime}:{'/'.join(names)}")
    seen[directory] = listing
    return listing.state


def _repositories_state(root: str) -> list[str]:
    """Every repository and what moves in it when it changes; plain os calls, as this runs on every view."""
    with _listings_lock:
        known = _listings.get(root, {})
        seen: dict[str, Listing] = {}
        state = list(_repositories(root, known, seen))
        _listings[root] = seen  # a repository deleted since is forgotten
    return state


def _repositories(root: str, known: dict[str, Listing], seen: dict[str, Listing]) -> Iterator[str]:
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
            yield repo + ":" + ",".join(_entries(os.path.join(repo, part), known, seen) for part in REPOSITORY_INPUTS)


def fingerprint(services: PortalParts) -> str:
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


def portal_inputs() -> Readings[PortalParts]:
    """Readings of the portal's inputs (events, probes, the catalog and the repositories' refs), for the stores
    of one application to share."""
    return Readings(fingerprint)
