"""Template migrations: steps a template declares for crossing a version, for what a merge cannot infer
(a file the service must move before the template's renamed one lands on it, a setting to rewrite).

In `cookiecutter.json`, as copier's `_migrations`:

    "_pltf": {"version": "2", "migrations": [
        {"version": "2", "when": "before", "command": ["python", "-c", "import os; os.rename('a', 'b')"]}
    ]}

A step runs when an update crosses its version (from < version <= to), `before` the merge on the service's
tree or `after` it on the merged one, in the sandbox (no network, only that tree writable), and its result
is a commit of its own on the update branch. Only a trusted template's migrations run.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from packaging.version import InvalidVersion, Version

from ..errors import PltfError
from ..sandbox import Jail, Sandbox
from ..templates.catalog import Template
from .merge import GitRepo


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def pending(
    template: Template, from_version: str, to_version: str, when: Literal["before", "after"]
) -> list[dict[str, Any]]:
    """The template's steps for `when` whose version the update crosses, oldest first."""
    meta = template.context.get("_pltf")
    steps = meta.get("migrations") if isinstance(meta, dict) else None
    low, high = _version(from_version), _version(to_version)
    if not isinstance(steps, list) or low is None or high is None:
        return []
    crossed = []
    for step in steps:
        at = _version(str(step.get("version", ""))) if isinstance(step, dict) else None
        if at is not None and low < at <= high and step.get("when", "after") == when:
            crossed.append(step)
    return sorted(crossed, key=lambda step: Version(str(step["version"])))


def run_steps(
    git_repo: GitRepo,
    commit: str,
    steps: list[dict[str, Any]],
    workdir: Path,
    sandbox: Sandbox,
    timeout: float,
    say: Callable[[str], None],
) -> str:
    """Runs `steps` on the tree of `commit`; returns the commit of the result on top of it (or `commit`)."""
    for step in steps:
        command = step.get("command")
        argv = ["sh", "-c", command] if isinstance(command, str) else command
        if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
            raise PltfError(
                f"migration to {step.get('version')}: command must be a string or a list of strings",
                422,
                "bad_template",
            )
        tree = workdir / f"migration-{uuid.uuid4().hex}"
        tree.mkdir(parents=True)
        index = git_repo.path / f"index-{uuid.uuid4().hex}"
        try:
            git_repo.run("read-tree", commit, index=index)
            git_repo.run("checkout-index", "--all", index=index, work_tree=tree)
            jail = Jail(argv, tree, sandbox.environment(tree, {}), writable=[tree], network=False)
            try:
                with sandbox.lend(tree):
                    done = sandbox.run(jail, timeout)
            except subprocess.TimeoutExpired:
                raise PltfError(
                    f"migration to {step['version']} took longer than {timeout:g}s", 504, "migration_timeout"
                ) from None
            for line in (done.stdout + done.stderr).strip().splitlines()[-20:]:
                say(f"migration {step['version']}: {line}")
            if done.returncode != 0:
                raise PltfError(
                    f"migration to {step['version']} failed (exit {done.returncode})", 422, "migration_failed"
                )
            migrated = git_repo.tree_of(tree)
            if migrated != git_repo.run("rev-parse", f"{commit}^{{tree}}").strip():
                commit = git_repo.commit(
                    migrated, f"Template migration to {step['version']} ({step.get('when', 'after')} the merge)", commit
                )
        finally:
            index.unlink(missing_ok=True)
            shutil.rmtree(tree, ignore_errors=True)
    return commit
