"""Drives a real, headless Backstage backend (tests/e2e/backstage/) from Python.

Used by the end-to-end test and by benchmarks/backstage.py: installs the npm
packages (through install.sh and its cache), starts `node backend.js` on
loopback with a config overlay holding the ports, tokens and template
locations, and talks to the scaffolder and catalog REST APIs.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
BACKSTAGE_DIR = ROOT / "tests" / "e2e" / "backstage"
TEMPLATES_DIR = ROOT / "backstage-templates"
PLUGIN_DIR = ROOT / "backstage-plugin"
MODULE_NAME = "@pltf/backstage-plugin-scaffolder-backend-module-pltf"
BACKSTAGE_TOKEN = "backstage-e2e-static-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def install(timeout: float = 900) -> str:
    """Runs install.sh (cached `npm ci`); returns what it printed."""
    result = set_up(["bash", str(BACKSTAGE_DIR / "install.sh")], "tests/e2e/backstage/install.sh", timeout, tail=3000)
    return result.stdout.strip()


def set_up(
    command: list[str], what: str, timeout: float, cwd: Path | None = None, tail: int = 2000
) -> subprocess.CompletedProcess[str]:
    """Runs a set-up command; one that fails raises with the end of what it printed."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stdout[-tail:]}\n{result.stderr[-tail:]}")
    return result


def install_module(workdir: Path, timeout: float = 300) -> Path:
    """pltf's scaffolder module as an adopter gets it: `npm pack`, then `npm install <tarball>`.

    Installed on its own (it has no dependencies; Backstage's packages are peers), and loaded by
    backend.js from the returned directory; Node finds the peers through NODE_PATH.
    """
    packed = workdir / "packed"
    prefix = workdir / "module"
    packed.mkdir(parents=True, exist_ok=True)
    prefix.mkdir(parents=True, exist_ok=True)
    npm = ["npm", "--no-audit", "--no-fund", "--loglevel=error"]
    pack = set_up([*npm, "pack", "--pack-destination", str(packed), "--json"], "npm pack", timeout, cwd=PLUGIN_DIR)
    tarball = packed / json.loads(pack.stdout)[0]["filename"].replace("@", "").replace("/", "-")
    install = [*npm, "install", "--offline", "--legacy-peer-deps", "--prefix", str(prefix), str(tarball)]
    set_up(install, f"npm install {tarball.name}", timeout)
    return prefix / "node_modules" / MODULE_NAME


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, mappings merged key by key as Backstage merges its config files."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class TaskResult:
    id: str
    status: str  # the task's: completed, failed or cancelled
    events: list[dict[str, Any]]
    # For each event, the number of the poll that brought it: what arrived while the task ran.
    polls: list[int] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "\n".join(str(event["body"].get("message", "")) for event in self.events if event.get("type") == "log")

    @property
    def output(self) -> dict[str, Any]:
        """The template's output, which only the completion event carries."""
        for event in self.events:
            if event.get("type") == "completion":
                return dict(event["body"].get("output") or {})
        return {}


