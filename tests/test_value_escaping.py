"""Values stay data in every file they land in (issue 12, finding 1).

Each filter of actions_server/templates/filters.py, loaded the way a template
loads it (`_extensions` in cookiecutter.json), must give back exactly the
original string through the real reader of its language; and the golden
template, rendered over the HTTP API, must carry a hostile or an honest
description as data, never as code.
"""

from __future__ import annotations

import ast
import base64
import html
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cookiecutter.environment import StrictEnvironment
from fastapi.testclient import TestClient
from markdown_it import MarkdownIt

from actions_server.app import create_app
from actions_server.config import PROJECT_ROOT
from actions_server.templates.check import cookiecutter_render, find_tool
from conftest import TOKEN, make_settings

EXTENSION = "actions_server.template_filters.ValueFilters"
HOSTILE = [
    'x"""; __import__("os").system("id > pwned.txt"); """y',
    'It\'s the "users" API \\ v2',
    "'''",
    '"',
    "'",
    "\\",
    '\\"',
    "\\n is not a newline",
    "${{ secrets.GITHUB_TOKEN }}",
    "${{ github.event.issue.title }} and ${{ 'x' }}",
    "$(id) `id` $HOME ${HOME} ; rm -rf / && echo | cat",
    "two\nlines",
    "windows\r\nline",
    "key: value # comment",
    "- [x] *bold* _em_ __strong__ [link](http://x) ![img](y) <script>alert(1)</script> &amp; | a | b |",
    "# heading",
    "1. ordered",
    "    indented",
    "trailing  ",
    "\tleading tab",
    "~~strike~~ {{ 7*7 }} {% raw %}",
    "é ünïcödé 😀 \u202eevil\u202c \u2028 \u2029 \ufeff \x85",
    "&#42; a reference",
    "`code` ``more``",
    "",
    " ",
]
ONE_LINE = [value for value in HOSTILE if "\n" not in value and "\r" not in value]


def render(source: str, value: Any) -> str:
    environment = StrictEnvironment(context={"cookiecutter": {"_extensions": [EXTENSION]}}, keep_trailing_newline=True)
    return environment.from_string(source).render(value=value)


@pytest.mark.parametrize("value", HOSTILE)
def test_python_string_reads_back_exactly(value: str) -> None:
    literal = render("{{ value | python_string }}", value)
    assert literal.isascii()
    assert ast.literal_eval(literal) == value
    module = ast.parse(f"{literal}\n")
    assert ast.get_docstring(module, clean=False) == value
    assert len(module.body) == 1


@pytest.mark.parametrize("value", HOSTILE)
def test_yaml_string_reads_back_exactly(value: str) -> None:
    document = yaml.safe_load(render("key: {{ value | yaml_string }}\nlist: [{{ value | yaml_string }}]\n", value))
    assert document == {"key": value, "list": [value]}


@pytest.mark.parametrize("value", [*HOSTILE, 8080, 99.9, True, None, ["a", {"b": "c\n"}]])
def test_json_value_reads_back_exactly(value: Any) -> None:
    assert json.loads(render('{"key": {{ value | json_value }}}', value)) == {"key": value}


@pytest.mark.parametrize("value", HOSTILE)
def test_toml_string_reads_back_exactly(value: str) -> None:
    assert tomllib.loads(render("key = {{ value | toml_string }}\n", value)) == {"key": value}


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_word_is_one_word_that_runs_nothing(value: str, tmp_path: Path) -> None:
    script = render("printf %s {{ value | shell_word }} > out", value)
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True, timeout=30)
    assert (tmp_path / "out").read_bytes().decode() == value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("value", ONE_LINE)
