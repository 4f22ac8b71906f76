"""The local provider (the default): the review app really runs, on this host.

For each preview, in `<preview dir>/envs/<id>/`:

1. `src/`: a shallow clone of the repository at the ref (a branch, a tag, a
   commit, or a pull request's `refs/pull/<n>/head` / `refs/merge-requests/<n>/head`);
2. `venv/`: an isolated virtual environment. Its dependencies come from a
   shared, read-only environment in `<preview dir>/cache/<key>/`, keyed by the
   hash of the dependency lock (`requirements.txt`, else the dependencies of
   `pyproject.toml`) and the Python version, and built once (with uv when it
   is installed, else pip). The preview's own venv links that environment in
   with a `.pth` file and puts the checkout on its path, so a second preview
   of the same service installs nothing and starts in well under a second;
3. the service itself: a process in its own session (it survives a restart of
   the server, which then adopts it), on a free loopback port, with its
   output in `service.log`. It is ready when its `/readyz` answers 200.

How it starts: `[tool.pltf.preview] command = [...]` in `pyproject.toml`
(`{port}` and `{python}` are filled in), else `uvicorn <package>.app:app` for
the golden template's `src/<package>/app.py` layout. The process gets `PORT`
and `APP_PORT`, `APP_ENVIRONMENT=preview`, and none of the server's own
environment (so no `PLTF_*` token reaches it).

The dependency install and the service run in the sandbox (actions_server/sandbox.py):
the install sees only its cache directory (read-write); the service sees its
checkout (read-write), its venv and the dependency cache (read-only), and
neither the data dir nor any other preview. The service is not tied to the
server's life (previews outlive a restart), and the sandbox passes the service's
environment, `PLTF_PREVIEW_ID` included, to its outermost process: that is the
pid we keep, and the one `process_is` recognises.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import Settings
from ..db import require_postgres_driver
from ..errors import FieldError, PltfError
from ..forges.gitpush import basic_authorization, git_environment, run_git
from ..forges.hosts import git_credentials
from ..redact import Redactor
from ..sandbox import Jail, Sandbox, base_python
from .base import Log, Placement, PreviewProvider, PreviewSpec, Probe, probe_readiness

LOG_TAIL_LINES = 20
STOP_GRACE_SECONDS = 5.0
MAX_RESTARTS = 3
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between threads and processes (two previews building one cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            data = handle.read()
    except OSError:
        return []
    return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()][-lines:]


def process_is(pid: int, preview_id: str) -> bool:
    """Is `pid` alive and really the process we started for this preview (not a reused pid)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    environ = Path(f"/proc/{pid}/environ")
    try:
        if f"PLTF_PREVIEW_ID={preview_id}\0".encode() not in environ.read_bytes():
            return False
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return state != "Z"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _checkout_file(src: Path, name: str) -> str | None:
    """The text of a file at the top of the checkout, None when there is no such regular file.

    The server reads it with its own rights, outside the sandbox: a symbolic link in the repository
    would make it read (and report, in an install error) any file of the host.
    """
    path = src / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PltfError(
                f"{name} is a symbolic link; previews read it only as a file of the repository",
                422,
                "invalid_repository",
            ) from None
        raise
    with os.fdopen(fd, encoding="utf-8", errors="replace") as file:
        return file.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None


def _is_marker(marker: Path) -> bool:
    """Whether the dependency cache's completion marker is there: a file of our own, never a link."""
    return marker.is_file() and not marker.is_symlink()


def _preview_config(src: Path) -> dict[str, Any]:
    """The service's `[tool.pltf.preview]` table: start command, readiness path, database."""
    text = _checkout_file(src, "pyproject.toml")
    if text is None:
        return {}
    try:
        config = tomllib.loads(text).get("tool", {}).get("pltf", {}).get("preview", {})
    except tomllib.TOMLDecodeError:
        return {}
    return config if isinstance(config, dict) else {}