@dataclass
class Backstage:
    """`node backend.js` with the test's config overlay; stop() kills its process group."""

    pltf_url: str
    pltf_token: str
    workdir: Path
    template_files: Iterable[Path] = ()
    extra_config: dict[str, Any] = field(default_factory=dict)
    # More `host:port`s that Backstage may read (backend.reading.allow), besides pltf's forge.
    reading_hosts: Iterable[str] = ()
    # Installed backend modules (directories) that backend.js adds: pltf's, from install_module().
    modules: Iterable[Path] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "backstage.log"

    def overlay(self) -> dict[str, Any]:
        locations = [
            {"type": "file", "target": str(path.resolve()), "rules": [{"allow": ["Template"]}]}
            for path in self.template_files
        ]
        hosts = [urlsplit(self.pltf_url).netloc, *self.reading_hosts]
        config: dict[str, Any] = {
            "catalog": {"locations": locations},
            "backend": {"reading": {"allow": [{"host": host} for host in hosts]}},
        }
        return merged(config, self.extra_config)

    def start(self, timeout: float = 120) -> Backstage:
        self.workdir.mkdir(parents=True, exist_ok=True)
        overlay = self.workdir / "app-config.test.yaml"
        overlay.write_text(yaml.safe_dump(self.overlay(), sort_keys=False))
        env = {
            **os.environ,
            "BACKSTAGE_PORT": str(self.port),
            "BACKSTAGE_TOKEN": BACKSTAGE_TOKEN,
            "PLTF_URL": self.pltf_url,
            "PLTF_API_TOKEN": self.pltf_token,
            "PLTF_FORGE_HOST": urlsplit(self.pltf_url).netloc,
            "NODE_ENV": "development",
            "NODE_OPTIONS": "--no-deprecation",
            "PLTF_BACKSTAGE_MODULES": os.pathsep.join(str(path) for path in self.modules),
            # A module installed on its own finds Backstage's packages (its peers) here.
            "NODE_PATH": str(BACKSTAGE_DIR / "node_modules"),
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["node", "backend.js", "--config", "app-config.yaml", "--config", str(overlay)],
            cwd=BACKSTAGE_DIR,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Backstage exited:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/.backstage/health/v1/readiness", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Backstage did not get ready in {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Backstage:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- REST -------------------------------------------------------------------

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api", headers={"Authorization": f"Bearer {BACKSTAGE_TOKEN}"}, timeout=timeout
        )

    def wait_for_entity(self, kind: str, name: str, timeout: float = 60, namespace: str = "default") -> dict[str, Any]:
        """Entities appear a moment after the backend reports ready: wait for the entity itself."""
        deadline = time.monotonic() + timeout
        with self.client() as api:
            while time.monotonic() < deadline:
                response = api.get(f"/catalog/entities/by-name/{kind}/{namespace}/{name}")
                if response.status_code == 200:
                    return dict(response.json())
                time.sleep(0.1)
        raise AssertionError(f"{kind}:{namespace}/{name} did not appear in Backstage's catalog:\n{self.tail()}")

    def create_task(self, template: str, values: dict[str, Any], api: httpx.Client | None = None) -> str:
        body = {"templateRef": f"template:default/{template}", "values": values}
        if api is None:
            with self.client() as own:
                response = own.post("/scaffolder/v2/tasks", json=body)
        else:
            response = api.post("/scaffolder/v2/tasks", json=body)
        if response.status_code != 201:
            raise TaskRefused(response.status_code, response.json() if response.content else {})
        return str(response.json()["id"])

    def follow(
        self, task_id: str, timeout: float = 120, api: httpx.Client | None = None, poll: float = 0.1
    ) -> TaskResult:
        """Polls the task's events until its completion (or cancellation) event."""
        events: list[dict[str, Any]] = []
        polls: list[int] = []
        after: int | None = None
        deadline = time.monotonic() + timeout
        own = api is None
        api = api or self.client()
        try:
            for poll in itertools.count():
                if time.monotonic() >= deadline:
                    break
                params = {"after": str(after)} if after is not None else {}
                response = api.get(f"/scaffolder/v2/tasks/{task_id}/events", params=params)
                response.raise_for_status()
                batch = response.json()
                for event in batch:
                    events.append(event)
                    polls.append(poll)
                    after = int(event["id"])
                    if event.get("type") in ("completion", "cancelled"):
                        # The completion event carries the output; the task carries the status.
                        task = api.get(f"/scaffolder/v2/tasks/{task_id}")
                        task.raise_for_status()
                        return TaskResult(task_id, str(task.json()["status"]), events, polls)
                if not batch:
                    time.sleep(poll)
        finally:
            if own:
                api.close()
        raise AssertionError(f"task {task_id} did not finish in {timeout:.0f} s: {json.dumps(events)[-2000:]}")

    def cancel(self, task_id: str) -> None:
        with self.client() as api:
            response = api.post(f"/scaffolder/v2/tasks/{task_id}/cancel", json={})
            response.raise_for_status()

    def actions(self) -> dict[str, dict[str, Any]]:
        """The scaffolder's template actions by id (`GET /api/scaffolder/v2/actions`)."""
        with self.client() as api:
            response = api.get("/scaffolder/v2/actions")
            response.raise_for_status()
            return {action["id"]: action for action in response.json()}

    def retry(self, task_id: str) -> None:
        with self.client() as api:
            response = api.post(f"/scaffolder/v2/tasks/{task_id}/retry", json={})
            response.raise_for_status()

    def dry_run(self, template_file: Path | dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """`POST /v2/dry-run` of a template file or document: its log, output and workspace files."""
        template = yaml.safe_load(template_file.read_text()) if isinstance(template_file, Path) else template_file
        with self.client() as api:
            response = api.post(
                "/scaffolder/v2/dry-run",
                json={"template": template, "values": values, "secrets": {}, "directoryContents": []},
            )
        if response.status_code != 200:
            raise AssertionError(f"dry-run answered {response.status_code}: {response.text[:2000]}")
        return dict(response.json())


class TaskRefused(Exception):
    """`POST /v2/tasks` refused the values (Backstage checks them against the template's form)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {json.dumps(body)[:1000]}")
        self.status = status
        self.body = body
