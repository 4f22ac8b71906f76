"""Rendering a template with the caller's values as data, never as code.

Plain cookiecutter renders every value it is given as a Jinja template, so a
value like `{{ cycler.__init__.__globals__.os.popen('id').read() }}` runs on
the server. Here only the template's own defaults are rendered; the caller's
values go into the context as they are, and every rendered path is checked to
stay inside the workspace before anything is written.
"""

from __future__ import annotations

import os
import shutil
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookiecutter.exceptions import UndefinedVariableInTemplate

from ..errors import FieldError, PltfError, invalid_input
from ..sandbox import Sandbox
from .catalog import HOOKS, TEMPLATE_ERRORS, Template, TemplateCatalog, describe
from .generate import generate_files
from .hooks import POST_GENERATE, PRE_GENERATE, pre_prompt, run_hook


@dataclass
class Rendered:
    project_dir: Path
    directory: str
    files: list[str]


class _Given:
    """A value the caller sent: data, which rendering passes through without evaluating."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _GivenKey(str):
    """A key the caller added to a dict value: data too."""

    __slots__ = ()


def build_context(template: Template, values: dict[str, Any], output_dir: Path | None = None) -> OrderedDict[str, Any]:
    """The cookiecutter context, computed as cookiecutter does without prompts, except the caller's values.

    cookiecutter merges the values into cookiecutter.json, then renders everything, values included;
    here the values are marked as given and come out as they went in (stringified as cookiecutter's
    rendering would, but never evaluated). The order is cookiecutter's: every plain value, choice
    and `__private` one in file order, then the dicts; `_private` ones stay raw.
    """
    raw: OrderedDict[str, Any] = OrderedDict(template.context_copy())
    _apply_values(raw, values)
    raw.pop("__prompts__", None)
    context: OrderedDict[str, Any] = OrderedDict()

    def rendered(key: str, value: Any) -> Any:
        try:
            return _render_variable(template, value, context)
        except TEMPLATE_ERRORS as exc:
            raise template.malformed(
                f"the value of {key!r} does not render: {describe(exc)}", "cookiecutter.json"
            ) from None

    for key, value in raw.items():
        if key.startswith("_") and not key.startswith("__"):
            context[key] = value
        elif isinstance(value, list) and not key.startswith("__"):
            options = rendered(key, value)
            if not options:
                raise template.malformed(f"the choice {key!r} has no options", "cookiecutter.json")
            context[key] = options[0]
        elif key.startswith("__") or not isinstance(value, dict):
            context[key] = rendered(key, value)
    for key, value in raw.items():
        if isinstance(value, dict) and not (key.startswith("_") and not key.startswith("__")):
            context[key] = rendered(key, value)
    # In cookiecutter.json's order, as cookiecutter's update of its own dict keeps it.
    ordered: OrderedDict[str, Any] = OrderedDict((key, context[key]) for key in raw)
    ordered["_template"] = template.origin or template.source
    if output_dir is not None:
        ordered["_output_dir"] = str(output_dir.resolve())
        ordered["_repo_dir"] = str(template.path)
    ordered["_checkout"] = template.checkout
    return ordered


def _apply_values(raw: dict[str, Any], values: dict[str, Any], in_dict: bool = False) -> None:
    """cookiecutter's `apply_overwrites_to_context`, with each value the caller sent marked as given."""
    for key, value in values.items():
        if key not in raw:
            if not in_dict:
                continue
            raw[_GivenKey(key)] = _Given(value)
            continue
        current = raw[key]
        if isinstance(current, list) and not in_dict:
            # A choice: the chosen option (the template's own text) becomes the first, as in cookiecutter.
            chosen = next((option for option in current if str(option) == str(value)), None)
            if chosen is None:
                raise invalid_input(
                    f"{value!r} is not a choice of {key}", [FieldError(f"values.{key}", "not a choice")]
                )
            current.remove(chosen)
            current.insert(0, chosen)
        elif isinstance(current, dict) and isinstance(value, dict):
            _apply_values(current, value, in_dict=True)
        else:
            raw[key] = value if isinstance(value, bool) and isinstance(current, bool) else _Given(value)


