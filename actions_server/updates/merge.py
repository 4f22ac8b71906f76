"""The three-way merge of a template update: base (the recorded version rendered again), theirs (the new
version) and ours (the repository's default branch), made by git itself.

git's merge needs the three as commits with base as the merge base: base is a root commit, theirs and a
copy of ours's tree its children. The merged tree is then committed on top of the real ours, so the update
branch is a plain descendant of the default branch (merging it is a fast-forward). Overlapping edits get
git's standard conflict markers and are listed; nothing is ever written as a `.rej` file or dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PltfError
from ..forges.base import GitAuthor
from ..forges.gitpush import git, git_environment


@dataclass
class Merged:
    commit: str | None
    """The update's commit on top of ours; None when it would change nothing."""
    conflicts: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)


class GitRepo:
    def __init__(self, path: Path, author: GitAuthor, timeout: float) -> None:
        self.path = path
        self.env = git_environment(author)
        self.timeout = timeout

    def run(
        self, *args: str, ok: tuple[int, ...] = (0,), work_tree: Path | None = None, index: Path | None = None
    ) -> str:
        env = dict(self.env)
        if work_tree is not None:
            env["GIT_WORK_TREE"] = str(work_tree)
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        done = git(list(args), git_dir=self.path, env=env, timeout=self.timeout)
        if done.returncode not in ok:
            detail = done.stderr.decode(errors="replace").strip()[-500:]
            raise PltfError(f"template update: git {args[0]} failed: {detail}", 500, "update_failed")
        return done.stdout.decode()

    def tree_of(self, directory: Path, drop: frozenset[str] | set[str] = frozenset()) -> str:
        index = self.path / f"index-{uuid.uuid4().hex}"
        try:
            self.run("add", "--all", "--force", ".", work_tree=directory, index=index)
            for path in sorted(drop):
                self.run("update-index", "--force-remove", "--", path, work_tree=directory, index=index)
            return self.run("write-tree", index=index).strip()
        finally:
            index.unlink(missing_ok=True)

    def paths(self, treeish: str) -> set[str]:
        return set(self.run("ls-tree", "-r", "-z", "--name-only", treeish).split("\0")) - {""}

    def commit(self, tree: str, message: str, *parents: str) -> str:
        return self.run(
            "commit-tree", tree, *(arg for parent in parents for arg in ("-p", parent)), "-m", message
        ).strip()


Migration = Callable[[GitRepo, str], str]


def three_way(
    repo: Path,
    ours: str,
    base_dir: Path,
    theirs_dir: Path,
    message: str,
    author: GitAuthor,
    timeout: float,
    before: Migration | None = None,
    after: Migration | None = None,
) -> Merged:
    """Merges the change from `base_dir` to `theirs_dir` into commit `ours` of the bare repository `repo`.

    Files the service deleted stay deleted, also when the template changed or renamed them; a file the
    template removed that the service changed is a conflict, kept with the service's content. `before` and
    `after` (template migrations) turn a commit into one on top of it, before and after the merge.
    """
    git_repo = GitRepo(repo, author, timeout)
    original = ours
    if before is not None:
        ours = before(git_repo, ours)
    base = git_repo.commit(git_repo.tree_of(base_dir), "template: the recorded version")
    theirs_tree = git_repo.tree_of(theirs_dir)
    ours_paths = git_repo.paths(ours)
    base_paths = git_repo.paths(base)
    deleted_by_service = base_paths - ours_paths
    drop = {path for path in deleted_by_service if path in git_repo.paths(theirs_tree)}
    # A file the service deleted and the template renamed stays deleted under its new name too.
    fields = git_repo.run("diff-tree", "-r", "-z", "-M", "--name-status", base, theirs_tree).split("\0")
    n = 0
    while n < len(fields) and fields[n]:
        # -z --name-status: a status, then one path, or two for a rename or copy.
        status, paths = fields[n], 2 if fields[n][:1] in ("R", "C") else 1
        if status.startswith("R") and fields[n + 1] in deleted_by_service:
            drop.add(fields[n + 2])
        n += 1 + paths
    if drop:
        theirs_tree = git_repo.tree_of(theirs_dir, drop)
    theirs = git_repo.commit(theirs_tree, "template: the new version", base)
    ours_copy = git_repo.commit(git_repo.run("rev-parse", f"{ours}^{{tree}}").strip(), "service", base)
    out = git_repo.run(
        "merge-tree", "--write-tree", "--name-only", "--no-messages", ours_copy, theirs, ok=(0, 1)
    ).splitlines()
    tree, conflicts = out[0].strip(), sorted({line for line in out[1:] if line.strip()})
    commit = ours
    if tree != git_repo.run("rev-parse", f"{ours}^{{tree}}").strip():
        commit = git_repo.commit(tree, message, ours)
    if after is not None:
        commit = after(git_repo, commit)
    if commit == original:
        return Merged(None)
    changed = git_repo.run("diff-tree", "-r", "-z", "--name-only", "--no-renames", original, commit).split("\0")
    return Merged(commit, conflicts, sorted(path for path in changed if path))
