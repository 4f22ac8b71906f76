"""Template hooks, run only for trusted templates and always with a timeout.

Unlike cookiecutter, we do not render hook scripts with Jinja: rendering a value
into a script's source is exactly how a value becomes code. A hook reads the
values as JSON from the file named by `$PLTF_CONTEXT_FILE` instead.

A hook runs in the sandbox (actions_server/sandbox.py): it sees its working
directory, read-write, and the template's hooks, read-only; of the server's
environment only the allow-list; Python is the bare interpreter, with the
standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cookiecutter.hooks import find_hook

from ..errors import PltfError
from ..sandbox import Jail, Sandbox, base_python, describe_exit

PRE_GENERATE = "pre_gen_project"
POST_GENERATE = "post_gen_project"


def run_hook(
    name: str, template_dir: Path, cwd: Path, context: dict[str, Any], timeout: float, sandbox: Sandbox
) -> list[str]:
    """Runs the template's hook `name` if it has one; returns its output lines."""
    scripts = find_hook(name, str(template_dir / "hooks")) or []
    output: list[str] = []
    for script in scripts:
        # In the hook's own directory, where the sandbox can see it, then removed.
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix=".pltf-context-", dir=cwd, delete=False) as handle:
            json.dump(context, handle, default=str)
            context_file = handle.name
        command = [str(base_python()), script] if script.endswith(".py") else [script]
        jail = Jail(
            command,
            cwd,
            sandbox.environment(cwd, {"PLTF_CONTEXT_FILE": context_file}),
            writable=[cwd],
            readable=[Path(script).parent],
        )
        try:
            with sandbox.lend(cwd):
                result = sandbox.run(jail, timeout)
        except subprocess.TimeoutExpired:
            raise PltfError(f"template hook {name} took longer than {timeout:g}s", 504, "hook_timeout") from None
        finally:
            os.unlink(context_file)
        lines = (result.stdout + result.stderr).strip().splitlines()
        output.extend(lines)
        if result.returncode != 0:
            detail = "; ".join(lines[-3:])
            if not detail or not 0 <= result.returncode <= 128:  # killed: say why first (a limit, usually)
                detail = describe_exit(result.returncode) + (f": {detail}" if detail else "")
            raise PltfError(f"template hook {name} failed: {detail}", 422, "hook_failed")
        _refuse_links_out(name, cwd)
    return output


def _refuse_links_out(name: str, directory: Path) -> None:
    """A link the hook made to a file it cannot see would be followed by the server, which can."""
    root = directory.resolve()
    for path in directory.rglob("*"):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            where = path.relative_to(directory)
            raise PltfError(f"template hook {name} made {where} a link out of its directory", 422, "hook_failed")
