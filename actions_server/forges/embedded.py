"""The embedded forge (the default): bare repositories under the data dir, served by this server.

Repositories live at `<git_dir>/<owner>/<name>.git` (`git_dir` defaults to
`<data_dir>/git`) and are served over git's smart HTTP protocol at
`<public url>/git/<owner>/<name>.git` (see `git_http`).

Creation is atomic: the bare repository is made in a staging directory and
renamed into place. `rename` onto an existing (non-empty) repository fails, so
of two requests creating one repository at once, in one process or in several
replicas sharing `git_dir`, exactly one wins and the other gets a 409. Replicas
that do not share `git_dir` each have repositories of their own: give them a
shared volume.

Each repository's `pltf.json` records what git does not: description,
visibility, topics, default branch, whether it is protected, and the owner
team (see `permissions` for what they allow).

The action server writes the first commit into its own repositories through
the filesystem (see `EmbeddedForge.push`): going through HTTP would cost a round
trip and a token to itself.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from ..config import Settings
from ..errors import FieldError, PltfError, conflict
from ..redact import Redactor
from ..urls import UrlRefused, normalise_url
from .base import _BRANCH, CreatedRepository, Forge, GitAuthor, RepositorySpec, name_rule
from .gitpush import git_environment, run_git

# One path segment: no `..`, no leading dot or dash, no `.git` suffix (that is the clone URL's).
SEGMENT = re.compile(r"^(?![.-])(?!.*\.\.)(?!.*\.git$)[A-Za-z0-9._-]{1,100}$")
SEGMENT_RULE = "use 1 to 100 letters, digits, '.', '_' or '-', not starting with '.' or '-' nor ending in '.git'"
METADATA_FILE = "pltf.json"
_STAGING = ".staging"
_TRASH = ".trash"


def git_root(settings: Settings) -> Path:
    return (settings.forges.git_dir or settings.storage.data_dir / "git").resolve()


def repository_dir(root: Path, owner: str, name: str) -> Path | None:
    """The bare repository's directory, or None when a segment breaks the rules (never a path outside root)."""
    if not (SEGMENT.match(owner) and SEGMENT.match(name)):
        return None
    return root / owner / f"{name}.git"


def repository_at(settings: Settings, url: str) -> Path | None:
    """The bare repository a clone URL of this server's forge names, in any spelling git would fetch
    (`HTTP://`, `%6C`, `a/../b`), or None when the URL is not one of ours."""
    try:
        rest = normalise_url(url).relative_to(normalise_url(f"{settings.server.base_url}/git/"))
    except UrlRefused:
        return None
    if rest is None or len(rest) != 2:
        return None
    return repository_dir(git_root(settings), rest[0], rest[1].removesuffix(".git"))


