"""The hostile-values check of `pltf templates check`: no value may change what a generated file means.

For each string value a caller can set, the template is rendered with a benign
value and with hostile ones (quotes of each kind, backslashes, `${{ }}`,
`$(…)`, backticks, newlines; only those the value's schema accepts), and every
generated file is parsed by the reader of its language: Python (ast), YAML
(every document; in workflows also the `${{ }}` expressions and the shell of
`run:`, in GitLab CI the shell of `script:`), JSON, TOML, Markdown, Dockerfile,
Makefile and shell. The two parses must be the same once the value itself is
replaced by a placeholder in every string; anything else (a syntax error, a new
key, a changed call, a new expression) is a finding naming the file, the line
and the field. Helm's own templates (charts/*/templates/) are not plain YAML
and are left to `helm` in the full check, as the YAML checks there do.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOOL = "hostile-values"
# Printable, so it reads the same in the repr of a token.
PLACEHOLDER = "\u27e6value\u27e7"
# A benign value is the first of these the field's schema accepts; a hostile
# one has the payload in its middle, so "must start/end with a letter" patterns
# still hold.
BENIGN = ("pltfvalue", "pltfvalue.example.com", "group:pltfvalue")
PAYLOADS: tuple[tuple[str, str], ...] = (
    ("a double quote", '"'),
    ("a single quote", "'"),
    ("triple double quotes", '"""'),
    ("triple single quotes", "'''"),
    ("a backslash", "\\"),
    ("an escaped quote", '\\"'),
    ("a GitHub Actions expression", "${{ github.token }}"),
    ("a command substitution", "$(id)"),
    ("backticks", "`id`"),
    ("a variable", "$HOME"),
    ("a shell separator", "; id &&"),
    ("a YAML key and comment", ": x #"),
    ("Markdown markup", "*[x](y)* _z_"),
    ("HTML", "<b>&amp;"),
    ("Jinja syntax", "{{ 7*7 }}"),
    ("unicode", "é😀\u202e"),
    ("a space", " "),
    ("a newline", "\n"),
)

Token = tuple[int | None, str]
Render = Callable[[Path, dict[str, Any], Path], Path]


