"""Where templates come from, and the values schema each one derives from its `cookiecutter.json`.

Rules for the derived schema:
- a string default becomes a string (a default that is itself a Jinja
  expression is computed from the other values unless the caller sets it);
- a list becomes a choice among its items, the first being the default;
- booleans, integers and numbers keep their type; a dict stays a dict;
- `_private` and `__computed` keys are not exposed and cannot be set;
- `_pltf.schema.<key>` adds JSON Schema keywords (pattern, maxLength, …) to a key,
  and `__prompts__` gives a key its description.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from cookiecutter.environment import StrictEnvironment
from cookiecutter.exceptions import CookiecutterException, NonTemplatedInputDirException
from cookiecutter.find import find_template
from jinja2 import FileSystemLoader, TemplateError
from jinja2 import Template as JinjaTemplate
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from ..config import Settings
from ..errors import FieldError, PltfError, invalid_input, not_found, pydantic_field_errors
from ..urls import AllowList, UrlRefused

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
# A ref that is no branch or tag of the remote may be a commit, full or abbreviated (git's minimum is 4).
COMMIT_PREFIX = re.compile(r"^[0-9a-f]{4,40}$")
FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Tabs and newlines are ordinary text; other control characters are never a
# legitimate template value and break files, terminals and logs.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# JSON Schema keywords a template may add to a value; anything else is ignored.
SCHEMA_KEYWORDS = {"pattern", "maxLength", "minLength", "minimum", "maximum", "format", "title", "description"}
# Jinja imports every module a template names in `_extensions`: for a template
# we do not trust, that would be code of its choosing run on the server. These
# are the ones it may name: Jinja's own, cookiecutter's and pltf's value filters.
UNTRUSTED_EXTENSION_PREFIXES = ("jinja2.ext.", "cookiecutter.extensions.", "jinja2_time.")
UNTRUSTED_EXTENSIONS = {"actions_server.template_filters.ValueFilters"}
# Imports of a template's own modules (`local_extensions`) go through sys.path and sys.modules, which the
# whole process shares: one template at a time, and its modules forgotten afterwards, so two templates
# that both have a `local_extensions.py` each get their own.
_IMPORT_LOCK = threading.RLock()


@contextlib.contextmanager
def template_imports(template: Template) -> Iterator[None]:
    """While held, a trusted template's directory is on sys.path, as cookiecutter puts it there.

    Importing a module of the template runs its code in the server: only a trusted template gets this
    (an untrusted one may not name such extensions at all, see `_refuse_foreign_extensions`).
    """
    with _IMPORT_LOCK:
        if not template.trusted:
            yield
            return
        saved_path = list(sys.path)
        before = set(sys.modules)
        sys.path.append(str(template.path))
        try:
            yield
        finally:
            sys.path[:] = saved_path
            root = str(template.path)
            for name in set(sys.modules) - before:
                origin = getattr(sys.modules[name], "__file__", None) or ""
                if origin.startswith(root + os.sep):
                    del sys.modules[name]


def _no_control_characters(value: str) -> str:
    if CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters")
    return value


class SandboxedStrictEnvironment(StrictEnvironment, SandboxedEnvironment):  # type: ignore[misc]
    """cookiecutter's environment with Jinja's sandbox: an untrusted template's own Jinja (its files, paths
    and defaults) is code of its author's choosing, so it may not reach Python's internals from the server."""


@dataclass
class Template:
    name: str
    path: Path
    trusted: bool
    source: str
    context: dict[str, Any] = field(repr=False)
    max_value_length: int = 1000
    # For a git template: the URL and the ref asked for (cookiecutter's `_template` and `_checkout`).
    origin: str | None = None
    checkout: str | None = None
    _compiled: dict[str, JinjaTemplate] = field(default_factory=dict, repr=False)
    _compile_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def version(self) -> str:
        meta = self.context.get("_pltf")
        return str(meta.get("version", "0")) if isinstance(meta, dict) else "0"

    @property
    def description(self) -> str:
        meta = self.context.get("_pltf")
        if isinstance(meta, dict) and meta.get("description"):
            return str(meta["description"])
        return str(self.context.get("description", "")) if isinstance(self.context.get("description"), str) else ""

    @property
    def public_keys(self) -> list[str]:
        return [key for key in self.context if not key.startswith("_")]

    def context_copy(self) -> dict[str, Any]:
        """cookiecutter.json's context, to change freely: parsed again from its JSON text, several times
        cheaper than `copy.deepcopy` (a Create copies it three times)."""
        copied: dict[str, Any] = json.loads(self._context_text)
        return copied

    @cached_property
    def _context_text(self) -> str:
        return json.dumps(self.context)

    @cached_property
    def values_model(self) -> type[BaseModel]:
        return _values_model(self)

    @cached_property
    def values_schema(self) -> dict[str, Any]:
        schema = self.values_model.model_json_schema()
        schema["title"] = f"{self.name} values"
        return schema

    def validate_values(self, values: Any, prefix: str = "values") -> dict[str, Any]:
        """The values the caller set, typed; defaults are left for rendering to compute."""
        if not isinstance(values, dict):
            raise invalid_input("values must be an object", [FieldError(prefix, "must be an object")])
        try:
            model = self.values_model.model_validate(values)
        except ValidationError as exc:
            raise invalid_input(
                f"invalid values for template {self.name}", pydantic_field_errors(exc.errors(), prefix)
            ) from None
        return {key: getattr(model, key) for key in model.model_fields_set}

    @cached_property
    def environment(self) -> StrictEnvironment:
        """cookiecutter's environment for this template: its `_extensions` and `_jinja2_env_vars`."""
        return self.new_environment({"cookiecutter": self.context})

    @cached_property
    def file_environment(self) -> StrictEnvironment:
        """The environment generation renders the project's files with, keeping their compiled Jinja.

        cookiecutter's loader paths, "." and "../templates" from inside the project template, made absolute.
        """
        environment = self.new_environment({"cookiecutter": self.context})
        root = os.path.abspath(self.layout[0])
        environment.loader = FileSystemLoader([root, os.path.join(root, os.pardir, "templates")])
        return environment

    @property
    def environment_class(self) -> type[StrictEnvironment]:
        return StrictEnvironment if self.trusted else SandboxedStrictEnvironment

    def new_environment(self, context: dict[str, Any]) -> StrictEnvironment:
        """A fresh Jinja environment as cookiecutter makes it for `context` (a generation needs its own)."""
        settings = self.context.get("_jinja2_env_vars") or {}
        if not isinstance(settings, dict):
            raise self.malformed("_jinja2_env_vars in cookiecutter.json must be an object")
        try:
            with template_imports(self):
                return self.environment_class(context=context, keep_trailing_newline=True, **settings)
        except (CookiecutterException, TemplateError, TypeError, ValueError, ImportError) as exc:
            raise self.malformed(f"its Jinja environment cannot be made: {describe(exc)}") from None

    def malformed(self, what: str, file: str | None = None) -> PltfError:
        """The error of a template that cannot render whatever the values: the author's to fix."""
        where = f" ({file})" if file else ""
        return PltfError(f"template {self.name} is malformed{where}: {what}", 422, "bad_template")

    def compile(self, source: str) -> JinjaTemplate:
        """The template's own Jinja source (defaults, path names), compiled once."""
        compiled = self._compiled.get(source)  # no lock to read: concurrent renders queued on it
        if compiled is None:
            with self._compile_lock:
                compiled = self._compiled.get(source)
                if compiled is None:
                    compiled = self._compiled[source] = self.environment.from_string(source)
        return compiled

    @cached_property
    def layout(self) -> tuple[Path, dict[str, bool]]:
        """The generated directory, and every distinct templated path segment under it (true for directories)."""
        environment = self.environment
        try:
            root = Path(find_template(self.path, environment))
        except NonTemplatedInputDirException:
            start, end = environment.variable_start_string, environment.variable_end_string
            raise self.malformed(
                f"no directory at its root has a name containing 'cookiecutter' between {start} and {end} "
                "(the directory the project is generated from)"
            ) from None
        except CookiecutterException as exc:
            raise self.malformed(describe(exc)) from None
        segments: dict[str, bool] = {}
        for top, dirnames, filenames in os.walk(root):
            relative = os.path.relpath(top, root)
            for name in filenames:
                if "{" in name:
                    segments.setdefault(name, False)
            for name in list(dirnames):
                if "{" in name:
                    segments[name] = True
                # cookiecutter copies what `_copy_without_render` names without rendering the names inside.
                if self.copy_only(os.path.normpath(os.path.join(relative, name))):
                    dirnames.remove(name)
        return root, segments

    def copy_only(self, path: str) -> bool:
        """Whether cookiecutter copies `path` (relative to the project template) without rendering it."""
        patterns = self.context.get("_copy_without_render") or []
        return any(fnmatch.fnmatch(path, pattern) for pattern in patterns if isinstance(pattern, str))

    def hooks(self) -> list[str]:
        """The names of the cookiecutter hooks the template has."""
        folder = self.path / "hooks"
        if not folder.is_dir():
            return []
        names = {os.path.splitext(entry.name)[0] for entry in folder.iterdir() if not entry.name.endswith("~")}
        return [hook for hook in HOOKS if hook in names]

    def reloaded(self, path: Path) -> Template:
        """The same template read again from `path` (a copy its pre_prompt hook may have changed)."""
        context = _read_context(self.name, path)
        return Template(
            self.name, path, self.trusted, self.source, context, self.max_value_length, self.origin, self.checkout
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "trusted": self.trusted,
            "source": self.source,
            "schema": self.values_schema,
        }


