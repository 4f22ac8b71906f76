"""Shared set-up for the preview tests: a real git repository of a tiny service, and cleanup."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

FIXTURE_SERVICE = ROOT / "tests" / "fixtures" / "preview-service"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def service_repository(tmp_path: Path, gate: Path | None = None) -> str:
    """A bare repository (as a file:// URL) of the fixture service.

    Branches: main (healthy), never-ready (/readyz answers 503), crash (exits at start),
    gated (ready once `gate` exists); refs/pull/7/head is a healthy pull request.
    """
    work = tmp_path / "service-src"
    shutil.copytree(FIXTURE_SERVICE, work)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-qm", "fixture service")
    modes = {"never-ready": "never-ready", "crash": "crash"}
    if gate is not None:
        modes["gated"] = f"gated:{gate}"
    for branch, mode in modes.items():
        git(work, "checkout", "-q", "-b", branch, "main")
        (work / "mode.txt").write_text(mode + "\n")
        git(work, "commit", "-qam", f"mode {mode}")
    git(work, "checkout", "-q", "main")
    bare = tmp_path / "repos" / "users-api.git"
    bare.parent.mkdir(exist_ok=True)
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    git(work, "push", "-q", str(bare), "main:refs/pull/7/head")
    return f"file://{bare}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