def test_make_shell_word_survives_make_and_the_shell(value: str, tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text(render("out:\n\t@printf %s {{ value | make_shell_word }} > out\n", value))
    subprocess.run(["make", "-s", "out"], cwd=tmp_path, check=True, timeout=30, capture_output=True)
    assert (tmp_path / "out").read_bytes().decode() == value


@pytest.mark.parametrize("filter_name", ["make_shell_word", "dockerfile_string", "markdown_code"])
def test_a_line_break_where_none_can_be_written_fails_the_render(filter_name: str) -> None:
    with pytest.raises(Exception, match="cannot contain a line break"):
        render(f"{{{{ value | {filter_name} }}}}", "two\nlines")


def inline_text(markdown: str) -> str | None:
    """The text of a one-paragraph CommonMark document; None if it holds any markup."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    if [t.type for t in tokens] != ["paragraph_open", "inline", "paragraph_close"]:
        return None
    children = tokens[1].children or []
    if any(child.type != "text" for child in children):
        return None
    return "".join(child.content for child in children)


@pytest.mark.parametrize("value", [v for v in HOSTILE if v.strip()])
def test_markdown_text_renders_as_the_value_and_nothing_else(value: str) -> None:
    text = render("{{ value | markdown_text }}", value)
    assert inline_text(text) == value
    assert html.unescape(text) == value
    assert inline_text(f"Intro: {text} outro.") == f"Intro: {value} outro."


@pytest.mark.parametrize("value", [v for v in ONE_LINE if v])
def test_markdown_code_is_one_code_span_of_the_value(value: str) -> None:
    tokens = MarkdownIt("commonmark").parse(render("Owner: {{ value | markdown_code }}.", value))
    spans = [child for child in tokens[1].children or [] if child.type == "code_inline"]
    assert [span.content for span in spans] == [value]


EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def github_evaluates(text: str) -> str:
    """GitHub's evaluation of a workflow string in which every expression must be a string literal."""

    def literal(match: re.Match[str]) -> str:
        source = match[1].strip()
        assert re.fullmatch(r"'(?:[^']|'')*'", source), f"a value opened the expression ${{{{{match[1]}}}}}"
        return source[1:-1].replace("''", "'")

    return EXPRESSION.sub(literal, text)


WORKFLOW = """\
name: ci
"on": push
permissions: {}
env:
  DESCRIPTION: {{ value | actions_string }}
jobs:
  show:
    runs-on: ubuntu-24.04
    steps:
      - name: {{ ("Show " ~ value) | actions_string }}
        run: printf '%s' "$DESCRIPTION"
"""


@pytest.mark.parametrize("value", HOSTILE)
def test_actions_string_opens_no_expression_in_a_workflow(value: str, tmp_path: Path) -> None:
    text = render(WORKFLOW, value)
    workflow = yaml.safe_load(text)
    assert github_evaluates(workflow["env"]["DESCRIPTION"]) == value
    assert github_evaluates(workflow["jobs"]["show"]["steps"][0]["name"]) == "Show " + value
    path = tmp_path / ".github" / "workflows" / "ci.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    linted = subprocess.run(
        [find_tool("actionlint"), "-no-color", "-shellcheck=", str(path)], capture_output=True, text=True, timeout=60
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_oracle_sees_a_raw_value_open_an_expression() -> None:
    with pytest.raises(AssertionError, match="opened the expression"):
        github_evaluates(yaml.safe_load(render("k: {{ value | yaml_string }}", "${{ secrets.X }}"))["k"])


# -- the golden template, over the HTTP API ----------------------------------------------------


def golden_client(tmp_path: Path) -> TestClient:
    settings = make_settings(tmp_path, templates_dir=PROJECT_ROOT / "cookiecutters", log_level="error")
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"})


def dry_render(client: TestClient, values: dict[str, Any]) -> dict[str, str]:
    response = client.post(
        "/v1/actions/cookiecutter:render/runs",
        json={"input": {"template": "python-service", "values": values}, "dryRun": True},
    )
    assert response.status_code == 200, response.text
    return {
        item["path"]: base64.b64decode(item["base64Content"]).decode()
        for item in response.json()["output"]["directoryContents"]
    }


def test_finding_1_a_description_cannot_run_code_when_the_package_is_imported(tmp_path: Path) -> None:
    description = 'x"""; __import__("os").system("id > pwned.txt"); """y'
    with golden_client(tmp_path) as client:
        files = dry_render(client, {"name": "users-api", "description": description})
    checkout = tmp_path / "checkout"
    for path, content in files.items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_text(content)
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, users_api; sys.stdout.write(users_api.__doc__)"],
        cwd=checkout / "src",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(checkout / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == description
    assert list(tmp_path.rglob("pwned.txt")) == []


def test_an_honest_description_is_data_in_every_file_and_in_the_catalog(tmp_path: Path) -> None:
    description = 'It\'s the "users" API \\ v2'
    with golden_client(tmp_path) as client:
        files = dry_render(client, {"name": "users-api", "description": description})
        created = client.post(
            "/v1/actions/service:create/runs",
            json={
                "input": {
                    "name": "users-api",
                    "owner": "group:default/platform-team",
                    "description": description,
                    "preview": False,
                }
            },
        )
        assert created.status_code == 200, created.text
        assert created.json()["status"] == "succeeded", created.json()
        entity = client.get("/api/catalog/entities/by-name/component/default/users-api").json()
    assert entity["metadata"]["description"] == description

    package = ast.parse(files["src/users_api/__init__.py"])
    assert ast.get_docstring(package, clean=False) == description
    app = ast.parse(files["src/users_api/app.py"])
    keywords = [k.value for n in ast.walk(app) if isinstance(n, ast.Call) for k in n.keywords if k.arg == "description"]
    assert [ast.literal_eval(k) for k in keywords] == [description]
    catalog = list(yaml.safe_load_all(files["catalog-info.yaml"]))
    assert catalog[0]["metadata"]["description"] == description
    assert yaml.safe_load(files["charts/users-api/Chart.yaml"])["description"] == description
    assert yaml.safe_load(files["mkdocs.yml"])["site_description"] == description
    assert tomllib.loads(files["pyproject.toml"])["project"]["description"] == description
    assert json.loads(files["docs/openapi.json"])["info"]["description"] == description
    assert json.loads(files[".cruft.json"])["context"]["cookiecutter"]["description"] == description
    for markdown in (files["README.md"], files["docs/index.md"]):
        paragraphs = markdown.split("\n\n")
        assert inline_text(paragraphs[1]) == description


def test_cookiecutter_itself_renders_the_golden_template_with_the_filters(tmp_path: Path) -> None:
    """Generated repositories carry .cruft.json, so plain cookiecutter (cruft) must render the template too."""
    description = 'It\'s the "users" API \\ v2'
    project = cookiecutter_render(
        PROJECT_ROOT / "cookiecutters" / "python-service", {"description": description}, tmp_path
    )
    docstring = ast.get_docstring(
        ast.parse((project / "src" / "payments_api" / "__init__.py").read_text()), clean=False
    )
    assert docstring == description
    component = next(yaml.safe_load_all((project / "catalog-info.yaml").read_text()))
    assert component["metadata"]["description"] == description
