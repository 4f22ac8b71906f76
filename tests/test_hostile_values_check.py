"""`pltf templates check --only hostile-values`: a value that changes what a generated file means is a finding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from test_cli import pltf

from actions_server.config import PROJECT_ROOT
from conftest import ROOT

UNSAFE_TEMPLATES = ROOT / "tests" / "fixtures" / "unsafe-templates"


def check(templates: Path, tmp_path: Path, *args: str) -> Any:
    env = {"PLTF_TEMPLATES_DIR": str(templates), "PLTF_DATA_DIR": str(tmp_path / "data"), "PLTF_URL": ""}
    return pltf("templates", "check", *args, "--only", "hostile-values", env=env)


def test_the_golden_template_keeps_every_value_data(tmp_path: Path) -> None:
    result = check(PROJECT_ROOT / "cookiecutters", tmp_path, "python-service", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["templates"] == {"python-service": []}
    measured = report["hostileValues"]["python-service"]
    # description is free text: it is rendered; name's pattern admits no hostile character.
    assert measured["renders"] >= 2 and measured["seconds"] > 0
    assert "description" not in measured["skipped"] and "name" in measured["skipped"]


def findings_by_file(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {finding["path"]: finding for finding in report["templates"]["raw-values"]}


def test_raw_interpolations_fail_naming_file_line_and_field(tmp_path: Path) -> None:
    result = check(UNSAFE_TEMPLATES, tmp_path, "raw-values", "--json")
    assert result.returncode == 1
    found = findings_by_file(json.loads(result.stdout))
    expected_lines = {
        "app.py": 3,
        "config.yaml": 2,
        "data.json": 1,
        "pyproject.toml": 3,
        "README.md": 3,
        "Dockerfile": 2,
        ".github/workflows/ci.yaml": 8,
    }
    assert {path: finding["line"] for path, finding in found.items()} == expected_lines
    assert {finding["field"] for finding in found.values()} == {"description"}
    assert all(finding["tool"] == "hostile-values" for finding in found.values())
    assert "not Python" in found["app.py"]["message"]
    assert "a YAML key and comment" in found["config.yaml"]["message"]
    # YAML-quoted, yet spliced into `run:`: the shell and GitHub's expressions see the value as code.
    assert "a GitHub Actions expression" in found[".github/workflows/ci.yaml"]["message"]
    assert "a command substitution" in found[".github/workflows/ci.yaml"]["message"]
    assert "a variable" in found["Dockerfile"]["message"]
    assert "Markdown markup" in found["README.md"]["message"]


def test_the_text_report_names_file_line_and_field(tmp_path: Path) -> None:
    result = check(UNSAFE_TEMPLATES, tmp_path, "raw-values")
    assert result.returncode == 1
    assert "ERROR [hostile-values] defaults: app.py: line 3: field 'description' with a double quote" in result.stdout
    assert "raw-values: FAILED (7 errors" in result.stdout
    assert "hostile-values: " in result.stderr and " renders in " in result.stderr


def test_a_value_that_cannot_reach_a_file_raw_is_not_a_finding(tmp_path: Path) -> None:
    """The same template with the Python file filtered: that file is clean, the others still fail."""
    template = tmp_path / "templates" / "raw-values"
    shutil.copytree(UNSAFE_TEMPLATES / "raw-values", template)
    app = template / "{{ cookiecutter.name }}" / "app.py"
    app.write_text(
        app.read_text().replace('"{{ cookiecutter.description }}"', "{{ cookiecutter.description | python_string }}")
    )
    result = check(template.parent, tmp_path, "raw-values", "--json")
    assert result.returncode == 1
    found = findings_by_file(json.loads(result.stdout))
    assert "app.py" not in found and "config.yaml" in found


def test_a_newline_is_tried_only_where_the_schema_admits_one(tmp_path: Path) -> None:
    template = tmp_path / "templates" / "raw-values"
    shutil.copytree(UNSAFE_TEMPLATES / "raw-values", template)
    config = template / "cookiecutter.json"
    context = json.loads(config.read_text())
    context["_pltf"]["schema"]["description"]["pattern"] = "^[^\\r\\n]*$"
    config.write_text(json.dumps(context))
    result = check(template.parent, tmp_path, "raw-values", "--json")
    messages = [finding["message"] for finding in json.loads(result.stdout)["templates"]["raw-values"]]
    assert messages and not any("a newline" in message for message in messages)
    unrestricted = json.loads(check(UNSAFE_TEMPLATES, tmp_path, "raw-values", "--json").stdout)
    assert any("a newline" in finding["message"] for finding in unrestricted["templates"]["raw-values"])