def _render_variable(template: Template, raw: Any, context: dict[str, Any]) -> Any:
    """cookiecutter's `render_variable`: booleans and None stay, everything else becomes a rendered string."""
    if isinstance(raw, _Given):
        return _as_data(raw.value)
    if isinstance(raw, _GivenKey):
        return str(raw)
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, dict):
        return {
            _render_variable(template, key, context): _render_variable(template, value, context)
            for key, value in raw.items()
        }
    if isinstance(raw, list):
        return [_render_variable(template, value, context) for value in raw]
    return template.compile(raw if isinstance(raw, str) else str(raw)).render(cookiecutter=context)


def _as_data(value: Any) -> Any:
    """A caller's value shaped as cookiecutter's rendering would leave it, without rendering it."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict):
        return {_as_data(key): _as_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_data(item) for item in value]
    return str(value)


def _unwrapped(value: Any) -> Any:
    """The raw context with the caller's values as they were sent (cookiecutter's `_cookiecutter`)."""
    if isinstance(value, _Given):
        return value.value
    if isinstance(value, dict):
        return {str(key) if isinstance(key, _GivenKey) else key: _unwrapped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrapped(item) for item in value]
    return value


def full_context(template: Template, values: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """What cookiecutter renders files with: the context, and `_cookiecutter`, the public values before rendering."""
    raw: dict[str, Any] = template.context_copy()
    _apply_values(raw, values)
    return {
        "cookiecutter": context,
        "_cookiecutter": {key: _unwrapped(value) for key, value in raw.items() if not key.startswith("_")},
    }


def check_paths(template: Template, context: dict[str, Any], values: dict[str, Any]) -> str:
    """Renders every path segment of the template and refuses any that would leave the workspace.

    Returns the name of the directory the template generates.
    """
    root, segments = template.layout
    names = full_context(template, values, context)
    for segment, is_directory in segments.items():
        _render_segment(template, segment, names, values, may_be_empty=not is_directory)
    return _render_segment(template, root.name, names, values)


def _render_segment(
    template: Template, segment: str, context: dict[str, Any], values: dict[str, Any], may_be_empty: bool = False
) -> str:
    """Renders one path segment; a file name may render empty, which cookiecutter takes as "skip this file"."""
    if "{" not in segment and template.environment.variable_start_string == "{{":
        return segment
    try:
        rendered = template.compile(segment).render(**context)
    except TEMPLATE_ERRORS as exc:
        raise template.malformed(f"the path {segment!r} does not render: {describe(exc)}", segment) from None
    problem = None
    if rendered == "" and may_be_empty:
        return ""
    if rendered in ("", ".", "..") or any(c in rendered for c in "/\\\0"):
        problem = (
            "values would make a file path outside the workspace",
            "must not be empty or contain path separators",
        )
    elif any(marker in rendered for marker in ("{{", "{%", "{#", *_delimiters(template))):
        # cookiecutter renders directory paths a second time, so template
        # syntax in a file name would be evaluated after all.
        problem = ("values used in file names must not contain template syntax", "must not contain {{, {% or {#")
    elif len(rendered.encode()) > 255:
        problem = ("values make a file name longer than 255 bytes", "too long for a file name")
    if problem is None:
        return str(rendered)
    message, hint = problem
    culprits = [key for key, value in values.items() if isinstance(value, str) and value and value in rendered]
    raise invalid_input(
        message, [FieldError(f"values.{key}", hint) for key in culprits] or [FieldError("values", hint)]
    )


def _delimiters(template: Template) -> tuple[str, ...]:
    """The opening delimiters of the template's own Jinja syntax (`_jinja2_env_vars` may change them)."""
    environment = template.environment
    return (environment.variable_start_string, environment.block_start_string, environment.comment_start_string)