HOOKS = ("pre_prompt", "pre_gen_project", "post_gen_project")
# What a template's own Jinja can raise while it renders: Jinja's and cookiecutter's errors, and those of the
# Python its expressions call (`{{ 1 / 0 }}`, `{{ x[9] }}`, a filter given the wrong type). The template's
# author is to fix them, so they are a 422 naming the file, not a 500.
TEMPLATE_ERRORS = (
    TemplateError,
    CookiecutterException,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
)


def describe(exc: BaseException) -> str:
    """An exception in words, never empty (several of cookiecutter's have no message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_context(name: str, path: Path) -> dict[str, Any]:
    try:
        context = json.loads((path / "cookiecutter.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PltfError(f"template {name} has an unreadable cookiecutter.json: {exc}", 422, "bad_template") from None
    if not isinstance(context, dict):
        raise PltfError(f"template {name}: cookiecutter.json must be an object", 422, "bad_template")
    return context


def _values_model(template: Template) -> type[BaseModel]:
    meta = template.context.get("_pltf") if isinstance(template.context.get("_pltf"), dict) else {}
    extra_schema: dict[str, Any] = meta.get("schema", {}) if isinstance(meta, dict) else {}
    prompts = template.context.get("__prompts__") or {}
    fields: dict[str, Any] = {}
    for key in template.public_keys:
        default = template.context[key]
        keywords = {k: v for k, v in (extra_schema.get(key) or {}).items() if k in SCHEMA_KEYWORDS}
        prompt = prompts.get(key) if isinstance(prompts, dict) else None
        description = keywords.pop("description", None) or (prompt if isinstance(prompt, str) else None)
        title = keywords.pop("title", None)
        constraints: dict[str, Any] = {"description": description, "title": title}
        if isinstance(default, bool):
            fields[key] = (bool, Field(default, **constraints))
        elif isinstance(default, int | float):
            bounds = {k: keywords[k] for k in ("minimum", "maximum") if k in keywords}
            fields[key] = (
                type(default),
                Field(default, ge=bounds.get("minimum"), le=bounds.get("maximum"), **constraints),
            )
        elif isinstance(default, list) and default and all(isinstance(c, str | int | float) for c in default):
            choices = tuple(str(choice) for choice in default)
            fields[key] = (Literal[choices], Field(choices[0], **constraints))
        elif isinstance(default, dict):
            fields[key] = (dict[str, Any], Field(default, **constraints))
        else:
            is_derived = isinstance(default, str) and ("{{" in default or "{%" in default)
            extra: dict[str, Any] | None = {"x-derived": True} if is_derived else None
            string_type = _string_type(
                max_length=int(keywords.get("maxLength", template.max_value_length)),
                min_length=keywords.get("minLength"),
                pattern=keywords.get("pattern"),
            )
            fields[key] = (
                string_type,
                Field("" if default is None else str(default), json_schema_extra=extra, **constraints),
            )
    model = create_model(
        f"Values_{re.sub(r'[^A-Za-z0-9_]', '_', template.name)}",
        __config__=ConfigDict(extra="forbid", strict=False),
        **fields,
    )
    return model


def _string_type(max_length: int, min_length: int | None, pattern: str | None) -> Any:
    from typing import Annotated

    return Annotated[
        str,
        Field(max_length=max_length, min_length=min_length, pattern=pattern),
        AfterValidator(_no_control_characters),
    ]


class TemplateCatalog:
    """The templates in `cookiecutters/`, plus git templates from allow-listed sources."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clone_lock = threading.Lock()
        # Parsed templates, with their compiled Jinja, until cookiecutter.json changes.
        self._loaded: dict[tuple[Path, int], Template] = {}

    def list(self) -> list[Template]:
        root = self.settings.templates.templates_dir
        if not root.is_dir():
            return []
        found = []
        for child in sorted(root.iterdir()):
            if (child / "cookiecutter.json").is_file() and TEMPLATE_NAME.match(child.name):
                found.append(self._load(child.name, child, trusted=True, source=f"cookiecutters/{child.name}"))
        return found

    def get(self, reference: str, ref: str | None = None, directory: str | None = None) -> Template:
        if "://" in reference or reference.startswith("git@"):
            return self._from_git(reference, ref, directory)
        if not TEMPLATE_NAME.match(reference):
            raise invalid_input(
                f"unknown template {reference!r}",
                [FieldError("template", "must be a template name in cookiecutters/ or an allow-listed git URL")],
            )
        path = self.settings.templates.templates_dir / reference
        if not (path / "cookiecutter.json").is_file():
            known = ", ".join(t.name for t in self.list()) or "none"
            # The field says what the message does not, so a one-line rendering of both repeats nothing.
            raise invalid_input(
                f"unknown template {reference!r}", [FieldError("template", f"the templates here are: {known}")]
            )
        return self._load(reference, path, trusted=True, source=f"cookiecutters/{reference}")

    def _load(
        self,
        name: str,
        path: Path,
        trusted: bool,
        source: str,
        origin: str | None = None,
        checkout: str | None = None,
        depth: int = 0,
    ) -> Template:
        config = path / "cookiecutter.json"
        try:
            key = (path, config.stat().st_mtime_ns)
        except OSError as exc:
            raise PltfError(
                f"template {name} has an unreadable cookiecutter.json: {exc}", 422, "bad_template"
            ) from None
        if key in self._loaded:
            return self._loaded[key]
        context = _read_context(name, path)
        if not trusted:
            _refuse_foreign_extensions(name, context)
        template = Template(
            name, path, trusted, source, context, self.settings.templates.max_value_length, origin, checkout
        )
        if {"template", "templates"} & set(context):
            # A template of templates: cookiecutter without prompts takes the first one.
            if depth > 5:
                raise template.malformed("its nested templates nest too deep")
            nested = _nested_template(template)
            return self._load(name, nested, trusted, source, origin, checkout, depth + 1)
        self._loaded[key] = template
        return template

    def _from_git(self, reference: str, ref: str | None, directory: str | None) -> Template:
        try:
            allowed = AllowList(self.settings.templates.template_sources).match(reference)
        except UrlRefused as exc:
            raise invalid_input(f"invalid template URL: {exc}", [FieldError("template", str(exc))]) from None
        if allowed is None:
            raise invalid_input(
                "template source is not allow-listed",
                [FieldError("template", "git templates must lie under a prefix listed in PLTF_TEMPLATE_SOURCES")],
            )
        # From here on the normalised URL: what was checked is what is cloned and trusted.
        url = str(allowed)
        if ref is not None and not GIT_REF.match(ref):
            raise invalid_input("invalid git ref", [FieldError("ref", "must be a branch, tag or commit name")])
        if directory is not None and (
            directory.startswith("/") or ".." in Path(directory).parts or not directory.strip()
        ):
            raise invalid_input(
                "invalid directory", [FieldError("directory", "must be a relative path in the repository")]
            )
        checkout = self._checkout(url, ref)
        # cookiecutter reads the template with the server's rights: a link could copy any file of the host.
        leaving = link_out_of(checkout)
        if leaving is not None:
            raise invalid_input(
                f"template {url} has a symbolic link leading out of its repository: {leaving}",
                [FieldError("template", "a template's links must stay inside its repository")],
            )
        path = checkout / directory if directory else checkout
        if not (path / "cookiecutter.json").is_file():
            raise invalid_input(
                "no cookiecutter.json at that source",
                [FieldError("directory" if directory else "template", "not a cookiecutter template")],
            )
        trusted = AllowList(self.settings.templates.trusted_template_sources).match(url) is not None
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        return self._load(name, path, trusted, f"{url}@{ref}" if ref else url, url, ref)

    def _checkout(self, url: str, ref: str | None) -> Path:
        """The repository at `ref`, cloned once per commit.

        A branch (or the default one) may have moved since the last clone, so its commit is asked of the
        remote every time; a commit cannot move, so a cached clone of it is used without asking.
        """
        cache = (
            self.settings.storage.data_dir / "template-cache" / hashlib.sha256(url.encode()).hexdigest()[:24]
        ).resolve()
        with self._clone_lock:
            if ref is not None and FULL_COMMIT.match(ref) and (cache / ref / ".git").exists():
                return cache / ref
            commit = self._remote_commit(url, ref)
            if commit is None:  # a commit, maybe abbreviated
                cached = [p for p in cache.glob(f"{ref}*") if FULL_COMMIT.match(p.name)] if cache.is_dir() else []
                if len(cached) == 1 and (cached[0] / ".git").exists():
                    return cached[0]
            elif (cache / commit / ".git").exists():
                return cache / commit
            return self._clone(url, ref, commit, cache)

    def _remote_commit(self, url: str, ref: str | None) -> str | None:
        """The commit the remote's branch or tag `ref` (its HEAD when None) points to; None if it has no such name."""
        listing = _git(["ls-remote", "--", url], "could not fetch the template")
        refs: dict[str, str] = {}
        for line in listing.splitlines():
            commit, _, name = line.partition("\t")
            refs[name] = commit
        if ref is None:
            return refs.get("HEAD")
        # A tag's peeled entry (^{}) names its commit; a branch is a commit already.
        for name in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
            if name in refs:
                return refs[name]
        if not COMMIT_PREFIX.match(ref):
            raise invalid_input(
                f"the template repository has no branch or tag {ref!r}",
                [FieldError("ref", "no such branch or tag, and not a commit")],
            )
        return None

    def _clone(self, url: str, ref: str | None, commit: str | None, cache: Path) -> Path:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".tmp{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if commit is not None:
                # A branch or tag: only its tip is needed.
                command = ["clone", "--quiet", "--depth", "1", *(["--branch", ref] if ref else []), "--", url, str(tmp)]
                _git(command, "could not fetch the template")
            else:
                # A commit: any in the history, so the whole history.
                _git(["clone", "--quiet", "--no-checkout", "--", url, str(tmp)], "could not fetch the template")
                try:
                    full = _git(["-C", str(tmp), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], "")
                except PltfError:
                    raise invalid_input(
                        f"the template repository has no branch, tag or commit {ref!r}",
                        [FieldError("ref", "no such branch, tag or commit")],
                    ) from None
                _git(
                    ["-C", str(tmp), "checkout", "--quiet", "--detach", full.strip()],
                    "could not check out the template",
                )
            resolved = _git(["-C", str(tmp), "rev-parse", "HEAD"], "could not read the template's commit").strip()
            target = cache / resolved
            if (target / ".git").exists():
                return target
            tmp.rename(target)
            return target
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _git(args: list[str], failure: str) -> str:
    """Runs git without a terminal prompt; a failure is the remote's, said in git's last line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, timeout=120, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise PltfError("fetching the template timed out", 504, "template_unavailable") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1]
        raise PltfError(f"{failure}: {last}", 502, "template_unavailable")
    return result.stdout


def _nested_template(template: Template) -> Path:
    """The directory of the first of a template's nested templates, as cookiecutter chooses it without prompts."""
    options = template.context.get("templates")
    if options:
        if not isinstance(options, dict) or not all(isinstance(o, dict) for o in options.values()):
            raise template.malformed("`templates` must map names to objects with a path")
        relative = next(iter(options.values())).get("path")
    else:
        choices = template.context.get("template")
        if not isinstance(choices, list) or not choices:
            raise template.malformed("`template` must be a non-empty list of choices")
        try:
            first = template.compile(str(choices[0])).render(cookiecutter={})
        except TemplateError as exc:
            raise template.malformed(f"its first `template` choice does not render: {describe(exc)}") from None
        found = re.search(r"\((.+)\)", first)
        relative = found.group(1) if found else None
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        raise template.malformed("a nested template's path must be a relative path")
    root = template.path.resolve()
    nested = (root / relative).resolve()
    if not nested.is_relative_to(root) or not (nested / "cookiecutter.json").is_file():
        raise template.malformed(f"its nested template {relative!r} is not a template inside it")
    return nested


