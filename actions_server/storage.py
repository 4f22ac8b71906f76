"""Whether the directories the server writes to can be written, checked by writing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import Settings


def writable_directories(settings: Settings, git_dir: Path) -> list[Path]:
    found = [settings.storage.data_dir.resolve(), git_dir]
    if settings.storage.workspace_dir is not None:
        found.append(settings.storage.workspace_dir.resolve())
    if settings.runs.scratch_dir is not None:
        found.append(settings.runs.scratch_dir)
    return found


def storage_problem(settings: Settings, git_dir: Path) -> str | None:
    """Why the server cannot write where it keeps its data (the data dir, the embedded forge's `git_dir`
    and the workspace dir) or where runs work (a `PLTF_SCRATCH_DIR`), or None.

    Permission bits do not stop root, so only a real write tells a read-only
    mount or a full disk apart from a usable directory.
    """
    for directory in writable_directories(settings, git_dir):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".pltf-write-probe-", dir=directory)
            try:
                os.write(fd, b"pltf write probe\n")
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            return f"{directory} is not writable: {exc.strerror or exc}"
    return None
