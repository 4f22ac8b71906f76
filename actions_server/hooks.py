"""Template hooks, run only for trusted templates and always with a timeout.

Unlike cookiecutter, we do not render hook scripts with Jinja: rendering a value
into a script's source is exactly how a value becomes code. A hook reads the
values as JSON from the file named by `$PLTF_CONTEXT_FILE` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cookiecutter.hooks import find_hook

from .errors import PltfError

PRE_GENERATE = "pre_gen_project"
POST_GENERATE = "post_gen_project"


def run_hook(name: str, template_dir: Path, cwd: Path, context: dict[str, Any], timeout: float) -> list[str]:
    """Runs the template's hook `name` if it has one; returns its output lines."""
    scripts = find_hook(name, str(template_dir / "hooks")) or []
    output: list[str] = []
    for script in scripts:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(context, handle, default=str)
            context_file = handle.name
        command = [sys.executable, script] if script.endswith(".py") else [script]
        env = {**os.environ, "PLTF_CONTEXT_FILE": context_file}
        try:
            result = subprocess.run(
                command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise PltfError(f"template hook {name} took longer than {timeout:g}s", 504, "hook_timeout") from None
        finally:
            os.unlink(context_file)
        lines = (result.stdout + result.stderr).strip().splitlines()
        output.extend(lines)
        if result.returncode != 0:
            tail = "; ".join(lines[-3:]) or f"exit status {result.returncode}"
            raise PltfError(f"template hook {name} failed: {tail}", 422, "hook_failed")
    return output