class PreviewDatabases:
    """One empty PostgreSQL database per preview, on the server PLTF_PREVIEW_DATABASE_URL names.

    Each is owned by a login role of its own (same name, no other rights), and that role is what the
    preview gets: the admin URL's role could read or drop every other preview's database, and a
    superuser could run programs on the database host (`COPY ... TO PROGRAM`), outside the sandbox.
    """

    def __init__(self, admin_url: str, redactor: Redactor) -> None:
        self.admin_url = admin_url
        self.redactor = redactor

    @staticmethod
    def name(preview_id: str) -> str:
        return "pltf_" + re.sub(r"[^a-z0-9_]", "_", preview_id.lower())[:50]

    def _password(self, preview_id: str) -> str:
        # Derived, not stored: a restart (which respawns the service) computes the same one.
        return hmac.new(self.admin_url.encode(), f"preview-role:{preview_id}".encode(), hashlib.sha256).hexdigest()

    def url(self, preview_id: str) -> str:
        from sqlalchemy.engine import make_url

        name = self.name(preview_id)
        url = make_url(self.admin_url).set(database=name, username=name, password=self._password(preview_id))
        return url.render_as_string(hide_password=False)

    def create(self, preview_id: str, log: Log) -> str:
        name = self.name(preview_id)
        self.redactor.add([self._password(preview_id)])
        self._execute(
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f'DROP ROLE IF EXISTS "{name}"',
            f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{self._password(preview_id)}' "
            "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
            f'GRANT "{name}" TO CURRENT_USER',  # CREATE DATABASE ... OWNER needs it when the admin is no superuser
            f'CREATE DATABASE "{name}" OWNER "{name}"',
            f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC',
        )
        log(f"created database {name} for the preview (APP_DATABASE_URL), owned by a role of its own")
        return name

    def drop(self, preview_id: str, log: Log | None) -> None:
        name = self.name(preview_id)
        with contextlib.suppress(PltfError):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{name}"')
            if log is not None:
                log(f"dropped database {name}")

    def _execute(self, *statements: str) -> None:
        require_postgres_driver("PLTF_PREVIEW_DATABASE_URL")
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
                for statement in statements:
                    conn.execute(statement.encode())
        except psycopg.Error as exc:
            message = self.redactor(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            raise PltfError(f"preview database: {message}", 502, "preview_database_failed") from None


class LocalProvider(PreviewProvider):
    name = "local"

    def __init__(self, settings: Settings, redactor: Redactor, root: Path) -> None:
        self.settings = settings
        self.redactor = redactor
        self.root = root
        self.python = sys.executable
        self.sandbox = Sandbox(settings)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.owner_key = f"{socket.gethostname()}:{root}"
        if settings.previews.preview_database_url is not None:
            from sqlalchemy.engine import make_url

            # The URL itself is registered with the other settings' secrets; its password alone is not.
            admin = settings.previews.preview_database_url.get_secret_value()
            redactor.add([make_url(admin).password or ""])

    # -- the interface ------------------------------------------------------

    def create(self, spec: PreviewSpec, log: Log) -> Placement:
        self.sandbox.require()  # before anything is made that would have to be undone
        home = self.root / "envs" / spec.id
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        try:
            commit = self._checkout(spec, home / "src", log)
            self.sandbox.hand_over(home / "src")  # the service's own, read-write
            started = time.monotonic()
            cache, hit = self._dependencies(home / "src", log)
            venv = self._overlay(home, cache, home / "src")
            log(
                f"environment ready in {time.monotonic() - started:.1f} s"
                + (" (dependency cache hit)" if hit else " (dependencies installed; cached for next time)")
            )
            command, readiness = self._command(home / "src", venv)
            placement = Placement(
                state={
                    "home": str(home),
                    "commit": commit,
                    "cache": cache.name,
                    "cacheHit": hit,
                    "command": command,
                    "readiness": readiness,
                    "restarts": 0,
                }
            )
            if _preview_config(home / "src").get("database") == "postgres":
                placement.state["database"] = self._databases().create(spec.id, log)
            return self._spawn(spec, placement, log)
        except BaseException:
            self._stop(spec.id, None)
            shutil.rmtree(home, ignore_errors=True)
            if self.settings.previews.preview_database_url is not None:
                self._databases().drop(spec.id, None)
            raise

    def probe(self, spec: PreviewSpec, placement: Placement) -> Probe:
        pid = int(placement.state.get("pid", 0))
        log_path = Path(placement.state.get("home", "")) / "service.log"
        if not self._running(spec.id, pid):
            child = self._children.get(spec.id)
            code = child.returncode if child is not None else None
            how = f" with code {code}" if code is not None else ""
            return Probe("failed", f"the service exited{how}", self._tail(log_path))
        readiness = f"{placement.upstream}{placement.state.get('readiness', '/readyz')}"
        return probe_readiness(readiness, timeout=1.0, logs=lambda: self._tail(log_path))

    def destroy(self, spec: PreviewSpec, placement: Placement, log: Log) -> None:
        pid = int(placement.state.get("pid", 0))
        if self._stop(spec.id, pid):
            log(f"stopped the service (pid {pid})")
        home = Path(placement.state.get("home") or self.root / "envs" / spec.id)
        if home.exists():
            shutil.rmtree(home, ignore_errors=True)
            log("removed its checkout and environment")
        if placement.state.get("database"):
            self._databases().drop(spec.id, log)

    def logs(self, spec: PreviewSpec, placement: Placement) -> list[str]:
        return self._tail(Path(placement.state.get("home", "")) / "service.log")

    def alive(self, spec: PreviewSpec, placement: Placement) -> bool:
        return self._running(spec.id, int(placement.state.get("pid", 0)))

    def restart(self, spec: PreviewSpec, placement: Placement, log: Log) -> Placement | None:
        restarts = int(placement.state.get("restarts", 0))
        if restarts >= MAX_RESTARTS or not Path(placement.state.get("home", "")).is_dir():
            return None
        self._stop(spec.id, int(placement.state.get("pid", 0)))
        placement.state["restarts"] = restarts + 1
        return self._spawn(spec, placement, log)

    def sweep(self, keep: set[str], log: Log) -> list[str]:
        removed = []
        envs = self.root / "envs"
        for home in sorted(envs.iterdir()) if envs.is_dir() else []:
            if home.name in keep:
                continue
            pid_file = home / "pid"
            pid = int(pid_file.read_text().strip() or 0) if pid_file.is_file() else 0
            if self._stop(home.name, pid):
                log(f"stopped leftover preview process {pid} ({home.name})")
            shutil.rmtree(home, ignore_errors=True)
            removed.append(home.name)
        return removed

    # -- steps --------------------------------------------------------------

    def _git_env(self, url: str) -> dict[str, str]:
        """Read access to private repositories on the configured forges; never in the URL."""
        credentials = git_credentials(self.settings, url)
        if credentials is None:
            return git_environment()
        return git_environment(authorization=basic_authorization(*credentials))

    def _fetch_url(self, url: str) -> str:
        """The embedded forge's repositories are read from disk: no round trip (or server) needed."""
        from ..forges.embedded import repository_at

        path = repository_at(self.settings, url)
        if path is not None and (path / "HEAD").is_file():
            return str(path)
        return url

    def _checkout(self, spec: PreviewSpec, src: Path, log: Log) -> str:
        env = self._git_env(spec.repo_url)
        fetch_url = self._fetch_url(spec.repo_url)
        timeout = self.settings.forges.git_timeout_seconds
        where = spec.repo_url + (f" at {spec.ref}" if spec.ref else "")
        if spec.pull_request is not None:
            where = f"{spec.repo_url} pull request #{spec.pull_request}"
        log(f"checking out {where}")
        src.mkdir()
        run_git(["init", "-q"], src, env, timeout, self.redactor, "git init")
        if spec.pull_request is not None:
            candidates = [
                f"refs/pull/{spec.pull_request}/head",
                f"refs/merge-requests/{spec.pull_request}/head",
                f"refs/heads/pr-{spec.pull_request}",
            ]
        elif spec.ref is not None and _SHA.match(spec.ref):
            candidates = [spec.ref]
        elif spec.ref is not None:
            candidates = [f"refs/heads/{spec.ref}", f"refs/tags/{spec.ref}"]
        else:
            candidates = ["HEAD"]
        last: PltfError | None = None
        for candidate in candidates:
            try:
                run_git(
                    ["fetch", "-q", "--depth", "1", "--", fetch_url, candidate],
                    src,
                    env,
                    timeout,
                    self.redactor,
                    f"fetching {candidate}",
                )
            except PltfError as exc:
                last = exc
                if "couldn't find remote ref" in exc.message or "not our ref" in exc.message:
                    continue
                raise
            run_git(["checkout", "-q", "FETCH_HEAD"], src, env, timeout, self.redactor, "git checkout")
            head = run_git(["rev-parse", "HEAD"], src, env, timeout, self.redactor, "git rev-parse")
            commit = head.stdout.strip()
            log(f"checked out {commit[:12]}")
            return commit
        what = f"pull request #{spec.pull_request}" if spec.pull_request is not None else f"ref {spec.ref!r}"
        field = "pullRequest" if spec.pull_request is not None else "ref"
        raise PltfError(
            f"{what} was not found in {spec.repo_url}",
            422,
            "ref_not_found",
            [FieldError(field, last.message[-300:] if last else "not found")],
        )

    def _lock(self, src: Path) -> tuple[str, str]:
        """The dependency lock's text, and what it came from."""
        requirements = _checkout_file(src, "requirements.txt")
        if requirements is not None:
            return requirements, "requirements.txt"
        pyproject = _checkout_file(src, "pyproject.toml")
        if pyproject is not None:
            try:
                project = tomllib.loads(pyproject).get("project", {})
            except tomllib.TOMLDecodeError as exc:
                raise PltfError(f"pyproject.toml is not valid TOML: {exc}", 422, "invalid_repository") from None
            dependencies = project.get("dependencies", [])
            return "".join(f"{dep}\n" for dep in dependencies), "pyproject.toml [project.dependencies]"
        return "", "no dependencies"

    def installer(self) -> str:
        choice = self.settings.previews.preview_installer
        uv = Path(self.python).parent / "uv"
        if choice in ("auto", "uv") and (uv.is_file() or shutil.which("uv")):
            return str(uv) if uv.is_file() else str(shutil.which("uv"))
        if choice == "uv":
            raise PltfError("PLTF_PREVIEW_INSTALLER=uv but uv is not installed", 500, "installer_missing")
        return "pip"

    def _dependencies(self, src: Path, log: Log) -> tuple[Path, bool]:
        lock, source = self._lock(src)
        installer = self.installer()
        version = ".".join(map(str, sys.version_info[:3]))
        key = hashlib.sha256(f"{version}\n{Path(installer).name}\n{lock}".encode()).hexdigest()[:24]
        cache = self.root / "cache" / key
        marker = cache / ".complete"
        if _is_marker(marker):
            os.utime(marker, follow_symlinks=False)
            return cache, True
        with file_lock(self.root / "cache" / f"{key}.lock"):
            if _is_marker(marker):
                return cache, True
            shutil.rmtree(cache, ignore_errors=True)
            log(f"installing dependencies from {source} (cache key {key[:12]})")
            self._build(cache, lock, installer)
            # The installer (a package's build code, as the sandbox's uid) could leave a link here pointing
            # anywhere on the host; touch() would follow it and create or stamp that file as the server.
            if marker.is_dir() and not marker.is_symlink():
                shutil.rmtree(marker)
            else:
                marker.unlink(missing_ok=True)
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        return cache, False

    def _build(self, cache: Path, lock: str, installer: str) -> None:
        timeout = self.settings.previews.preview_install_timeout_seconds
        requirements = cache.parent / f"{cache.name}.requirements.txt"
        requirements.write_text(lock)
        # Building an sdist runs the package's code: the installer runs in the sandbox, with the host's
        # index and TLS configuration (PIP_*, UV_*, SSL_CERT_FILE, pip.conf) and nothing of ours. Its
        # download cache lives in the sandbox's private /tmp: a build cannot poison another's.
        env = self.sandbox.environment(Path("/tmp"), {}, installer=True)  # noqa: S108
        readable = [requirements, *self.sandbox.installer_files()]
        python = str(base_python())
        if installer == "pip":
            steps = [[python, "-m", "venv", str(cache)]]
            if lock.strip():
                steps.append([str(cache / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)])
        else:
            installer = os.path.realpath(installer)
            readable.append(Path(installer))
            steps = [[installer, "venv", "-q", "--python", python, str(cache)]]
            if lock.strip():
                steps.append(
                    [
                        installer,
                        "pip",
                        "install",
                        "-q",
                        "--python",
                        str(cache / "bin" / "python"),
                        "-r",
                        str(requirements),
                    ]
                )
        cache.mkdir(parents=True)
        try:
            for step in steps:
                jail = Jail(step, cache, env, writable=[cache], readable=readable)
                with self.sandbox.lend(cache):
                    done = self.sandbox.run(jail, timeout)
                if done.returncode != 0:
                    detail = self.redactor((done.stderr or done.stdout).strip())[-1500:]
                    raise PltfError(f"installing the dependencies failed: {detail}", 422, "install_failed")
        except subprocess.TimeoutExpired:
            shutil.rmtree(cache, ignore_errors=True)
            raise PltfError(
                f"installing the dependencies took longer than {timeout:g} s", 504, "install_timeout"
            ) from None
        except BaseException:
            shutil.rmtree(cache, ignore_errors=True)
            raise
        finally:
            requirements.unlink(missing_ok=True)

    def _site_packages(self, venv: Path) -> Path:
        return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"

    def _overlay(self, home: Path, cache: Path, src: Path) -> Path:
        """The preview's own venv: the shared dependencies linked in, the checkout on the path."""
        venv = home / "venv"
        python = str(base_python())
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        code = src / "src" if (src / "src").is_dir() else src
        (self._site_packages(venv) / "_pltf_preview.pth").write_text(
            f"import site; site.addsitedir({str(self._site_packages(cache))!r})\n{code}\n"
        )
        return venv

    def _command(self, src: Path, venv: Path) -> tuple[list[str], str]:
        config = _preview_config(src)
        readiness = str(config.get("readiness", "/readyz"))
        command = config.get("command")
        if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
            return [str(venv / "bin" / "python") if part == "{python}" else part for part in command], readiness
        modules: list[str] = []
        code = src / "src" if (src / "src").is_dir() else src
        for app_file in sorted(code.glob("*/app.py")):
            if _PACKAGE.match(app_file.parent.name) and (app_file.parent / "__init__.py").is_file():
                modules.append(f"{app_file.parent.name}.app:app")
        modules += [f"{stem}:app" for stem in ("app", "main") if (code / f"{stem}.py").is_file()]
        if not modules:
            raise PltfError(
                "cannot tell how to start this service: no src/<package>/app.py; "
                "add [tool.pltf.preview] command = [...] to pyproject.toml",
                422,
                "no_start_command",
            )
        python = str(venv / "bin" / "python")
        return [python, "-m", "uvicorn", modules[0], "--host", "127.0.0.1", "--port", "{port}"], readiness

    def _spawn(self, spec: PreviewSpec, placement: Placement, log: Log) -> Placement:
        home = Path(placement.state["home"])
        port = free_port()
        command = [part.replace("{port}", str(port)) for part in placement.state["command"]]
        venv = home / "venv"
        src = home / "src"
        env = self.sandbox.environment(src, {})
        env.update(
            PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
            VIRTUAL_ENV=str(venv),
            PYTHONUNBUFFERED="1",
            PORT=str(port),
            HOST="127.0.0.1",
            APP_PORT=str(port),
            APP_ENVIRONMENT="preview",
            PLTF_PREVIEW_ID=spec.id,
            PLTF_PREVIEW_URL=spec.url,
        )
        if placement.state.get("database"):
            # Built here each time, never stored: the placement is kept in the database.
            env["APP_DATABASE_URL"] = self._databases().url(spec.id)
        cache = self.root / "cache" / placement.state["cache"]
        jail = Jail(command, src, env, writable=[src], readable=[venv, cache])
        with (home / "service.log").open("ab") as out:
            child = self.sandbox.start(jail, out)
        self._children[spec.id] = child
        (home / "pid").write_text(str(child.pid))
        log(f"started {Path(command[0]).name} {' '.join(command[1:])} (pid {child.pid})")
        placement.state.update(pid=child.pid, port=port, startedAt=time.time())
        placement.upstream = f"http://127.0.0.1:{port}"
        return placement

    def _databases(self) -> PreviewDatabases:
        if self.settings.previews.preview_database_url is None:
            raise PltfError(
                'this service asks for a database in previews ([tool.pltf.preview] database = "postgres"); '
                "set PLTF_PREVIEW_DATABASE_URL to a PostgreSQL server pltf may create databases on",
                422,
                "preview_database_unavailable",
            )
        return PreviewDatabases(self.settings.previews.preview_database_url.get_secret_value(), self.redactor)

    def _running(self, preview_id: str, pid: int) -> bool:
        child = self._children.get(preview_id)
        if child is not None and child.pid == pid:
            return child.poll() is None
        return process_is(pid, preview_id)

    def _stop(self, preview_id: str, pid: int | None) -> bool:
        """Stops the process group of a preview's service; True if something was running."""
        child = self._children.pop(preview_id, None)
        if pid is None:
            pid = child.pid if child is not None else 0
        running = child.poll() is None if child is not None and child.pid == pid else process_is(pid, preview_id)
        if not running:
            if child is not None:
                child.poll()
            return False
        # The pid is the sandbox's outermost process, which may go before the service it runs has
        # finished shutting down: stopped means the whole process group is gone.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while time.monotonic() < deadline:
                if child is not None and child.pid == pid:
                    child.poll()  # reaps it: a zombie would still count as a member of the group
                if not _group_alive(pid):
                    return True
                time.sleep(0.02)
        return True

    def _tail(self, path: Path) -> list[str]:
        return [self.redactor(line) for line in tail(path)]
