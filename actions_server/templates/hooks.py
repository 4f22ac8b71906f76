"""Template hooks as cookiecutter runs them, but in the sandbox and only for trusted templates.

As in cookiecutter, `pre_gen_project` and `post_gen_project` are rendered with
Jinja first and run inside the project directory; `pre_prompt` is not rendered
and runs in a copy of the template, which it may change. The values reach the
rendered script as text: Jinja inserts them, it never evaluates them, so the
server runs nothing a value says. But a value inserted into a script's source
can change what the script does (`'` in a value quoted by the hook), which is
inherent to cookiecutter's hooks; that code runs in the sandbox
(actions_server/sandbox.py), which sees the project directory, read-write, and
the staged hook, read-only; of the server's environment only the allow-list;
Python is the bare interpreter, with the standard library only. A hook that
wants its values as data reads them as JSON from the file `$PLTF_CONTEXT_FILE`
names.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cookiecutter.hooks import find_hook

from ..errors import PltfError
from ..sandbox import Jail, Sandbox, base_python, describe_exit
from .catalog import TEMPLATE_ERRORS, Template, describe, link_out_of, template_imports

PRE_PROMPT = "pre_prompt"
PRE_GENERATE = "pre_gen_project"
POST_GENERATE = "post_gen_project"
# How much of a failing hook's output its error shows (the run log has all of it).
FAILURE_LINES = 15
FAILURE_CHARACTERS = 1500


def run_hook(
    name: str, template: Template, cwd: Path, context: dict[str, Any], timeout: float, sandbox: Sandbox
) -> list[str]:
    """Renders and runs the template's hook `name` in `cwd`, if it has one; returns its output lines."""
    output: list[str] = []
    for script in find_hook(name, str(template.path / "hooks")) or []:
        source = _render(template, Path(script), context)
        with _staged(template, Path(script), source) as (staged, folder):
            context_file = folder / ".pltf-context.json"
            context_file.write_text(json.dumps(context.get("cookiecutter", {}), default=str))
            output += _run(name, staged, cwd, [cwd], {"PLTF_CONTEXT_FILE": str(context_file)}, timeout, sandbox)
        _refuse_links_out(name, cwd)
    return output


@contextmanager
def pre_prompt(template: Template, timeout: float, sandbox: Sandbox) -> Iterator[tuple[Template, list[str]]]:
    """The template after its pre_prompt hook ran in a copy of it (the template itself when it has none)."""
    scripts = find_hook(PRE_PROMPT, str(template.path / "hooks")) or []
    if not scripts:
        yield template, []
        return
    workspace = Path(tempfile.mkdtemp(prefix="pltf-pre-prompt-"))
    try:
        copy = workspace / template.path.name
        shutil.copytree(template.path, copy, symlinks=True)
        output: list[str] = []
        for script in find_hook(PRE_PROMPT, str(copy / "hooks")) or []:
            # cookiecutter runs this one as it is, made executable, in the copy.
            _make_executable(Path(script))
            output += _run(PRE_PROMPT, Path(script), copy, [copy], {}, timeout, sandbox)
        _refuse_links_out(PRE_PROMPT, copy)
        yield template.reloaded(copy), output
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _render(template: Template, script: Path, context: dict[str, Any]) -> str:
    try:
        text = script.read_text(encoding="utf-8")
        with template_imports(template):
            return str(template.new_environment(context).from_string(text).render(**context))
    except TEMPLATE_ERRORS as exc:
        raise template.malformed(f"its hook does not render: {describe(exc)}", f"hooks/{script.name}") from None


@contextmanager
def _staged(template: Template, script: Path, source: str) -> Iterator[tuple[Path, Path]]:
    """The hooks folder copied where the sandbox may read it, with `script` rendered and executable.

    cookiecutter runs a rendered temporary copy of the script; the folder comes along so that a hook
    may still import a module next to it.
    """
    workspace = Path(tempfile.mkdtemp(prefix="pltf-hook-"))
    try:
        folder = workspace / "hooks"
        shutil.copytree(script.parent, folder, symlinks=True)
        staged = folder / script.name
        staged.unlink()
        staged.write_text(source, encoding="utf-8")
        shutil.copymode(script, staged)
        _make_executable(staged)
        for path in (workspace, *folder.rglob("*"), folder):
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | _search(path))
        yield staged, folder
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _search(path: Path) -> int:
    return stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0


def _make_executable(script: Path) -> None:
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _run(
    name: str,
    script: Path,
    cwd: Path,
    writable: list[Path],
    extra_env: dict[str, str],
    timeout: float,
    sandbox: Sandbox,
) -> list[str]:
    command = [str(base_python()), str(script)] if script.suffix == ".py" else [str(script)]
    # No network: a hook has no need of one, and loopback services (a trusting PostgreSQL) would be in reach.
    jail = Jail(
        command,
        cwd,
        sandbox.environment(cwd, extra_env),
        writable=writable,
        readable=[script.parent],
        network=False,
    )
    try:
        with sandbox.lend(*writable):
            result = sandbox.run(jail, timeout)
    except subprocess.TimeoutExpired:
        raise PltfError(f"template hook {name} took longer than {timeout:g}s", 504, "hook_timeout") from None
    lines = (result.stdout + result.stderr).strip().splitlines()
    if result.returncode != 0:
        # One line, as every error message: the CLI prints it last, logs keep it whole.
        detail = "; ".join(line.strip() for line in lines[-FAILURE_LINES:] if line.strip())
        if len(detail) > FAILURE_CHARACTERS:  # the end says why (a traceback's last line): keep it
            detail = "…" + detail[-FAILURE_CHARACTERS:]
        if not 0 <= result.returncode <= 128:  # killed: say why first (a limit, usually)
            cause = describe_exit(result.returncode)
        else:
            cause = f"exit status {result.returncode}"
        output = f": {detail}" if detail else " and printed nothing"
        raise PltfError(f"template hook {name} ({script.name}) failed ({cause}){output}", 422, "hook_failed")
    return lines


def _refuse_links_out(name: str, directory: Path) -> None:
    """A link the hook made to a file it cannot see would be followed by the server, which can."""
    where = link_out_of(directory)
    if where is not None:
        raise PltfError(f"template hook {name} made {where} a link out of its directory", 422, "hook_failed")
