"""Jinja filters that write a value into a file as data of that file's language.

A caller's value is never evaluated by Jinja (see render.py), but a value that
lands raw in a Python file, a workflow or a Dockerfile is code there. A template
enables these filters the cookiecutter way, in its cookiecutter.json:

    "_extensions": ["actions_server.template_filters.ValueFilters"]

and writes `{{ cookiecutter.description | python_string }}`. Each filter returns
a complete literal (quotes included) that the file's own parser reads back as
exactly the original string, whatever quotes, backslashes, `${{ }}`, `$(…)`,
backticks, newlines or unicode it holds. A value the target cannot hold (a
newline in a Dockerfile or Makefile line) fails the render instead of changing
the file's meaning.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any

from jinja2 import Environment
from jinja2.exceptions import TemplateRuntimeError
from jinja2.ext import Extension

EXTENSION = "actions_server.template_filters.ValueFilters"


def _escape_code_point(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


_COMMON_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def python_string(value: Any) -> str:
    """A Python str literal, ASCII only, quoted the way `ruff format` would quote it.

    Non-ASCII is escaped too: bidi controls and look-alike letters cannot hide
    code (Trojan Source), and the generated service's ruff has nothing to flag.
    """
    text = str(value)
    quote = "'" if text.count('"') > text.count("'") else '"'
    escaped = text.translate(_PYTHON_ESCAPES[quote])
    # What is left outside printable ASCII after the escapes (themselves printable) becomes a code point escape.
    return quote + _NOT_PRINTABLE_ASCII.sub(lambda m: _escape_code_point(m.group()), escaped) + quote


# str.translate tables: a value's characters are escaped in C, not one Python call per character.
_PYTHON_ESCAPES = {quote: str.maketrans({**_COMMON_ESCAPES, '"': '"', quote: "\\" + quote}) for quote in ('"', "'")}
_NOT_PRINTABLE_ASCII = re.compile("[^ -~]")
_COMMON_TABLE = str.maketrans(_COMMON_ESCAPES)


# YAML (1.1 and 1.2) reads these as line breaks or refuses them in a stream,
# so they are written as escapes; every other character is printable there.
_YAML_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def yaml_string(value: Any) -> str:
    """A double-quoted YAML scalar: always a string, never a number, key, comment or anchor."""
    text = str(value).translate(_COMMON_TABLE)
    return '"' + _YAML_UNPRINTABLE.sub(lambda m: _escape_code_point(m.group()), text) + '"'


def actions_string(value: Any) -> str:
    """A YAML scalar for a GitHub Actions workflow, in which `${{` stays literal text.

    GitHub evaluates `${{ … }}` in any workflow string, after YAML parsing, and
    has no escape for it; `${{ '${{' }}` is the expression whose value is the
    literal `${{`, so the caller's text comes out unchanged and runs nothing.
    """
    return yaml_string(str(value).replace("${{", "${{ '${{' }}"))


def json_value(value: Any) -> str:
    """Any value as JSON; strings keep their unicode as it is."""
    return json.dumps(value, ensure_ascii=False)


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_TOML_TABLE = str.maketrans(_TOML_ESCAPES)
_TOML_CONTROL = re.compile("[\x00-\x1f\x7f]")


def toml_string(value: Any) -> str:
    """A TOML basic string."""
    text = str(value).translate(_TOML_TABLE)
    return '"' + _TOML_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + '"'


def shell_word(value: Any) -> str:
    """One POSIX shell word: nothing in it is expanded, substituted or split."""
    return shlex.quote(str(value))


def _refuse_newline(value: str, where: str) -> None:
    if "\n" in value or "\r" in value:
        raise TemplateRuntimeError(f"a value written into {where} cannot contain a line break")


def make_shell_word(value: Any) -> str:
    """One shell word in a Makefile recipe line: make's `$` doubled, then quoted for the shell."""
    text = str(value)
    _refuse_newline(text, "a Makefile")
    return shell_word(text).replace("$", "$$")


def dockerfile_string(value: Any) -> str:
    """A double-quoted Dockerfile word (LABEL, ENV): no `$` substitution, no line continuation."""
    text = str(value)
    _refuse_newline(text, "a Dockerfile")
    return '"' + re.sub(r'(["\\$])', r"\\\1", text) + '"'


# Markdown syntax characters, written as character references: CommonMark and
# Python-Markdown (MkDocs) both read a reference as text, never as markup, and
# so does HTML. Backslash escapes would not do: Python-Markdown shows `\|` or
# `\~` literally.
def _reference(ch: str) -> str:
    return f"&#{ord(ch)};"


_MARKDOWN_ANYWHERE = {"&": "&amp;", "<": "&lt;", ">": "&gt;", **{ch: _reference(ch) for ch in "\\`*_[]!|~{}()#$\n\r"}}


def markdown_text(value: Any) -> str:
    """Markdown (or HTML) text that renders as exactly the value: no emphasis, link, heading or raw HTML."""
    text = str(value)
    out = [_MARKDOWN_ANYWHERE.get(ch, ch) for ch in text]
    # Block markers only mean something at the start of a line (headings and
    # `#` are covered above): list items, setext underlines, indented code; and
    # Markdown strips leading and trailing blanks.
    start, end = 0, len(text)
    while start < end and text[start] in " \t":
        out[start] = _reference(text[start])
        start += 1
    while end > start and text[end - 1] in " \t":
        end -= 1
        out[end] = _reference(text[end])
    ordered_item = re.match(r"\d{1,9}\.", text)
    if text[:1] in ("-", "+", "="):
        out[0] = _reference(text[0])
    elif ordered_item:
        out[ordered_item.end() - 1] = _reference(".")
    return "".join(out)


def markdown_code(value: Any) -> str:
    """A Markdown code span of the value, fenced by more backticks than the value holds in a row."""
    text = str(value)
    if not text:
        return ""
    _refuse_newline(text, "a Markdown code span")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    # One blank each side is stripped when both are there, unless the span is all blanks.
    pad = " " if text.strip(" ") and (text[0] in "` " or text[-1] in "` ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


FILTERS: dict[str, Callable[[Any], str]] = {
    "python_string": python_string,
    "yaml_string": yaml_string,
    "actions_string": actions_string,
    "json_value": json_value,
    "toml_string": toml_string,
    "shell_word": shell_word,
    "make_shell_word": make_shell_word,
    "dockerfile_string": dockerfile_string,
    "markdown_text": markdown_text,
    "markdown_code": markdown_code,
}


class ValueFilters(Extension):
    """Adds the filters above to a template's Jinja environment."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(FILTERS)
