"""The GitOps repository: plain manifests that Argo CD applies, written as commits.

THE one module every writer of the GitOps repository uses (`service:provision`,
the previews' Kubernetes provider, ...):

    repo = GitOpsRepository.from_settings(settings, redactor)
    changes = Changes({"envs/prod/promoapi/namespace.yaml": text}, replace=("envs/prod/promoapi",))
    print(repo.plan(changes))                              # a unified diff; writes nothing
    sha = repo.apply(changes, "promoapi: provision", GitAuthor("pltf", "pltf@localhost"))
    assert repo.apply(changes, "again", author) is None    # nothing changed: no second commit

The remote is the embedded forge's bare repository `platform/gitops` (created,
with `git init --bare -b main`, on the first apply) unless `PLTF_GITOPS_URL`
names another. Work happens in a local clone under
`<data_dir>/gitops/<key>/`, guarded by a file lock so that runs in this process
and in other processes on the same data dir take turns. A push that loses a race
(non-fast-forward) is retried on top of the new remote head, with the same
changes, a few times.

Credentials (`PLTF_GITOPS_TOKEN`) reach git only through the environment
(`GIT_CONFIG_COUNT/KEY/VALUE`, an `http.extraHeader`): never in a URL, never in
`.git/config`. The clone has no remote configured at all; every fetch and push
names the URL.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .config import Settings
from .errors import PltfError, invalid_input
from .forges.base import GitAuthor, RepositorySpec
from .forges.embedded import EmbeddedForge, git_root, repository_dir
from .forges.gitpush import as_text, basic_authorization, git, git_environment, run_git
from .redact import Redactor

__all__ = ["Changes", "Diff", "FileChange", "GitAuthor", "GitOpsRepository"]

PUSH_ATTEMPTS = 5
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info", "cannot lock ref")
_REMOTE_REF = "refs/pltf/remote"


@dataclass(frozen=True)
class Changes:
    """Files to write (`None` deletes one), and directories this change owns wholly.

    Every file under a `replace` directory that is not in `files` is deleted, so
    a manifest that is no longer generated does not linger.
    """

    files: Mapping[str, str | None]
    replace: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for path in [*self.files, *self.replace]:
            _check_path(path)


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # "added" | "modified" | "deleted"


@dataclass
class Diff:
    files: list[FileChange] = field(default_factory=list)
    text: str = ""

    @property
    def empty(self) -> bool:
        return not self.files


def _check_path(path: str) -> None:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or pure.parts[:1] == (".git",) or "\\" in path:
        raise invalid_input(f"not a path inside the GitOps repository: {path!r}")


class GitOpsRepository:
    def __init__(
        self,
        settings: Settings,
        redactor: Redactor,
        *,
        remote: str | None = None,
        branch: str | None = None,
        authorization: str | None = None,
    ) -> None:
        self.settings = settings
        self.redactor = redactor
        self.branch = branch or settings.gitops.gitops_branch
        self.timeout = settings.forges.git_timeout_seconds
        owner, _, name = settings.gitops.gitops_repository.partition("/")
        self._embedded: tuple[str, str] | None = None
        if remote is None and settings.gitops.gitops_url is None:
            self._embedded = (owner, name)
            path = repository_dir(git_root(settings), owner, name)
            if path is None:
                raise PltfError(f"PLTF_GITOPS_REPOSITORY {settings.gitops.gitops_repository!r} is not owner/name", 500)
            self.remote = str(path)
            self.url = f"{settings.server.base_url}/git/{owner}/{name}.git"
        else:
            self.remote = remote or str(settings.gitops.gitops_url)
            self.url = self.remote
        if "@" in self.remote.split("://", 1)[-1].split("/", 1)[0]:
            raise PltfError("the GitOps URL must not carry credentials; set PLTF_GITOPS_TOKEN instead", 500)
        self.authorization = authorization
        if authorization is not None:
            redactor.add([authorization, authorization.split(" ", 1)[-1]])
        key = hashlib.sha256(f"{self.remote}\n{self.branch}".encode()).hexdigest()[:16]
        self.workdir = settings.storage.data_dir / "gitops" / key
        self._lock_path = settings.storage.data_dir / "gitops" / f"{key}.lock"

    @classmethod
    def from_settings(cls, settings: Settings, redactor: Redactor) -> GitOpsRepository:
        authorization = None
        if settings.gitops.gitops_token is not None:
            authorization = basic_authorization(
                settings.gitops.gitops_username, settings.gitops.gitops_token.get_secret_value()
            )
        return cls(settings, redactor, authorization=authorization)

    # -- reading ------------------------------------------------------------

    def read(self, path: str) -> str | None:
        """A file's content at the remote's head, or None."""
        _check_path(path)
        with self._locked():
            self._sync(create=False)
            file = self.workdir / path
            return file.read_text() if file.is_file() else None

    def files(self, pattern: str) -> dict[str, str]:
        """Every file matching a glob (e.g. `envs/*/promoapi/namespace.yaml`) at the remote's head."""
        with self._locked():
            self._sync(create=False)
            return {
                str(p.relative_to(self.workdir)): p.read_text()
                for p in sorted(self.workdir.glob(pattern))
                if p.is_file() and ".git" not in p.relative_to(self.workdir).parts
            }

    # -- planning and applying ------------------------------------------------

    def plan(self, changes: Changes) -> str:
        """The unified diff `apply` would commit. Writes nothing to the remote."""
        return self.diff(changes).text

    def diff(self, changes: Changes) -> Diff:
        with self._locked():
            self._sync(create=False)
            return self._diff(changes)

    def apply(self, changes: Changes, message: str, author: GitAuthor) -> str | None:
        """Commits the changes and pushes them; the commit's sha, or None when nothing changed."""
        return self.apply_with_diff(changes, message, author)[0]

    def apply_with_diff(self, changes: Changes, message: str, author: GitAuthor) -> tuple[str | None, Diff]:
        with self._locked():
            for attempt in range(1, PUSH_ATTEMPTS + 1):
                self._sync(create=True)
                diff = self._diff(changes)
                if diff.empty:
                    return None, diff
                self._write(changes)
                env = git_environment(author)
                self._git(["add", "--all", "."], "git add", env)
                self._git(["commit", "--quiet", "--no-verify", "-m", message], "git commit", env)
                sha = self._git(["rev-parse", "HEAD"], "git rev-parse", env).stdout.strip()
                pushed = self._push(author)
                if pushed:
                    return sha, diff
                if attempt == PUSH_ATTEMPTS:
                    break
        raise PltfError(
            f"the GitOps repository kept moving: gave up after {PUSH_ATTEMPTS} attempts to push; try again",
            409,
            "gitops_conflict",
        )

    # -- internals ----------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _git(self, args: list[str], what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_git(args, self.workdir, env or git_environment(), self.timeout, self.redactor, what)

    def _with_remote(self, args: list[str], author: GitAuthor | None = None) -> subprocess.CompletedProcess[str]:
        """A git command that talks to the remote (with the token, in git's environment); its exit is the caller's."""
        env = git_environment(author, self.authorization)
        return as_text(git(args, cwd=self.workdir, env=env, timeout=self.timeout))

    def _remote_exists(self) -> bool:
        if self._embedded is None:
            return True
        return (Path(self.remote) / "HEAD").is_file()

    def _create_remote(self) -> None:
        assert self._embedded is not None
        owner, name = self._embedded
        spec = RepositorySpec(
            owner=owner,
            name=name,
            description="GitOps manifests written by pltf; Argo CD applies them.",
            visibility="private",
            default_branch=self.branch,
        )
        try:
            EmbeddedForge(self.settings, self.redactor).create_repository(spec)
        except PltfError as exc:
            if exc.status != 409:  # made by someone else meanwhile: fine
                raise

    def _sync(self, *, create: bool) -> None:
        """Makes the clone's work tree the remote branch's head exactly (empty if there is none)."""
        if not (self.workdir / ".git").is_dir():
            self.workdir.mkdir(parents=True, exist_ok=True)
            run_git(
                ["init", "--quiet", "-b", self.branch, str(self.workdir)],
                self.workdir.parent,
                git_environment(),
                self.timeout,
                self.redactor,
                "git init",
            )
        if not self._remote_exists():
            if create:
                self._create_remote()
            else:
                self._reset(None)
                return
        env = git_environment(authorization=self.authorization)
        done = self._with_remote(["ls-remote", "--heads", self.remote, f"refs/heads/{self.branch}"])
        if done.returncode != 0:
            detail = self.redactor((done.stderr or done.stdout).strip())
            raise PltfError(f"cannot read the GitOps repository {self.url}: {detail[-800:]}", 502, "git_failed")
        if not done.stdout.strip():
            self._reset(None)  # an empty repository: no branch yet
            return
        self._git(
            ["fetch", "--quiet", "--no-tags", self.remote, f"+refs/heads/{self.branch}:{_REMOTE_REF}"],
            f"git fetch from {self.url}",
            env,
        )
        self._reset(_REMOTE_REF)

    def _reset(self, ref: str | None) -> None:
        env = git_environment()
        if ref is None:
            self._git(["symbolic-ref", "HEAD", f"refs/heads/{self.branch}"], "git symbolic-ref", env)
            self._git(["update-ref", "-d", f"refs/heads/{self.branch}"], "git update-ref", env)
            self._git(["read-tree", "--empty"], "git read-tree", env)
        else:
            # --force drops local changes to tracked files, as `reset --hard` would: one command, not two.
            self._git(["checkout", "--quiet", "--force", "-B", self.branch, ref], "git checkout", env)
        self._git(["clean", "--quiet", "-fdx"], "git clean", env)

    def _targets(self, changes: Changes) -> dict[str, str | None]:
        """Every path the change touches, with its new content (None: absent)."""
        targets: dict[str, str | None] = {}
        for directory in changes.replace:
            base = self.workdir / directory
            if base.is_dir():
                for path in base.rglob("*"):
                    if path.is_file():
                        targets[str(path.relative_to(self.workdir))] = None
        targets.update(changes.files)
        return targets

    def _diff(self, changes: Changes) -> Diff:
        diff = Diff()
        chunks: list[str] = []
        for path, new in sorted(self._targets(changes).items()):
            file = self.workdir / path
            old = file.read_text() if file.is_file() else None
            if old == new:
                continue
            status = "added" if old is None else "deleted" if new is None else "modified"
            diff.files.append(FileChange(path, status))
            chunks.extend(
                difflib.unified_diff(
                    (old or "").splitlines(keepends=True),
                    (new or "").splitlines(keepends=True),
                    fromfile="/dev/null" if old is None else f"a/{path}",
                    tofile="/dev/null" if new is None else f"b/{path}",
                )
            )
        diff.text = "".join(line if line.endswith("\n") else line + "\n" for line in chunks)
        return diff

    def _write(self, changes: Changes) -> None:
        for path, content in self._targets(changes).items():
            file = self.workdir / path
            if content is None:
                file.unlink(missing_ok=True)
            else:
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(content)

    def _push(self, author: GitAuthor) -> bool:
        """True when pushed; False when the remote moved on (a non-fast-forward), to retry."""
        done = self._with_remote(["push", "--porcelain", self.remote, f"HEAD:refs/heads/{self.branch}"], author)
        if done.returncode == 0:
            return True
        output = f"{done.stdout}\n{done.stderr}"
        if any(marker in output for marker in _REJECTED):
            return False
        detail = self.redactor(output.strip())
        raise PltfError(f"git push to {self.url} failed: {detail[-1500:]}", 502, "git_failed")
