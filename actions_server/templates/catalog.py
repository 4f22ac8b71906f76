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

import hashlib
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from cookiecutter.environment import StrictEnvironment
from cookiecutter.exceptions import CookiecutterException
from cookiecutter.find import find_template
from jinja2 import Template as JinjaTemplate
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from ..config import Settings
from ..errors import FieldError, PltfError, invalid_input, not_found, pydantic_field_errors
from ..urls import AllowList, UrlRefused

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
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


def _no_control_characters(value: str) -> str:
    if CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters")
    return value


@dataclass
class Template:
    name: str
    path: Path
    trusted: bool
    source: str
    context: dict[str, Any] = field(repr=False)
    max_value_length: int = 1000
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
        return StrictEnvironment(context={"cookiecutter": self.context}, keep_trailing_newline=True)

    def compile(self, source: str) -> JinjaTemplate:
        """The template's own Jinja source (defaults, path names), compiled once."""
        with self._compile_lock:
            compiled = self._compiled.get(source)
            if compiled is None:
                compiled = self._compiled[source] = self.environment.from_string(source)
        return compiled

    @cached_property
    def layout(self) -> tuple[Path, dict[str, bool]]:
        """The generated directory, and every distinct templated path segment under it (true for directories)."""
        try:
            root = Path(find_template(self.path, self.environment))
        except CookiecutterException as exc:
            raise PltfError(f"template {self.name} is malformed: {exc}", 500, "bad_template") from None
        segments: dict[str, bool] = {}
        for _, dirnames, filenames in os.walk(root):
            for name in filenames:
                if "{" in name:
                    segments.setdefault(name, False)
            for name in dirnames:
                if "{" in name:
                    segments[name] = True
        return root, segments

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "trusted": self.trusted,
            "source": self.source,
            "schema": self.values_schema,
        }


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
        root = self.settings.templates_dir
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
        path = self.settings.templates_dir / reference
        if not (path / "cookiecutter.json").is_file():
            known = ", ".join(t.name for t in self.list()) or "none"
            raise invalid_input(
                f"unknown template {reference!r} (known: {known})",
                [FieldError("template", f"no template named {reference!r}")],
            )
        return self._load(reference, path, trusted=True, source=f"cookiecutters/{reference}")

    def _load(self, name: str, path: Path, trusted: bool, source: str) -> Template:
        config = path / "cookiecutter.json"
        try:
            key = (path, config.stat().st_mtime_ns)
            if key in self._loaded:
                return self._loaded[key]
            context = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PltfError(
                f"template {name} has an unreadable cookiecutter.json: {exc}", 500, "bad_template"
            ) from None
        if not isinstance(context, dict):
            raise PltfError(f"template {name}: cookiecutter.json must be an object", 500, "bad_template")
        if not trusted:
            _refuse_foreign_extensions(name, context)
        template = Template(name, path, trusted, source, context, self.settings.max_value_length)
        self._loaded[key] = template
        return template

    def _from_git(self, reference: str, ref: str | None, directory: str | None) -> Template:
        try:
            allowed = AllowList(self.settings.template_sources).match(reference)
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
        cache_key = hashlib.sha256(f"{url}\0{ref or ''}".encode()).hexdigest()[:24]
        checkout = (self.settings.data_dir / "template-cache" / cache_key).resolve()
        with self._clone_lock:
            if not (checkout / ".git").exists():
                self._clone(url, ref, checkout)
        path = checkout / directory if directory else checkout
        if not (path / "cookiecutter.json").is_file():
            raise invalid_input(
                "no cookiecutter.json at that source", [FieldError("template", "not a cookiecutter template")]
            )
        trusted = AllowList(self.settings.trusted_template_sources).match(url) is not None
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        return self._load(name, path, trusted, f"{url}@{ref}" if ref else url)

    def _clone(self, url: str, ref: str | None, checkout: Path) -> None:
        checkout.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkout.with_name(checkout.name + f".tmp{os.getpid()}")
        command = ["git", "clone", "--quiet", "--depth", "1"]
        if ref:
            command += ["--branch", ref]
        command += ["--", url, str(tmp)]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
        except subprocess.TimeoutExpired:
            raise PltfError("cloning the template timed out", 504, "template_unavailable") from None
        if result.returncode != 0:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
            last = (result.stderr.strip().splitlines() or ["git clone failed"])[-1]
            raise PltfError(f"could not fetch the template: {last}", 502, "template_unavailable")
        tmp.rename(checkout)


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


def find_template_or_404(catalog: TemplateCatalog, name: str) -> Template:
    try:
        return catalog.get(name)
    except PltfError as exc:
        if exc.status == 422:
            raise not_found(f"no template named {name!r}") from None
        raise