def render(
    template: Template,
    values: dict[str, Any],
    output_dir: Path,
    hook_timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
    sandbox: Sandbox | None = None,
) -> Rendered:
    """Renders `template` into `output_dir` as cookiecutter would; the caller's `values` must be validated already.

    A trusted template's hooks run in `sandbox` (by default the one the environment's settings describe);
    an untrusted template's are skipped, and the log says so.
    """
    say = log or (lambda _: None)
    hooks = template.hooks()
    if hooks and not template.trusted:
        say(
            f"skipped the template's hooks {', '.join(hooks)}: its source is not trusted "
            "(list it in PLTF_TRUSTED_TEMPLATE_SOURCES to run them)"
        )
    if template.trusted and hooks and sandbox is None:
        from ..config import Settings

        sandbox = Sandbox(Settings())
    if not template.trusted or sandbox is None or not hooks:
        return _generate(template, values, output_dir, None, hook_timeout, say)
    with pre_prompt(template, hook_timeout, sandbox) as (prompted, lines):
        for line in lines:
            say(f"hook {HOOKS[0]}: {line}")
        if prompted is not template:
            values = prompted.validate_values(values)
        return _generate(prompted, values, output_dir, sandbox, hook_timeout, say)


def _generate(
    template: Template,
    values: dict[str, Any],
    output_dir: Path,
    sandbox: Sandbox | None,
    hook_timeout: float,
    say: Callable[[str], None],
) -> Rendered:
    context = build_context(template, values, output_dir)
    directory = check_paths(template, context, values)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = full_context(template, values, context)
    project = output_dir / directory
    if project.exists():
        raise PltfError(f"{project} exists already", 409, "conflict")
    project.mkdir()
    try:
        if sandbox is not None:
            # Inside the project directory, which exists and is empty, as cookiecutter runs it.
            for line in run_hook(PRE_GENERATE, template, project, names, hook_timeout, sandbox):
                say(f"hook {PRE_GENERATE}: {line}")
        try:
            generate_files(template, names, output_dir)
        except TEMPLATE_ERRORS as exc:
            raise _render_failure(template, exc) from None
        if sandbox is not None:
            for line in run_hook(POST_GENERATE, template, project, names, hook_timeout, sandbox):
                say(f"hook {POST_GENERATE}: {line}")
    except BaseException:
        shutil.rmtree(project, ignore_errors=True)
        raise
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file() or p.is_symlink())
    return Rendered(project_dir=project, directory=project.name, files=files)


def _render_failure(template: Template, exc: Exception) -> PltfError:
    """A generation error as the template's author needs it: which file, and what is wrong in it."""
    # UndefinedVariableInTemplate's own text carries the whole context, values included: its message and
    # Jinja's are enough.
    message = describe(exc)
    if isinstance(exc, UndefinedVariableInTemplate):
        message = f"{exc.message}: {exc.error.message}"
    where = _template_frame(exc)
    root = os.path.abspath(template.path)
    if where is not None and where.startswith(root + os.sep):
        # Generation reads files by their absolute paths; the author knows them from the template's root.
        where = os.path.relpath(where, root)
    return template.malformed(message, where)


def _template_frame(exc: BaseException) -> str | None:
    """The template file and line an error came from (Jinja puts them in the traceback), if it did."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    filename = getattr(exc, "filename", None)
    lineno = getattr(exc, "lineno", None)
    if not filename:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(".py")]
        frames = [f for f in frames if not f.filename.startswith("<")]
        if frames:
            filename, lineno = frames[-1].filename, frames[-1].lineno
    if not filename:
        return None
    return f"{os.path.normpath(filename)}, line {lineno}" if lineno else os.path.normpath(filename)


def render_template(template_dir: Path, values: dict[str, Any], output_dir: Path) -> Path:
    """Renders a template folder with validated values; the programmatic entry point."""
    from ..config import Settings

    template_dir = template_dir.resolve()
    catalog = TemplateCatalog(Settings(templates_dir=template_dir.parent))
    template = catalog.get(template_dir.name)
    return render(template, template.validate_values(values), output_dir.resolve()).project_dir