@dataclass(frozen=True)
class ValueFinding:
    path: str
    line: int | None
    field: str
    payloads: tuple[str, ...]
    detail: str
    variant: str = ""

    @property
    def message(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        with_payloads = f" with {', '.join(self.payloads)}" if self.payloads else ""
        return f"{where}field {self.field!r}{with_payloads} {self.detail}"


@dataclass
class HostileReport:
    findings: list[ValueFinding] = field(default_factory=list)
    renders: int = 0
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------ readers


class Unreadable(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _norm(text: str, value: str) -> str:
    return text.replace(value, PLACEHOLDER)


def _data_tokens(data: Any, value: str, out: list[Token], line: int | None = None) -> None:
    """JSON and TOML: the decoded tree, pre-order, with open and close markers."""
    if isinstance(data, dict):
        out.append((line, "{"))
        for key, item in data.items():
            out.append((line, f"key {_norm(str(key), value)!r}"))
            _data_tokens(item, value, out, line)
        out.append((line, "}"))
    elif isinstance(data, list):
        out.append((line, "["))
        for item in data:
            _data_tokens(item, value, out, line)
        out.append((line, "]"))
    elif isinstance(data, str):
        out.append((line, f"str {_norm(data, value)!r}"))
    else:
        out.append((line, f"{type(data).__name__} {data!r}"))


def _decoded_tokens(data: Any, value: str) -> list[Token]:
    """The tokens of a decoded JSON or TOML document (no line numbers: the decoders keep none)."""
    out: list[Token] = []
    _data_tokens(data, value, out)
    return out


def read_json(text: str, value: str, path: str) -> list[Token]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Unreadable(f"is not JSON: {exc}", getattr(exc, "lineno", None)) from None
    return _decoded_tokens(data, value)


def read_toml(text: str, value: str, path: str) -> list[Token]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise Unreadable(f"is not TOML: {exc}", int(found[1]) if found else None) from None
    return _decoded_tokens(data, value)


def read_python(text: str, value: str, path: str) -> list[Token]:
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise Unreadable(f"is not Python: {exc.msg}", exc.lineno) from None
    out: list[Token] = []

    def walk(node: Any, line: int | None) -> None:
        if isinstance(node, ast.AST):
            line = getattr(node, "lineno", line)
            out.append((line, type(node).__name__ + "("))
            for name, child in ast.iter_fields(node):
                out.append((line, name + "="))
                walk(child, line)
            out.append((line, ")"))
        elif isinstance(node, list):
            out.append((line, "["))
            for child in node:
                walk(child, line)
            out.append((line, "]"))
        elif isinstance(node, str):
            out.append((line, f"str {_norm(node, value)!r}"))
        else:
            out.append((line, repr(node)))

    walk(tree, 1)
    return out


# GitHub's expression syntax: `${{ … }}`, ended by the first `}}` outside a
# single-quoted string literal ('' is a quote inside one).
_EXPRESSION_LITERAL = re.compile(r"\s*'((?:[^']|'')*)'\s*")


def actions_segments(text: str) -> Iterator[tuple[str, str]]:
    """("text", literal) and ("expr", source) pieces of a workflow string, as GitHub reads it."""
    position = 0
    while True:
        start = text.find("${{", position)
        if start < 0:
            yield "text", text[position:]
            return
        yield "text", text[position:start]
        index, in_string = start + 3, False
        while index < len(text) and (in_string or not text.startswith("}}", index)):
            if text[index] == "'":
                in_string = not in_string
            index += 1
        if index >= len(text):
            yield "expr", text[start + 3 :]  # unterminated: GitHub refuses the workflow
            return
        yield "expr", text[start + 3 : index]
        position = index + 2


def evaluate_actions_literals(text: str) -> list[tuple[str, str]]:
    """The pieces of a workflow string with expressions that are plain string literals folded into text."""
    pieces: list[tuple[str, str]] = []
    for kind, piece in actions_segments(text):
        literal = _EXPRESSION_LITERAL.fullmatch(piece) if kind == "expr" else None
        if kind == "text" or literal:
            content = piece if kind == "text" else literal[1].replace("''", "'")  # type: ignore[index]
            if pieces and pieces[-1][0] == "text":
                pieces[-1] = ("text", pieces[-1][1] + content)
            else:
                pieces.append(("text", content))
        else:
            pieces.append(("expr", piece.strip()))
    return pieces


SHELL_KEYS = {"run", "script", "before_script", "after_script"}


def read_yaml(text: str, value: str, path: str) -> list[Token]:
    workflow = path.startswith(".github/workflows/")
    out: list[Token] = []
    seen: set[int] = set()

    def scalar(node: yaml.ScalarNode, line: int, shell: bool) -> None:
        if not workflow:
            out.append((line, f"{node.tag} {_norm(node.value, value)!r}"))
            if shell:
                out.extend(shell_tokens(node.value, value, line))
            return
        # GitHub evaluates expressions in every string: each one must be the template's own.
        pieces = evaluate_actions_literals(node.value)
        for kind, piece in pieces:
            out.append((line, f"{node.tag} {kind} {_norm(piece, value)!r}"))
        if shell:
            script = "".join(piece if kind == "text" else "\x01expr" for kind, piece in pieces)
            out.extend(shell_tokens(script, value, line))

    def walk(node: yaml.Node, shell: bool = False) -> None:
        line = node.start_mark.line + 1
        if id(node) in seen:
            out.append((line, "alias"))
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            scalar(node, line, shell)
        elif isinstance(node, yaml.SequenceNode):
            out.append((line, "["))
            for item in node.value:
                walk(item, shell)
            out.append((line, "]"))
        elif isinstance(node, yaml.MappingNode):
            out.append((line, "{"))
            for key, item in node.value:
                walk(key)
                walk(item, isinstance(key, yaml.ScalarNode) and key.value in SHELL_KEYS)
            out.append((line, "}"))

    try:
        for document in yaml.compose_all(text, Loader=yaml.SafeLoader):
            out.append((None, "---"))
            seen.clear()  # ids of a finished document's nodes are reused
            if document is not None:
                walk(document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        raise Unreadable(f"is not YAML: {problem}", mark.line + 1 if mark else None) from None
    return out


def shell_tokens(text: str, value: str, line: int = 1, *, shell: bool = True) -> list[Token]:
    """Words and operators of a shell script (or, with shell=False, of a Dockerfile line).

    An unquoted or double-quoted `$` or backtick becomes a marker, so a value
    that brings an expansion into a word no longer matches the placeholder.
    """
    out: list[Token] = []
    word: list[str] = []
    in_word = False
    index = 0

    def end_word() -> None:
        nonlocal in_word
        if in_word:
            out.append((line, f"word {_norm(''.join(word), value)!r}"))
        word.clear()
        in_word = False

    expansions = "$`" if shell else "$"
    while index < len(text):
        ch = text[index]
        if ch == "\n":
            end_word()
            out.append((line, "newline"))
            line += 1
        elif ch in " \t":
            end_word()
        elif ch == "#" and not in_word and shell:
            while index + 1 < len(text) and text[index + 1] != "\n":
                index += 1
        elif ch == "\\":
            index += 1
            if index < len(text) and text[index] == "\n":
                line += 1
            elif index < len(text):
                word.append(text[index])
                in_word = True
        elif ch == "'":
            end = text.find("'", index + 1)
            if end < 0:
                raise Unreadable("has an unterminated single quote", line)
            word.append(text[index + 1 : end])
            line += text.count("\n", index, end)
            in_word, index = True, end
        elif ch == '"':
            index += 1
            in_word = True
            while index < len(text) and text[index] != '"':
                if text[index] == "\\" and index + 1 < len(text) and text[index + 1] in '$`"\\\n':
                    index += 1
                    word.append(text[index])
                elif text[index] in expansions:
                    word.append("\x01" + text[index])
                else:
                    word.append(text[index])
                line += text[index] == "\n"
                index += 1
            if index >= len(text):
                raise Unreadable("has an unterminated double quote", line)
        elif ch in expansions:
            word.append("\x01" + ch)
            in_word = True
        elif shell and ch in ";&|<>()":
            end_word()
            out.append((line, f"operator {ch}"))
        else:
            word.append(ch)
            in_word = True
        index += 1
    end_word()
    return out


def read_shell(text: str, value: str, path: str) -> list[Token]:
    return shell_tokens(text, value)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash-newline continuations joined, numbered by where they start."""
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        start, joined = index + 1, lines[index]
        while joined.endswith("\\") and index + 1 < len(lines):
            index += 1
            joined = joined[:-1] + "\n" + lines[index]
        yield start, joined
        index += 1


def read_dockerfile(text: str, value: str, path: str) -> list[Token]:
    out: list[Token] = []
    for line, logical in _logical_lines(text):
        stripped = logical.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, arguments = stripped.partition(" ")
        out.append((line, f"instruction {keyword.upper()}"))
        arguments = arguments.strip()
        if arguments.startswith("["):
            try:
                words = json.loads(arguments.replace("\n", " "))
            except ValueError:
                words = None
            if isinstance(words, list):
                out.extend((line, f"exec {_norm(str(word), value)!r}") for word in words)
                continue
        out.extend(shell_tokens(arguments, value, line, shell=keyword.upper() == "RUN"))
    return out


_MAKE_REFERENCE = re.compile(r"\$\((\w+)\)|\$\{(\w+)\}")


def read_makefile(text: str, value: str, path: str) -> list[Token]:
    out: list[Token] = []
    for line, logical in _logical_lines(text):
        if logical.startswith("\t"):
            # make expands $(VAR) and $$ first, then the shell runs the line.
            recipe = _MAKE_REFERENCE.sub(lambda m: f"\x02{m[1] or m[2]}\x02", logical).replace("$$", "$")
            out.append((line, "recipe"))
            out.extend(shell_tokens(recipe, value, line))
        else:
            content = logical.split("#", 1)[0]
            out.extend((line, f"make {_norm(word, value)!r}") for word in content.split())
            out.append((line, "newline"))
    return out


def read_markdown(text: str, value: str, path: str) -> list[Token]:
    from markdown_it import MarkdownIt

    out: list[Token] = []
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        line = token.map[0] + 1 if token.map else None
        out.append((line, f"{token.type} {token.tag} {token.info!r}"))
        if token.type in ("fence", "code_block", "html_block"):
            out.append((line, f"content {_norm(token.content, value)!r}"))
        pending = ""
        for child in token.children or []:
            if child.type == "text":
                pending += child.content
                continue
            if pending:
                out.append((line, f"text {_norm(pending, value)!r}"))
                pending = ""
            out.append((line, f"{child.type} {child.tag} {_norm(child.content, value)!r} {child.attrs!r}"))
        if pending:
            out.append((line, f"text {_norm(pending, value)!r}"))
    return out


def read_words(text: str, value: str, path: str) -> list[Token]:
    """Files with no grammar of their own (CODEOWNERS, ignore files, requirements): lines of words."""
    out: list[Token] = []
    for line, content in enumerate(text.split("\n"), 1):
        out.extend((line, f"word {_norm(word, value)!r}") for word in content.split())
        out.append((line, "newline"))
    return out


Reader = Callable[[str, str, str], list[Token]]


def reader_for(path: str) -> Reader | None:
    """None for files this check leaves to other validators (Helm templates)."""
    parts = path.split("/")
    name = parts[-1]
    if len(parts) >= 3 and parts[0] == "charts" and parts[2] == "templates":
        return None
    if name.endswith(".py"):
        return read_python
    if name.endswith((".yaml", ".yml")):
        return read_yaml
    if name.endswith(".json"):
        return read_json
    if name.endswith(".toml"):
        return read_toml
    if name.endswith(".md"):
        return read_markdown
    if name == "Dockerfile" or name.endswith(".Dockerfile"):
        return read_dockerfile
    if name in ("Makefile", "GNUmakefile") or name.endswith(".mk"):
        return read_makefile
    if name.endswith((".sh", ".bash")):
        return read_shell
    return read_words


# ------------------------------------------------------------------ comparison


def _first_changed_line(benign: str, hostile: str) -> int | None:
    matcher = difflib.SequenceMatcher(None, benign.split("\n"), hostile.split("\n"), autojunk=False)
    for tag, _, _, j1, _ in matcher.get_opcodes():
        if tag != "equal":
            return j1 + 1
    return None


def compare_file(
    path: str, benign: str, benign_value: str, hostile: str, hostile_value: str
) -> tuple[int | None, str] | None:
    """None when the hostile rendering means what the benign one does; else (line, what changed)."""
    reader = reader_for(path)
    if reader is None:
        return None
    try:
        expected = reader(benign, benign_value, path)
    except Unreadable:
        expected = read_words(benign, benign_value, path)
        reader = read_words
    try:
        found = reader(hostile, hostile_value, path)
    except Unreadable as exc:
        return exc.line or _first_changed_line(benign, hostile), f"makes the file unreadable: it {exc}"
    if [token for _, token in expected] == [token for _, token in found]:
        return None
    matcher = difflib.SequenceMatcher(None, [t for _, t in expected], [t for _, t in found], autojunk=False)
    for tag, i1, _, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        line = found[j1][0] if j1 < len(found) else (found[-1][0] if found else None)
        was = _show(expected[i1][1]) if i1 < len(expected) else "nothing"
        now = _show(found[j1][1]) if j1 < j2 else "nothing"
        return line or _first_changed_line(benign, hostile), f"changes the file's structure: {was} became {now}"
    return None  # pragma: no cover - the sequences differ, so an opcode does


def _show(token: str) -> str:
    shown = token.replace(PLACEHOLDER, "<value>").replace("\x01", "")
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _files(project: Path, value: str) -> dict[str, str]:
    files = {}
    for path in sorted(project.rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            files[_norm(str(path.relative_to(project)), value)] = text
    return files


# --------------------------------------------------------------------- the check


def _string_fields(template_dir: Path) -> list[str]:
    context = json.loads((template_dir / "cookiecutter.json").read_text())
    return [key for key, default in context.items() if not key.startswith("_") and isinstance(default, str)]


def _accepts(template: Any, key: str, value: str) -> bool:
    from ..errors import PltfError

    try:
        template.validate_values({key: value})
    except PltfError:
        return False
    return True


def hostile_values_check(
    template_dir: Path,
    variants: list[dict[str, Any]],
    render: Render,
    *,
    variant_label: Callable[[dict[str, Any]], str] = lambda values: "",
) -> HostileReport:
    """Renders each variant with a benign and with hostile values of each string field, and compares the parses."""
    from ..config import Settings
    from .catalog import TemplateCatalog

    started = time.perf_counter()
    template_dir = Path(template_dir).resolve()
    template = TemplateCatalog(Settings(templates_dir=template_dir.parent)).get(template_dir.name)
    report = HostileReport()
    plans: list[tuple[str, str, Attempt | None, list[Attempt]]] = []
    for key in _string_fields(template_dir):
        benign = next((candidate for candidate in BENIGN if _accepts(template, key, candidate)), None)
        if benign is None:
            report.skipped[key] = "no benign test value fits its schema"
            continue
        head, tail = benign[:4], benign[4:]
        accepted = [(name, payload) for name, payload in PAYLOADS if _accepts(template, key, head + payload + tail)]
        if not accepted:
            report.skipped[key] = "its schema admits none of the hostile characters"
            continue
        # All accepted payloads in one value first: one render per field when
        # the template is safe; one render per payload only to name the culprit.
        combined = head + "".join(payload for _, payload in accepted) + tail
        singles: list[Attempt] = [((name,), head + payload + tail) for name, payload in accepted]
        together = (tuple(name for name, _ in accepted), combined) if _accepts(template, key, combined) else None
        plans.append((key, benign, together, singles))

    for variant in variants:
        label = variant_label(variant)
        for key, benign, together, singles in plans:
            found, renders = _check_field(template_dir, render, variant, key, benign, together, singles)
            report.renders += renders
            report.findings.extend(ValueFinding(f.path, f.line, f.field, f.payloads, f.detail, label) for f in found)
    report.findings = _merge(report.findings)
    report.seconds = time.perf_counter() - started
    return report


Attempt = tuple[tuple[str, ...], str]


def _check_field(
    template_dir: Path,
    render: Render,
    variant: dict[str, Any],
    key: str,
    benign: str,
    together: Attempt | None,
    singles: list[Attempt],
) -> tuple[list[ValueFinding], int]:
    with tempfile.TemporaryDirectory(prefix="pltf-hostile-") as scratch:
        output = Path(scratch)
        try:
            expected = _files(render(template_dir, {**variant, key: benign}, output / "benign"), benign)
        except Exception as exc:  # noqa: BLE001 - reported like any other finding
            failed = f"{benign!r} fails to render: {type(exc).__name__}: {exc}"
            return [ValueFinding("", None, key, (), failed)], 1
        renders = 1

        def attempt(names: tuple[str, ...], hostile: str) -> list[ValueFinding]:
            nonlocal renders
            renders += 1
            target = output / f"hostile-{renders}"
            return _compare_render(template_dir, render, variant, key, hostile, names, expected, benign, target)

        broken = attempt(*together) if together else []
        if together and not broken:
            return [], renders
        one_by_one = [finding for names, hostile in singles for finding in attempt(names, hostile)]
        return one_by_one or broken, renders  # `broken` alone: only together did the payloads break it


def _compare_render(
    template_dir: Path,
    render: Render,
    variant: dict[str, Any],
    key: str,
    hostile: str,
    names: tuple[str, ...],
    expected: dict[str, str],
    benign: str,
    output: Path,
) -> list[ValueFinding]:
    try:
        project = render(template_dir, {**variant, key: hostile}, output)
    except Exception as exc:  # noqa: BLE001 - a value the template cannot write is refused, which is safe
        message = str(exc)
        if "cannot contain" in message or getattr(exc, "status", 500) < 500:
            return []
        return [ValueFinding("", None, key, names, f"fails to render: {type(exc).__name__}: {message}")]
    found = _files(project, hostile)
    findings = []
    for path in sorted(expected.keys() | found.keys()):
        if path not in found or path not in expected:
            what = "removes" if path not in found else "adds"
            findings.append(ValueFinding(path.replace(PLACEHOLDER, "<value>"), None, key, names, f"{what} this file"))
            continue
        changed = compare_file(path, expected[path], benign, found[path], hostile)
        if changed is not None:
            line, detail = changed
            findings.append(ValueFinding(path.replace(PLACEHOLDER, "<value>"), line, key, names, detail))
    return findings


def _merge(findings: list[ValueFinding]) -> list[ValueFinding]:
    """One finding per file, field and variant, naming every payload that broke it."""
    merged: dict[tuple[str, str, str], ValueFinding] = {}
    for finding in findings:
        key = (finding.path, finding.field, finding.variant)
        first = merged.get(key)
        if first is None:
            merged[key] = finding
        else:
            payloads = first.payloads + tuple(p for p in finding.payloads if p not in first.payloads)
            merged[key] = ValueFinding(first.path, first.line, first.field, payloads, first.detail, first.variant)
    return list(merged.values())
