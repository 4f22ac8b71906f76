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

import hashlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from ..catalog.db import catalog_entities
from ..forges.embedded import git_root
from ..snapshots import Snapshots
from .tables import probes, raw_events

if TYPE_CHECKING:
    from .parts import PortalParts

# Git updates HEAD, packed-refs and branches by renaming a new file into place:
# the file gets a new inode and its directory a new mtime. Both are read, as two
# updates within one tick of the file system's clock can leave the mtime alone.
REPOSITORY_INPUTS = ("", "refs/heads")


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


def portal_snapshots() -> Snapshots[PortalParts]:
    """A store keyed by the portal's inputs: events, probes, the catalog and the repositories' refs."""
    return Snapshots(fingerprint)
