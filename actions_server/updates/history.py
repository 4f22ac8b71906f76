"""Every version of a template pltf has rendered, so that it can render it again.

A git template's version is its commit. A local template (`PLTF_TEMPLATES_DIR`)
has no history of its own: its directory is edited in place. pltf keeps one for
it, a bare repository per template under `<data_dir>/template-history/`, and
commits the template's directory there whenever a render finds its content
changed. That commit is what `.cruft.json` records, and what `template:update`
renders as the merge base.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import FieldError, PltfError, invalid_input
from ..forges.gitpush import git, git_environment
from ..templates.catalog import FULL_COMMIT, TEMPLATE_NAME, Template, TemplateCatalog

CRUFT_FILE = ".cruft.json"
LOCAL_PREFIX = "cookiecutters/"
_ZERO = "0" * 40
# One writer per template history in this process; across processes update-ref's old value decides.
_LOCK = threading.Lock()
# A file changed this recently may change again unseen by its fingerprint (see `record`).
RACY_NANOSECONDS = 2_000_000_000
# The commit each local template's directory was last recorded as, with what its files looked like then.
_RECORDED: dict[tuple[Path, Path], tuple[tuple[tuple[str, int, int, int], ...], str]] = {}


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Every file's path, size, modification time and mode: what tells git's index that a file changed."""
    found = []
    for top, dirs, files in os.walk(directory):
        links = [name for name in dirs if os.path.islink(os.path.join(top, name))]
        dirs[:] = [name for name in dirs if name != ".git" and name not in links]
        for name in [*files, *links]:
            path = os.path.join(top, name)
            info = os.lstat(path)
            found.append((os.path.relpath(path, directory), info.st_size, info.st_mtime_ns, info.st_mode))
    return tuple(sorted(found))


class TemplateHistory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def root(self) -> Path:
        return (self.settings.storage.data_dir / "template-history").resolve()

    def _repo(self, name: str) -> Path:
        if not TEMPLATE_NAME.match(name):
            raise invalid_input(f"invalid template name {name!r}", [FieldError("template", "not a template name")])
        return self.root / f"{name}.git"

    def _git(self, args: list[str], repo: Path, env: dict[str, str] | None = None) -> str:
        done = git(args, git_dir=repo, env=env, timeout=self.settings.forges.git_timeout_seconds)
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()[-500:]
            raise PltfError(f"template history: git {args[0]} failed: {detail}", 500, "template_history")
        return done.stdout.decode().strip()

    def record(self, template: Template) -> str | None:
        """The commit that renders as `template` does now: its git commit, or its local history's."""
        if template.origin is not None:
            done = git(
                ["-C", str(template.path), "rev-parse", "HEAD"], timeout=self.settings.forges.git_timeout_seconds
            )
            return done.stdout.decode().strip() if done.returncode == 0 else None
        repo = self._repo(template.name)
        with _LOCK:
            # Unchanged since it was last recorded here: the same commit, without four git processes per render.
            fingerprint = _fingerprint(template.path)
            known = _RECORDED.get((repo, template.path))
            if known is not None and known[0] == fingerprint and repo.exists():
                return known[1]
            commit = self._record(template, repo)
            # As git's index does with "racily clean" files: a file changed in the last moments could change
            # again within the clock's resolution without its fingerprint showing it, so that is not kept.
            settled = time.time_ns() - RACY_NANOSECONDS
            if all(mtime < settled for _, _, mtime, _ in fingerprint):
                _RECORDED[(repo, template.path)] = (fingerprint, commit)
            return commit

    def _record(self, template: Template, repo: Path) -> str:
        """Commits the template's directory to its history unless the newest commit holds it already."""
        if not repo.exists():
            repo.parent.mkdir(parents=True, exist_ok=True)
            self._git(["init", "--quiet", "--bare", str(repo)], repo)
        index = repo / f"index-{uuid.uuid4().hex}"
        env = {
            **git_environment(),
            "GIT_WORK_TREE": str(template.path),
            "GIT_INDEX_FILE": str(index),
            "GIT_AUTHOR_NAME": "pltf",
            "GIT_AUTHOR_EMAIL": "pltf@localhost",
            "GIT_COMMITTER_NAME": "pltf",
            "GIT_COMMITTER_EMAIL": "pltf@localhost",
        }
        try:
            # -f: the template's own .gitignore must not hide a file cookiecutter renders.
            self._git(["add", "--all", "--force", "."], repo, env)
            tree = self._git(["write-tree"], repo, env)
        finally:
            index.unlink(missing_ok=True)
        # Another replica sharing the data directory may record at the same moment: update-ref's old
        # value makes the loser read the winner's commit and try again on top of it.
        for _ in range(5):
            head = git(["rev-parse", "--verify", "--quiet", "refs/heads/main"], git_dir=repo, timeout=30)
            parent = head.stdout.decode().strip() if head.returncode == 0 else None
            if parent is not None and self._git(["rev-parse", f"{parent}^{{tree}}"], repo) == tree:
                return parent
            message = f"{template.name} {template.version}"
            parents = ["-p", parent] if parent else []
            commit = self._git(["commit-tree", tree, *parents, "-m", message], repo, env)
            moved = git(["update-ref", "refs/heads/main", commit, parent or _ZERO], git_dir=repo, timeout=30)
            if moved.returncode == 0:
                return commit
        raise PltfError(f"template history of {template.name}: too many concurrent writers", 503, "busy")

    def versions(self, name: str) -> list[str]:
        """The versions of local template `name` pltf has rendered, oldest first."""
        repo = self._repo(name)
        if not repo.exists():
            return []
        done = git(["log", "--reverse", "--format=%s", "refs/heads/main"], git_dir=repo, timeout=30)
        found: list[str] = []
        for subject in done.stdout.decode(errors="replace").splitlines():
            version = subject.removeprefix(f"{name} ")
            if version not in found:
                found.append(version)
        return found

    def checkout(self, name: str, commit: str, into: Path, field: str = "repository") -> Path:
        """Writes the local template `name` as it was at `commit` into `into`/`name`; a 422 on `field` if unknown."""
        repo = self._repo(name)
        known = (
            FULL_COMMIT.match(commit) is not None
            and repo.exists()
            and git(["cat-file", "-e", f"{commit}^{{commit}}"], git_dir=repo, timeout=30).returncode == 0
        )
        if not known:
            what = f"{CRUFT_FILE} names" if field == "repository" else "this is not"
            raise invalid_input(
                f"version {commit} of template {name} cannot be rendered: pltf has no such version in its "
                "template history",
                [FieldError(field, f"{what} a version of {name} pltf has (a full commit of its history)")],
            )
        target = into / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        archive = git(
            ["archive", "--format=tar", commit], git_dir=repo, timeout=self.settings.forges.git_timeout_seconds
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True, capture_output=True)
        return target