def _refuse_foreign_extensions(name: str, context: dict[str, Any]) -> None:
    named = context.get("_extensions") or []
    foreign = [
        extension
        for extension in (named if isinstance(named, list) else [named])
        if not (
            isinstance(extension, str)
            and (extension in UNTRUSTED_EXTENSIONS or extension.startswith(UNTRUSTED_EXTENSION_PREFIXES))
        )
    ]
    if foreign:
        raise invalid_input(
            f"template {name} is not trusted, so it may not load the Jinja extension(s) {', '.join(map(str, foreign))}",
            [
                FieldError(
                    "template",
                    "an untrusted template may use only Jinja's, cookiecutter's and pltf's value-filter extensions; "
                    "list its source in PLTF_TRUSTED_TEMPLATE_SOURCES to allow others",
                )
            ],
        )


def link_out_of(directory: Path) -> Path | None:
    """The first symbolic link under `directory` that leads out of it (relative to it), if any."""
    root = directory.resolve()
    for path in directory.rglob("*"):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            return path.relative_to(directory)
    return None


def find_template_or_404(catalog: TemplateCatalog, name: str) -> Template:
    try:
        return catalog.get(name)
    except PltfError as exc:
        if exc.status == 422:
            raise not_found(f"no template named {name!r}") from None
        raise
