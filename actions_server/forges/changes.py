"""Change requests of the embedded forge: a branch proposed for merging into the default branch.

Kept beside the repository they belong to, one JSON file per change request in `<repo>.git/pltf-changes/`,
so that replicas sharing the git directory share them too; a number is taken by creating its file
exclusively, so two requests never get the same one. Merging checks the branch is still current (it
contains the default branch's head) and moves the default branch to it with git's compare-and-swap:
always a fast-forward, never a force.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import PltfError, conflict, not_found
from .embedded import read_metadata
from .gitpush import git

CHANGES_DIR = "pltf-changes"


def _path(repo_dir: Path, number: int) -> Path:
    return repo_dir / CHANGES_DIR / f"{number}.json"


def list_changes(repo_dir: Path) -> list[dict[str, Any]]:
    directory = repo_dir / CHANGES_DIR
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda change: int(change["number"]))


def get_change(repo_dir: Path, number: int) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_path(repo_dir, number).read_text())
    except (OSError, ValueError):
        raise not_found(f"no change request {number} in this repository") from None
    return data


def open_change_for(repo_dir: Path, branch: str) -> dict[str, Any] | None:
    return next((c for c in list_changes(repo_dir) if c["branch"] == branch and c["state"] == "open"), None)


def create_change(repo_dir: Path, branch: str, title: str, body: str, **extra: Any) -> dict[str, Any]:
    (repo_dir / CHANGES_DIR).mkdir(exist_ok=True)
    number = max((int(c["number"]) for c in list_changes(repo_dir)), default=0) + 1
    while True:
        change = {
            "number": number,
            "branch": branch,
            "target": read_metadata(repo_dir).get("defaultBranch", "main"),
            "title": title,
            "body": body,
            "state": "open",
            "createdAt": time.time(),
            **extra,
        }
        try:
            fd = os.open(_path(repo_dir, number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            number += 1
            continue
        with os.fdopen(fd, "w") as out:
            json.dump(change, out)
        return change


def _save(repo_dir: Path, change: dict[str, Any]) -> None:
    path = _path(repo_dir, int(change["number"]))
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(change))
    os.replace(staging, path)


def _head(repo_dir: Path, branch: str) -> str | None:
    done = git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"], git_dir=repo_dir, timeout=30)
    return done.stdout.decode().strip() if done.returncode == 0 else None


def diff(repo_dir: Path, change: dict[str, Any], limit: int = 400_000) -> str:
    """The change's diff against the default branch (against what it merged into, once merged)."""
    head = change.get("mergedSha") or _head(repo_dir, change["branch"])
    target = change.get("mergedFrom") or _head(repo_dir, change["target"])
    if head is None or target is None:
        return ""
    done = git(["diff", "--no-color", "-M", f"{target}...{head}"], git_dir=repo_dir, timeout=60)
    return done.stdout[:limit].decode(errors="replace")


def merge_change(repo_dir: Path, number: int, by: str) -> dict[str, Any]:
    """Fast-forwards the target branch to the change's branch; 409 when it is not current or not open."""
    change = get_change(repo_dir, number)
    if change["state"] != "open":
        raise conflict(f"change request {number} is {change['state']}, not open")
    head = _head(repo_dir, change["branch"])
    target_head = _head(repo_dir, change["target"])
    if head is None or target_head is None:
        raise conflict(f"the branch {change['branch']} or {change['target']} no longer exists")
    if change.get("conflicts") and head == change.get("head"):
        # Still the commit pltf pushed, conflict markers and all: merging it would put them on the default branch.
        raise conflict(
            f"change request {number} has conflicts in {', '.join(change['conflicts'])}: resolve them on "
            f"{change['branch']} and push, then merge"
        )
    current = git(["merge-base", "--is-ancestor", target_head, head], git_dir=repo_dir, timeout=30)
    if current.returncode != 0:
        raise conflict(
            f"the branch {change['branch']} is not current: {change['target']} has moved on since it was made; "
            "run the update again for a branch on top of it"
        )
    # The old value makes this a compare-and-swap: a push that lands in between makes it fail, not vanish.
    moved = git(["update-ref", f"refs/heads/{change['target']}", head, target_head], git_dir=repo_dir, timeout=30)
    if moved.returncode != 0:
        raise PltfError(f"{change['target']} moved while merging; try again", 409, "conflict")
    change.update(state="merged", mergedSha=head, mergedFrom=target_head, mergedBy=by, mergedAt=time.time())
    _save(repo_dir, change)
    return change