def template_at(
    catalog: TemplateCatalog, history: TemplateHistory, recorded: dict[str, Any], workdir: Path
) -> Template:
    """The template a `.cruft.json` recorded, at its recorded commit."""
    source = str(recorded.get("template") or "")
    commit = recorded.get("commit")
    if not isinstance(commit, str) or not commit:
        raise invalid_input(
            f"{CRUFT_FILE} records no commit of its template, so the version it was made from cannot be rendered",
            [FieldError("repository", f"{CRUFT_FILE} has no commit")],
        )
    if source.startswith(LOCAL_PREFIX):
        name = source.removeprefix(LOCAL_PREFIX)
        current = catalog.get(name)
        return current.reloaded(history.checkout(name, commit, workdir))
    directory = recorded.get("directory")
    return catalog.get(source, commit, directory if isinstance(directory, str) else None)


def read_cruft(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("context", {}).get("cookiecutter"), dict):
        raise invalid_input(
            f"{CRUFT_FILE} is not cruft's format (template, commit, context.cookiecutter)",
            [FieldError("repository", f"unreadable {CRUFT_FILE}")],
        )
    return data


def recorded_values(template: Template, recorded: dict[str, Any]) -> dict[str, Any]:
    """The answers a `.cruft.json` recorded that `template` still asks for."""
    context = recorded["context"]["cookiecutter"]
    return {key: context[key] for key in template.public_keys if key in context}


def write_cruft(
    project_dir: Path, template: Template, commit: str | None, context: dict[str, Any], directory: str | None = None
) -> bool:
    """Records what made `project_dir` in its `.cruft.json` (cruft's format); True when the file is new.

    A template that renders its own `.cruft.json` keeps it, with the commit filled in.
    """
    path = project_dir / CRUFT_FILE
    existing: dict[str, Any] | None = None
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            existing = loaded if isinstance(loaded, dict) else None
        except ValueError:
            existing = None
    data = existing or {
        "template": template.origin or template.source,
        "commit": None,
        "checkout": template.checkout,
        "context": {"cookiecutter": {k: v for k, v in context.items() if not k.startswith("_") or k == "_template"}},
        "directory": directory,
        "skip": [".git"],
    }
    data["commit"] = commit
    data["template_version"] = template.version
    path.write_text(json.dumps(data, indent=2) + "\n")
    return existing is None