def read_metadata(repo_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((repo_dir / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def repository_dirs(root: Path) -> list[tuple[str, str, Path]]:
    """(owner, name, bare repository directory) of every repository, sorted."""
    found = []
    if not root.is_dir():
        return []
    for owner_dir in sorted(root.iterdir()):
        if not owner_dir.is_dir() or not SEGMENT.match(owner_dir.name):
            continue
        for repo_dir in sorted(owner_dir.glob("*.git")):
            name = repo_dir.name[: -len(".git")]
            if SEGMENT.match(name):
                found.append((owner_dir.name, name, repo_dir))
    return found


def list_repositories(root: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(owner, name, metadata) of every repository, sorted."""
    return [(owner, name, read_metadata(path)) for owner, name, path in repository_dirs(root)]


def _quoted(path: str) -> bytes:
    """A path as fast-import reads it: C-quoted when it starts with a quote or holds a newline."""
    raw = path.encode()
    if not raw.startswith(b'"') and b"\n" not in raw:
        return raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n") + b'"'


def write_commit(out: BinaryIO, ref: str, message: str, author: GitAuthor, root: Path, listed: str) -> None:
    """A `git fast-import` stream of one root commit on `ref` holding the files `git ls-files -z` listed."""
    # As git does with GIT_AUTHOR_*: no angle brackets or line breaks, which would end the field.
    name, email = (re.sub(r"[<>\r\n]", "", part).strip() for part in (author.name, author.email))
    person = f"{name} <{email}> {int(time.time())} +0000".encode()
    text = message.encode() if message.endswith("\n") else (message + "\n").encode()
    out.write(
        b"commit %s\nmark :1\nauthor %s\ncommitter %s\ndata %d\n%s\n" % (ref.encode(), person, person, len(text), text)
    )
    for path in filter(None, listed.split("\0")):
        if path.endswith("/"):
            # ls-files shows a nested repository as its directory; `git add` would make it a broken submodule.
            raise PltfError(f"{path} is a git repository inside the files to commit", 422, "invalid_input")
        full = root / path
        info = full.lstat()
        if stat.S_ISLNK(info.st_mode):
            mode, data = b"120000", os.readlink(full).encode()
        else:
            mode, data = (b"100755" if info.st_mode & stat.S_IXUSR else b"100644"), full.read_bytes()
        out.write(b"M %s inline %s\ndata %d\n%s\n" % (mode, _quoted(path), len(data), data))
    out.write(b"done\n")


def write_bare_repository(path: Path, default_branch: str) -> None:
    """An empty bare repository, as `git init --bare -b <branch>` makes it without its samples.

    What git needs to recognise a repository (`HEAD`, `objects/`, `refs/`) and the config `git init`
    writes. Without the sample hooks, `info/exclude` and the process, it is a tenth of the files:
    repository creation was a fifth of a `service:create` on a busy disk. Hooks come from
    `core.hooksPath` (git_http), never from the repository's own directory.
    """
    if not _BRANCH.match(default_branch):  # checked with the spec already; HEAD must hold one line
        raise PltfError(f"invalid branch name {default_branch!r}", 422, "invalid_input")
    for folder in ("objects/pack", "objects/info", "refs/heads", "refs/tags"):
        (path / folder).mkdir(parents=True)
    (path / "HEAD").write_text(f"ref: refs/heads/{default_branch}\n")
    (path / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n")


class EmbeddedForge(Forge):
    provider = "embedded"
    title = "the embedded forge"

    def __init__(self, settings: Settings, redactor: Redactor) -> None:
        self.settings = settings
        self.redactor = redactor

    @property
    def root(self) -> Path:
        return git_root(self.settings)

    def validate_name(self, owner: str, name: str) -> list[FieldError]:
        return name_rule("owner", owner, SEGMENT, SEGMENT_RULE) + name_rule("name", name, SEGMENT, SEGMENT_RULE)

    def planned(self, spec: RepositorySpec) -> CreatedRepository:
        base = f"{self.settings.server.base_url}/git/{spec.owner}/{spec.name}"
        return CreatedRepository(
            provider=self.provider,
            owner=spec.owner,
            name=spec.name,
            default_branch=spec.default_branch,
            remote_url=f"{base}.git",
            contents_url=f"{base}/tree/{spec.default_branch}",
            raw_url_base=f"{base}/raw/{spec.default_branch}",
            web_url=base,
        )

    def _dir(self, owner: str, name: str) -> Path:
        found = repository_dir(self.root, owner, name)
        if found is None:
            raise PltfError(f"invalid repository name {owner}/{name}", 422, "invalid_input")
        return found

    def create_repository(self, spec: RepositorySpec) -> CreatedRepository:
        final = self._dir(spec.owner, spec.name)
        if final.exists():
            raise conflict(f"repository {spec.owner}/{spec.name} already exists on {self.title}; it was not changed")
        staging = self.root / _STAGING / uuid.uuid4().hex
        staging.parent.mkdir(parents=True, exist_ok=True)
        write_bare_repository(staging, spec.default_branch)
        metadata = {
            "description": spec.description,
            "visibility": spec.visibility,
            "topics": list(spec.topics),
            "defaultBranch": spec.default_branch,
            "protectDefaultBranch": spec.protect_default_branch,
            "team": spec.team,
            "createdAt": time.time(),
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata))
        (staging / "description").write_text(spec.description + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Atomic, also across processes sharing the directory: one rename wins.
            os.rename(staging, final)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise conflict(
                    f"repository {spec.owner}/{spec.name} already exists on {self.title}; it was not changed"
                ) from None
            raise
        return self.planned(spec)

    def push(self, repository: CreatedRepository, source_dir: Path, message: str, author: GitAuthor) -> str:
        """Writes the first commit straight into the bare repository, with two git commands.

        `git ls-files` lists what `git add --all` would take (.gitignore
        respected); `git fast-import` writes those files, the tree and the
        commit as one pack and sets the branch. It refuses to move a branch that
        already exists to a commit that does not contain it, so nothing is ever
        overwritten. Without the pack round trip of `git push` and the loose
        objects and index of `git add`, this is a fraction of repo:create's time.
        """
        repo = self._dir(repository.owner, repository.name)
        scratch = source_dir.parent / f".pltf-import-{uuid.uuid4().hex}"
        env = git_environment(author)
        env.update(GIT_DIR=str(repo), GIT_WORK_TREE=str(source_dir), GIT_INDEX_FILE=str(scratch / "index"))
        # One pack: under fast-import's default unpackLimit (100 objects, more than most templates make)
        # it writes every object as a loose file, as slowly as `git add`.
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="fastimport.unpackLimit", GIT_CONFIG_VALUE_0="1")
        timeout = self.settings.forges.git_timeout_seconds

        def git(*args: str, stdin: Path | None = None) -> str:
            return run_git(list(args), source_dir, env, timeout, self.redactor, f"git {args[0]}", stdin).stdout

        scratch.mkdir()
        try:
            listed = git("ls-files", "-z", "--others", "--exclude-standard")
            stream = scratch / "stream"
            with stream.open("wb") as out:
                write_commit(out, f"refs/heads/{repository.default_branch}", message, author, source_dir, listed)
            marks = scratch / "marks"
            git("fast-import", "--quiet", "--done", f"--export-marks={marks}", stdin=stream)
            return marks.read_text().split()[1]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def delete_repository(self, repository: CreatedRepository) -> None:
        path = self._dir(repository.owner, repository.name)
        trash = self.root / _TRASH / uuid.uuid4().hex
        trash.parent.mkdir(parents=True, exist_ok=True)
        # Renamed away first, so nobody clones a half-deleted repository.
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        # The owner's directory stays: removing it could race another request's rename into it.
