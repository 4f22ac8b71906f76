"""Rendering a template with the caller's values as data, never as code.

Plain cookiecutter renders every value it is given as a Jinja template, so a
value like `{{ cycler.__init__.__globals__.os.popen('id').read() }}` runs on
the server. Here only the template's own defaults are rendered; the caller's
values go into the context as they are, and every rendered path is checked to
stay inside the workspace before anything is written.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookiecutter.exceptions import CookiecutterException
from cookiecutter.generate import generate_files
from jinja2 import TemplateError

from ..errors import FieldError, PltfError, invalid_input
from ..sandbox import Sandbox
from .catalog import Template, TemplateCatalog
from .hooks import POST_GENERATE, PRE_GENERATE, run_hook

# cookiecutter changes the process's working directory while it generates, so
# two renders at once in one process must take turns.
_GENERATE_LOCK = threading.Lock()


@dataclass
class Rendered:
    project_dir: Path
    directory: str
    files: list[str]


def build_context(template: Template, values: dict[str, Any]) -> OrderedDict[str, Any]:
    """The cookiecutter context: the caller's values verbatim, the defaults rendered."""
    context: OrderedDict[str, Any] = OrderedDict()
    computed: list[str] = []
    for key, raw in template.context.items():
        if key in values:
            context[key] = values[key]
        elif key.startswith("__"):
            computed.append(key)
        elif key.startswith("_"):
            context[key] = raw
        else:
            context[key] = _render_default(template, key, raw[0] if isinstance(raw, list) else raw, context)
    for key in computed:
        context[key] = _render_default(template, key, template.context[key], context)
    context["_template"] = template.source
    return context


def _render_default(template: Template, key: str, raw: Any, context: dict[str, Any]) -> Any:
    """Renders a default the template author wrote; numbers and booleans keep their type."""
    try:
        if isinstance(raw, str):
            return template.compile(raw).render(cookiecutter=context)
        if isinstance(raw, dict):
            return {
                _render_default(template, key, k, context): _render_default(template, key, v, context)
                for k, v in raw.items()
            }
        if isinstance(raw, list):
            return [_render_default(template, key, item, context) for item in raw]
        return raw
    except TemplateError as exc:
        raise PltfError(f"the template's default for {key!r} does not render: {exc}", 500, "bad_template") from None


def check_paths(template: Template, context: dict[str, Any], values: dict[str, Any]) -> str:
    """Renders every path segment of the template and refuses any that would leave the workspace.

    Returns the name of the directory the template generates.
    """
    root, segments = template.layout
    for segment, is_directory in segments.items():
        _render_segment(template, segment, context, values, may_be_empty=not is_directory)
    return _render_segment(template, root.name, context, values)


def _render_segment(
    template: Template, segment: str, context: dict[str, Any], values: dict[str, Any], may_be_empty: bool = False
) -> str:
    """Renders one path segment; a file name may render empty, which cookiecutter takes as "skip this file"."""
    if "{" not in segment:
        return segment
    try:
        rendered = template.compile(segment).render(cookiecutter=context)
    except TemplateError as exc:
        raise PltfError(f"the template's path {segment!r} does not render: {exc}", 500, "bad_template") from None
    problem = None
    if rendered == "" and may_be_empty:
        return ""
    if rendered in ("", ".", "..") or any(c in rendered for c in "/\\\0"):
        problem = (
            "values would make a file path outside the workspace",
            "must not be empty or contain path separators",
        )
    elif any(marker in rendered for marker in ("{{", "{%", "{#")):
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


def render(
    template: Template,
    values: dict[str, Any],
    output_dir: Path,
    hook_timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
    sandbox: Sandbox | None = None,
) -> Rendered:
    """Renders `template` into `output_dir`; the caller's `values` must be validated already.

    A trusted template's hooks run in `sandbox` (by default the one the environment's settings describe).
    """
    say = log or (lambda _: None)
    context = build_context(template, values)
    directory = check_paths(template, context, values)
    full_context = {
        "cookiecutter": context,
        "_cookiecutter": {k: v for k, v in context.items() if not k.startswith("_")},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    if template.trusted and sandbox is None:
        from ..config import Settings

        sandbox = Sandbox(Settings())
    if template.trusted and sandbox is not None:
        for line in run_hook(PRE_GENERATE, template.path, output_dir, dict(context), hook_timeout, sandbox):
            say(f"hook {PRE_GENERATE}: {line}")
    with _GENERATE_LOCK:
        try:
            project = Path(
                generate_files(
                    repo_dir=str(template.path), context=full_context, output_dir=str(output_dir), accept_hooks=False
                )
            )
        except (CookiecutterException, TemplateError) as exc:
            shutil.rmtree(output_dir / directory, ignore_errors=True)
            raise PltfError(f"template {template.name} failed to render: {exc}", 500, "bad_template") from None
    if template.trusted and sandbox is not None:
        for line in run_hook(POST_GENERATE, template.path, project, dict(context), hook_timeout, sandbox):
            say(f"hook {POST_GENERATE}: {line}")
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file() or p.is_symlink())
    return Rendered(project_dir=project, directory=project.name, files=files)


def render_template(template_dir: Path, values: dict[str, Any], output_dir: Path) -> Path:
    """Renders a template folder with validated values; the programmatic entry point."""
    from ..config import Settings

    template_dir = template_dir.resolve()
    catalog = TemplateCatalog(Settings(templates_dir=template_dir.parent))
    template = catalog.get(template_dir.name)
    return render(template, template.validate_values(values), output_dir.resolve()).project_dir
