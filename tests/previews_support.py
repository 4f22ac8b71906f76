"""Shared set-up for the preview tests: a real git repository of a tiny service, and cleanup."""

from __future__ import annotations

import os
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path

from conftest import FIXTURE_TEMPLATES, ROOT, free_port

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


class Gate:
    """What the fixture service's `gated` mode waits for: a loopback port that accepts connections.

    A port rather than a file, because the service runs in the sandbox, where the test's files do not exist.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._server: socketserver.TCPServer | None = None

    def open(self) -> None:
        socketserver.TCPServer.allow_reuse_address = True
        self._server = socketserver.TCPServer(("127.0.0.1", self.port), socketserver.BaseRequestHandler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def service_repository(tmp_path: Path, gate: Gate | None = None) -> str:
    """A bare repository (as a file:// URL) of the fixture service.

    Branches: main (healthy), never-ready (/readyz answers 503), crash (exits at start),
    gated (ready while `gate` is open); refs/pull/7/head is a healthy pull request.
    """
    work = tmp_path / "service-src"
    shutil.copytree(FIXTURE_SERVICE, work)
    shutil.copy(FIXTURE_TEMPLATES / "snooping-hook" / "hooks" / "snoop.py", work)  # for its /snoop page
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-qm", "fixture service")
    modes = {"never-ready": "never-ready", "crash": "crash"}
    if gate is not None:
        modes["gated"] = f"gated:{gate.port}"
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
