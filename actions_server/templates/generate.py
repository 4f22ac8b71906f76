"""cookiecutter 2.7.1's `generate_files`, with absolute paths instead of a change of working directory.

cookiecutter changes into the project template while it generates, and takes its Jinja environment
from a module global: both are process-wide, so renders had to take turns. This follows
`cookiecutter.generate` step for step (which names are rendered, in which order, binary detection,
newlines, file modes) but reads every source file by its absolute path, and renders with the
template's own environment (Jinja's sandbox for an untrusted template), made once per template version.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from binaryornot.check import is_binary
from cookiecutter.exceptions import UndefinedVariableInTemplate
from cookiecutter.utils import make_sure_path_exists
from jinja2.exceptions import TemplateSyntaxError, UndefinedError

from .catalog import Template


def generate_files(template: Template, context: dict[str, Any], output_dir: Path) -> Path:
    """Renders the project template into `output_dir`, overwriting what exists, as cookiecutter's does."""
    environment = template.file_environment
    template_dir = str(template.layout[0])
    unrendered_dir = os.path.basename(template_dir)
    try:
        project = _render_and_create_dir(template, "", unrendered_dir, context, str(output_dir))
    except UndefinedError as err:
        raise UndefinedVariableInTemplate(
            f"Unable to create project directory '{unrendered_dir}'", err, context
        ) from err
    project_dir = os.path.abspath(project)

    for top, dirs, files in os.walk(template_dir):
        # The names cookiecutter sees, walking "." from inside the project template.
        root = "." if top == template_dir else os.path.join(".", os.path.relpath(top, template_dir))
        copy_dirs = []
        render_dirs = []
        for d in sorted(dirs):
            if template.copy_only(os.path.normpath(os.path.join(root, d))):
                copy_dirs.append(d)
            else:
                render_dirs.append(d)

        for copy_dir in copy_dirs:
            indir = os.path.normpath(os.path.join(root, copy_dir))
            outdir = environment.from_string(os.path.normpath(os.path.join(project_dir, indir))).render(**context)
            if os.path.isdir(outdir):
                shutil.rmtree(outdir)
            shutil.copytree(os.path.join(template_dir, indir), outdir)

        dirs[:] = render_dirs
        for d in dirs:
            unrendered = os.path.join(project_dir, root, d)
            try:
                _render_and_create_dir(template, project_dir, os.path.join(root, d), context, str(output_dir))
            except UndefinedError as err:
                where = os.path.relpath(unrendered, output_dir)
                raise UndefinedVariableInTemplate(f"Unable to create directory '{where}'", err, context) from err

        for f in sorted(files):
            infile = os.path.normpath(os.path.join(root, f))
            source = os.path.join(template_dir, infile)
            if template.copy_only(infile):
                outfile = os.path.join(project_dir, template.compile(infile).render(**context))
                shutil.copyfile(source, outfile)
                shutil.copymode(source, outfile)
                continue
            try:
                _generate_file(template, project_dir, infile, source, context)
            except UndefinedError as err:
                raise UndefinedVariableInTemplate(f"Unable to create file '{infile}'", err, context) from err
    return Path(project_dir)


def _render_and_create_dir(
    template: Template, prefix: str, relative: str, context: dict[str, Any], output_dir: str
) -> str:
    rendered = _render_path(template, prefix, relative, context)
    directory = Path(output_dir, rendered)
    if not directory.exists():
        make_sure_path_exists(directory)
    return str(directory)


def _render_path(template: Template, prefix: str, relative: str, context: dict[str, Any]) -> str:
    """`os.path.join(prefix, relative)` rendered as one Jinja source, as cookiecutter renders a directory's path.

    The prefix is the run's own directory, another in every run: compiling the whole path compiled it anew
    each time (a tenth of a render's CPU). When the prefix holds nothing Jinja would read, rendering it
    leaves it as it is, so only `relative` is rendered, compiled once per template version.
    """
    environment = template.file_environment
    starts = (environment.variable_start_string, environment.block_start_string, environment.comment_start_string)
    line_syntax = environment.line_statement_prefix or environment.line_comment_prefix
    if line_syntax or any(start in prefix for start in starts):
        return str(environment.from_string(os.path.join(prefix, relative)).render(**context))
    return os.path.join(prefix, template.compile(relative).render(**context))


@functools.lru_cache(maxsize=4096)
def _source_kind(source: str, size: int, mtime_ns: int) -> tuple[bool, str | None]:
    """Whether a template file is binary, and else its first line's newline: read once per version of the file."""
    if is_binary(source):
        return True, None
    with open(source, encoding="utf-8") as file:
        file.readline()
    return False, file.newlines[0] if isinstance(file.newlines, tuple) else file.newlines


def _generate_file(template: Template, project_dir: str, infile: str, source: str, context: dict[str, Any]) -> None:
    outfile = os.path.join(project_dir, template.compile(infile).render(**context))
    if os.path.isdir(outfile):
        # The file's name rendered empty: cookiecutter skips it.
        return
    info = os.stat(source)
    binary, first_newline = _source_kind(source, info.st_size, info.st_mtime_ns)
    if binary:
        shutil.copyfile(source, outfile)
        shutil.copymode(source, outfile)
        return
    try:
        compiled = template.file_environment.get_template(infile.replace(os.path.sep, "/"))
    except TemplateSyntaxError as exception:
        # As cookiecutter does: the error then names the file and line.
        exception.translated = False
        raise
    rendered = compiled.render(**context)
    newline = context["cookiecutter"].get("_new_lines", False) or first_newline
    with open(outfile, "w", encoding="utf-8", newline=newline) as file:
        file.write(rendered)
    shutil.copymode(source, outfile)
