"""Rendered workspaces, kept as tar.gz archives any replica can read back."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from .auth import Caller
from .db import workspaces
from .errors import not_found
from .visibility import only_visible
from .workspace_archive import pack

WORKSPACE_ID_LENGTH = 36
# How many rendered directories this process remembers (see `checkout`): enough for every run in progress.
LIVE_DIRECTORIES = 256


class WorkspaceStore:
    """Stores workspaces in the database, or in a shared directory when one is configured.

    Readers given a `viewer` see only the workspaces of runs that caller may see
    (visibility.py); any other answers 404, as a missing one does.
    """

    def __init__(self, engine: Engine, shared_dir: Path | None = None) -> None:
        self.engine = engine
        self.shared_dir = shared_dir
        # Workspaces saved by this process whose directory may still exist (the saving run's own workspace).
        self._live: OrderedDict[str, Path] = OrderedDict()
        self._live_lock = threading.Lock()

    def save(self, project_dir: Path, files: list[str], run_id: str | None, packed: bytes | None = None) -> str:
        """Stores the project directory; `packed` is it as `pack` made it, when that was done already."""
        workspace_id = str(uuid.uuid4())
        data = pack(project_dir) if packed is None else packed
        if self.shared_dir is not None:
            self.shared_dir.mkdir(parents=True, exist_ok=True)
            (self.shared_dir / f"{workspace_id}.tar.gz").write_bytes(data)
        with self.engine.begin() as conn:
            conn.execute(
                insert(workspaces).values(
                    id=workspace_id,
                    run_id=run_id,
                    directory=project_dir.name,
                    files=files,
                    archive=None if self.shared_dir is not None else data,
                    size=len(data),
                    created_at=time.time(),
                )
            )
        with self._live_lock:
            self._live[workspace_id] = project_dir
            while len(self._live) > LIVE_DIRECTORIES:
                self._live.popitem(last=False)
        return workspace_id

    def info(self, workspace_id: str, viewer: Caller | None = None) -> dict[str, Any]:
        row = self._row(workspace_id, with_archive=False, viewer=viewer)
        return {
            "id": row.id,
            "runId": row.run_id,
            "directory": row.directory,
            "files": row.files,
            "size": row.size,
            "createdAt": row.created_at,
        }

    def archive(self, workspace_id: str, viewer: Caller | None = None) -> bytes:
        row = self._row(workspace_id, with_archive=True, viewer=viewer)
        if row.archive is not None:
            return bytes(row.archive)
        if self.shared_dir is None:
            raise not_found(f"workspace {workspace_id} has no archive")
        path = self.shared_dir / f"{workspace_id}.tar.gz"
        if not path.is_file():
            raise not_found(f"workspace {workspace_id} is missing from the shared directory")
        return path.read_bytes()

    def extract(self, workspace_id: str, destination: Path, viewer: Caller | None = None) -> Path:
        """Unpacks a workspace under `destination`; returns the project directory."""
        directory = self._row(workspace_id, with_archive=False, viewer=viewer).directory
        with tarfile.open(fileobj=io.BytesIO(self.archive(workspace_id, viewer)), mode="r:gz") as archive:
            # The "data" filter refuses absolute paths, `..` and device files.
            archive.extractall(destination, filter="data")
        return destination / str(directory)

    def checkout(self, workspace_id: str, destination: Path, run_id: str, viewer: Caller | None = None) -> Path:
        """The workspace's project directory, to read and not to change: the directory it was saved from
        when run `run_id` saved it from this process (a later step of the run that rendered it: the run's
        directory lasts until the run ends), else `extract`.

        Saves unpacking the archive that was packed a moment ago, in the run that packed it. A directory
        holding a symbolic link is unpacked instead, so the archive's "data" filter still judges links.
        """
        row = self._row(workspace_id, with_archive=False, viewer=viewer)
        with self._live_lock:
            live = self._live.get(workspace_id)
        if row.run_id == run_id and live is not None and live.is_dir() and not _has_links(live):
            return live
        return self.extract(workspace_id, destination, viewer)

    def _row(self, workspace_id: str, with_archive: bool, viewer: Caller | None) -> Any:
        columns = [
            workspaces.c.id,
            workspaces.c.run_id,
            workspaces.c.directory,
            workspaces.c.files,
            workspaces.c.size,
            workspaces.c.created_at,
        ]
        if with_archive:
            columns.append(workspaces.c.archive)
        try:
            uuid.UUID(workspace_id)
        except ValueError:
            raise not_found(f"no workspace {workspace_id!r}") from None
        query = only_visible(select(*columns).where(workspaces.c.id == workspace_id), viewer, workspaces.c.run_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise not_found(f"no workspace {workspace_id!r}")
        return row


def _has_links(directory: Path) -> bool:
    for top, dirs, files in os.walk(directory):
        if any(os.path.islink(os.path.join(top, name)) for name in (*dirs, *files)):
            return True
    return False
