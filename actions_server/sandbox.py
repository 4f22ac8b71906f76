"""The sandbox every piece of code pltf did not write runs in: template hooks,
dependency installs of previews (building an sdist runs the package's code) and
preview services.

What the code sees:

- an environment built from an allow-list (PATH, locale, TZ, HOME = its
  workspace, plus what the caller passes), so no `PLTF_*` secret or forge token;
- a filesystem of read-only system paths (/usr, /etc, the libraries), the
  Python installation, its own workspace read-write, what the caller lends it
  read-only, a private /tmp, /proc and /dev. The data dir, the token files, the
  database, the git dir and other previews do not exist in there;
- resource limits (address space, CPU time, processes, file size, open files);
- when the server runs as root, a dedicated unprivileged uid (PLTF_SANDBOX_UID,
  nobody by default). That is a second wall behind the mount namespace (a path
  bound by mistake is still unreadable if it is 0700 root, /etc/shadow too), and
  it is what makes RLIMIT_NPROC mean anything: the kernel does not apply it to
  root. The limit counts every process of that uid, so it bounds all sandboxes
  together; a fork bomb stops there instead of taking the host.

Hooks get a network of their own (nothing but an empty loopback): on the
host's, they would reach every loopback service (pltf's API, a PostgreSQL
that trusts local connections). Previews and installs share the host's:
previews listen on a loopback port the server proxies to, and installs need
the package index.

Backends: bubblewrap (`bwrap`), else util-linux `unshare` with a mount and pid
namespace built by a small shell script, else none: then hooks and previews are
refused with `sandbox_unavailable`, unless PLTF_SANDBOX=off (unsafe: the code
sees the host's files) says to run them anyway. Which one works is probed once
per process by running a trivial command in it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .config import Settings
from .errors import PltfError

OFF = "off"
UNAVAILABLE = "unavailable"
# Read-only system paths every sandbox gets; the symlinks of a merged /usr stay symlinks.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
KEPT_ENVIRONMENT = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
# What an installer needs to reach the package index: index URLs, TLS roots, proxies.
INSTALLER_ENVIRONMENT = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_FIND_LINKS",
    "PIP_CERT",
    "PIP_CONFIG_FILE",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_FIND_LINKS",
    "UV_NATIVE_TLS",
    "UV_CONFIG_FILE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
INSTALL_HINT = "install bubblewrap (as root: apt-get install bubblewrap)"
PROBE_TIMEOUT_SECONDS = 10.0
MB = 1024 * 1024
CPU_GRACE_SECONDS = 5


def base_python() -> Path:
    """The interpreter itself (not the server's virtualenv, which is not in the sandbox)."""
    return Path(os.path.realpath(sys.executable))


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpu_seconds: int | None
    processes: int
    file_mb: int
    open_files: int

    def prlimit(self) -> list[str]:
        args = [
            f"--as={self.memory_mb * MB}",
            f"--nproc={self.processes}",
            f"--fsize={self.file_mb * MB}",
            f"--nofile={self.open_files}",
            "--core=0",
        ]
        if self.cpu_seconds is not None:
            # SIGXCPU at the soft limit says why it ended; SIGKILL at the hard one if it ignores that.
            args.append(f"--cpu={self.cpu_seconds}:{self.cpu_seconds + CPU_GRACE_SECONDS}")
        return ["/usr/bin/prlimit", *args, "--"]


@dataclass
class Jail:
    """One sandboxed command: where it works, what it may see, how long it may live."""

    command: list[str]
    workdir: Path
    env: dict[str, str]
    writable: list[Path] = field(default_factory=list)
    readable: list[Path] = field(default_factory=list)
    # A hook dies with the server; a preview outlives it (a restart adopts it).
    outlive_server: bool = False
    # Previews listen on loopback for the proxy, installs reach the index; a hook needs no network, and on a
    # shared one it would reach every loopback service of the host (pltf's API, a trusting PostgreSQL).
    network: bool = True


def _masks(settings: Settings) -> list[Path]:
    """Secrets that could sit under a system path we bind (e.g. a token file in /etc): hidden explicitly."""
    candidates = [
        settings.storage.data_dir,
        settings.forges.git_dir,
        settings.server.token_file,
        settings.storage.workspace_dir,
        settings.previews.preview_dir,
        settings.previews.preview_kubeconfig,
        settings.gitops.spec_policy_file,
    ]
    return [Path(os.path.abspath(p)) for p in candidates if p is not None and Path(p).exists()]


class _Mounts:
    """The filesystem view, as an ordered list of operations both backends can carry out."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, str, str]] = []
        self.dirs: set[str] = {"/"}

    def parents(self, path: str) -> None:
        # bwrap would create missing parents with the mode of the originals (0700 for /root): make them 0755.
        parent = os.path.dirname(path)
        if parent in self.dirs:
            return
        self.parents(parent)
        self.ops.append(("dir", "", parent))
        self.dirs.add(parent)

    def add(self, kind: str, source: str, dest: str) -> None:
        self.parents(dest)
        self.ops.append((kind, source, dest))
        if kind in ("dir", "tmpfs", "bind", "ro-bind") and os.path.isdir(source or "/"):
            self.dirs.add(dest)
        elif kind == "dev":
            # Both backends make the new /dev with a shm directory (the unshare one a 1777 tmpfs): a
            # scratch directory lent from the host's /dev/shm goes inside it without re-making either.
            self.dirs.update((dest, f"{dest}/shm"))


def _view(jail: Jail, masks: list[Path]) -> _Mounts:
    mounts = _Mounts()
    for system in SYSTEM_PATHS:
        if os.path.islink(system):
            mounts.add("symlink", os.readlink(system), system)
        elif os.path.isdir(system):
            mounts.add("ro-bind", system, system)
    python_home = sys.base_prefix
    if not any(python_home == s or python_home.startswith(s + "/") for s in SYSTEM_PATHS):
        mounts.add("ro-bind", python_home, python_home)
    mounts.add("proc", "", "/proc")
    mounts.add("dev", "", "/dev")
    mounts.add("tmpfs", "", "/tmp")  # noqa: S108 - a private, empty /tmp
    for secret in masks:
        if any(str(secret).startswith(s + "/") for s in SYSTEM_PATHS):
            mounts.add("mask-dir" if secret.is_dir() else "mask-file", "", str(secret))
    visible = [*SYSTEM_PATHS, python_home]
    lent = [(p, "bind") for p in jail.writable] + [(p, "ro-bind") for p in jail.readable]
    for path, kind in sorted(lent, key=lambda item: len(item[0].parts)):
        real = os.path.abspath(path)
        if kind == "ro-bind" and any(real == v or real.startswith(v + "/") for v in visible):
            continue  # visible already (e.g. SSL_CERT_DIR under /etc)
        mounts.add(kind, real, real)
    return mounts


def _bwrap_args(mounts: _Mounts) -> list[str]:
    args: list[str] = []
    for kind, source, dest in mounts.ops:
        if kind == "dir":
            args += ["--perms", "0755", "--dir", dest]
        elif kind == "symlink":
            args += ["--symlink", source, dest]
        elif kind in ("bind", "ro-bind"):
            args += [f"--{kind}", source, dest]
        elif kind == "proc":
            args += ["--proc", dest]
        elif kind == "dev":
            args += ["--dev", dest]
        elif kind == "tmpfs":
            args += ["--perms", "1777", "--tmpfs", dest]
        elif kind == "mask-dir":
            args += ["--perms", "0700", "--tmpfs", dest]
        elif kind == "mask-file":
            args += ["--ro-bind", "/dev/null", dest]
    return args


_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


def _unshare_script(mounts: _Mounts, root: str, workdir: str) -> str:
    """Builds the view under `root` inside the new mount namespace, then chroots into it."""
    q = shlex.quote
    lines = ["set -eu", f"R={q(root)}", 'mount -t tmpfs -o mode=0755 pltf-sandbox "$R"']
    for kind, source, dest in mounts.ops:
        target = f'"$R"{q(dest)}'
        if kind == "dir":
            lines.append(f"mkdir -p {target} && chmod 0755 {target}")
        elif kind == "symlink":
            lines.append(f"ln -s {q(source)} {target}")
        elif kind in ("bind", "ro-bind"):
            make = f"mkdir -p {target}" if os.path.isdir(source) else f"touch {target}"
            lines.append(f"{make} && mount --rbind {q(source)} {target}")
            if kind == "ro-bind":
                lines.append(f"mount -o remount,bind,ro {target}")
        elif kind == "proc":
            lines.append(f"mkdir -p {target} && mount -t proc proc {target}")
        elif kind == "dev":
            lines.append(f"mkdir -p {target} && mount -t tmpfs -o mode=0755 pltf-dev {target}")
            for node in _DEV_NODES:
                lines.append(f"touch {target}/{node} && mount --bind /dev/{node} {target}/{node}")
            for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
                lines.append(f"ln -s {link} {target}/{name}")
            lines.append(f"ln -s /proc/self/fd/1 {target}/stdout && ln -s /proc/self/fd/2 {target}/stderr")
            lines.append(f"mkdir -p {target}/shm && mount -t tmpfs -o mode=1777 pltf-shm {target}/shm")
        elif kind in ("tmpfs", "mask-dir"):
            mode = "1777" if kind == "tmpfs" else "0700"
            lines.append(f"mkdir -p {target} && mount -t tmpfs -o mode={mode} pltf-tmp {target}")
        elif kind == "mask-file":
            lines.append(f"mount --bind /dev/null {target}")
    lines.append(f'exec /usr/sbin/chroot "$R" /usr/bin/env -C {q(workdir)} "$@"')
    return "\n".join(lines)


PROBE_LIMITS = Limits(memory_mb=256, cpu_seconds=5, processes=64, file_mb=1, open_files=64)


@functools.lru_cache(maxsize=8)
def _probe(requested: str, drop_uid: int | None) -> tuple[str, str]:
    """(backend, problem): the first backend that really runs a trivial command; cached per process."""
    if requested == OFF:
        return OFF, ""
    candidates = ["bwrap", "unshare"] if requested == "auto" else [requested]
    problems = []
    for backend in candidates:
        if shutil.which(backend) is None:
            problems.append(f"{backend} is not installed")
            continue
        jail = Jail(["/bin/true"], Path("/"), {"PATH": SAFE_PATH})
        argv = _command_line(backend, drop_uid, jail, [], PROBE_LIMITS)
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS, check=False, env=jail.env
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{backend} does not run: {exc}")
            continue
        if done.returncode == 0:
            return backend, ""
        detail = (done.stderr or done.stdout).strip().splitlines()
        problems.append(f"{backend} does not run: {detail[-1] if detail else f'exit status {done.returncode}'}")
    return UNAVAILABLE, "; ".join(problems)


def _limits(settings: Settings, cpu_seconds: int | None) -> Limits:
    return Limits(
        memory_mb=settings.isolation.sandbox_memory_mb,
        cpu_seconds=cpu_seconds,
        processes=settings.isolation.sandbox_max_processes,
        file_mb=settings.isolation.sandbox_max_file_mb,
        open_files=settings.isolation.sandbox_max_open_files,
    )


def _command_line(backend: str, drop_uid: int | None, jail: Jail, masks: list[Path], limits: Limits) -> list[str]:
    """The command line that runs `jail.command` in the backend, with the limits and the uid drop."""
    inner = [*limits.prlimit()]
    # Root in the sandbox (the server's root, or root of unshare's user namespace) could leave a chroot
    # or undo mounts: it drops every capability, and its uid when it has one to drop to. Unprivileged
    # bwrap has dropped them itself.
    if drop_uid is not None or backend == "unshare":
        inner.append("/usr/bin/setpriv")
        if drop_uid is not None:
            inner += [f"--reuid={drop_uid}", f"--regid={drop_uid}", "--clear-groups"]
        inner += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    inner += jail.command
    if backend == OFF:
        return inner
    mounts = _view(jail, masks)
    if backend == "bwrap":
        args = [shutil.which("bwrap") or "bwrap", *_bwrap_args(mounts), "--chdir", str(jail.workdir)]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not jail.network:
            args.append("--unshare-net")
        if not jail.outlive_server:
            args.append("--die-with-parent")
        return [*args, "--", *inner]
    # Each sandbox mounts its own root over this empty directory, in its own mount namespace: one is enough.
    root = Path(tempfile.gettempdir()) / "pltf-sandbox-root"
    root.mkdir(mode=0o700, exist_ok=True)
    args = [
        shutil.which("unshare") or "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--ipc",
        "--uts",
        "--propagation",
        "private",
    ]
    if not jail.network:
        args.append("--net")
    if os.geteuid() != 0:
        args += ["--user", "--map-root-user"]
    if not jail.outlive_server:
        # unshare kills its child when it dies; this makes it die with the server, as bwrap's --die-with-parent.
        args = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", *args, "--kill-child"]
    script = _unshare_script(mounts, str(root), str(jail.workdir))
    return [*args, "/bin/sh", "-c", script, "pltf-sandbox", *inner]


class Sandbox:
    """The one way pltf runs template and repository code; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def drop_uid(self) -> int | None:
        """The uid sandboxed code runs as when the server is root (and isolation is on)."""
        if os.geteuid() != 0 or self.settings.isolation.sandbox == OFF:
            return None
        return self.settings.isolation.sandbox_uid

    def status(self) -> tuple[str, str]:
        """(backend in use or "unavailable", why not)."""
        return _probe(self.settings.isolation.sandbox, self.drop_uid)

    @property
    def backend(self) -> str:
        return self.status()[0]

    def require(self) -> str:
        backend, problem = self.status()
        if backend != UNAVAILABLE:
            return backend
        raise PltfError(
            f"template code (hooks, previews) only runs in a sandbox, and none is available "
            f"(PLTF_SANDBOX={self.settings.isolation.sandbox}: {problem}); {INSTALL_HINT}, "
            "or set PLTF_SANDBOX=off to run it without isolation (unsafe)",
            503,
            "sandbox_unavailable",
        )

    def environment(self, home: Path, extra: Mapping[str, str], installer: bool = False) -> dict[str, str]:
        """The allow-listed environment: nothing else of the server's reaches the code."""
        kept = KEPT_ENVIRONMENT + (INSTALLER_ENVIRONMENT if installer else ())
        env = {key: os.environ[key] for key in kept if key in os.environ}
        env.update(PATH=f"{base_python().parent}:{SAFE_PATH}", HOME=str(home))
        env.update(extra)
        return env

    def installer_files(self) -> list[Path]:
        """Index configuration and TLS roots the installer reads, bound read-only where they live."""
        home = Path(os.environ.get("HOME", "/nonexistent"))
        names = ("PIP_CONFIG_FILE", "UV_CONFIG_FILE", "PIP_CERT", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
        candidates = [Path(os.environ[name]) for name in names if os.environ.get(name)]
        candidates += [home / ".config" / "pip" / "pip.conf", home / ".pip" / "pip.conf", home / ".config" / "uv"]
        return [path for path in candidates if path.exists()]

    @contextlib.contextmanager
    def lend(self, *paths: Path) -> Iterator[None]:
        """Makes `paths` writable by the sandbox uid for a while, then the server's again.

        Giving them back matters: git refuses to work in a directory another user owns.
        """
        self.hand_over(*paths)
        try:
            yield
        finally:
            self.hand_over(*paths, uid=os.geteuid(), gid=os.getegid())

    def hand_over(self, *paths: Path, uid: int | None = None, gid: int | None = None) -> None:
        """Gives `paths` (recursively, never following a symlink) to the sandbox uid, or to `uid`."""
        target_uid = self.drop_uid if uid is None else uid
        if target_uid is None:
            return
        target_gid = target_uid if gid is None else gid
        for path in paths:
            if not path.exists():
                continue
            os.chown(path, target_uid, target_gid, follow_symlinks=False)
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), target_uid, target_gid, follow_symlinks=False)

    def _argv(self, jail: Jail, cpu_seconds: int | None) -> list[str]:
        backend = self.require()
        limits = _limits(self.settings, cpu_seconds)
        return _command_line(backend, self.drop_uid, jail, _masks(self.settings), limits)

    def run(self, jail: Jail, timeout: float) -> subprocess.CompletedProcess[str]:
        """Runs a short job (hook, install) to completion; on timeout its whole process group is killed."""
        argv = self._argv(jail, self.settings.isolation.sandbox_cpu_seconds)
        child = subprocess.Popen(
            argv,
            cwd=jail.workdir,
            env=jail.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # no controlling terminal, and one group to kill
        )
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            raise
        return subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)

    def start(self, jail: Jail, output: IO[Any]) -> subprocess.Popen[bytes]:
        """Starts a long-lived service in its own session; the caller stops it by its process group."""
        jail.outlive_server = True
        return subprocess.Popen(
            self._argv(jail, None),
            cwd=jail.workdir,
            env=jail.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def describe_exit(returncode: int) -> str:
    """Why a sandboxed process ended, in words a template author can act on."""
    # bwrap and unshare report a child killed by signal N as exit status 128 + N.
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if number == 0:
        return f"exit status {returncode}"
    reasons: dict[int, str] = {
        signal.SIGXCPU: "it used up its CPU time (PLTF_SANDBOX_CPU_SECONDS)",
        signal.SIGXFSZ: "it wrote a file larger than PLTF_SANDBOX_MAX_FILE_MB",
        signal.SIGKILL: "it was killed (SIGKILL)",
        signal.SIGSEGV: "it crashed (SIGSEGV), possibly out of memory (PLTF_SANDBOX_MEMORY_MB)",
    }
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return reasons.get(number, f"it was killed by {name}")


def sandbox_summary(settings: Settings) -> dict[str, str]:
    """What /readyz and `pltf config` show."""
    backend, problem = Sandbox(settings).status()
    summary = {"sandbox": backend}
    if problem and backend == UNAVAILABLE:
        summary["sandboxProblem"] = f"{problem}; {INSTALL_HINT}"
    return summary
