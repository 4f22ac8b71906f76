"""An untrusted template cannot make the server import a module of its choosing through `_extensions`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actions_server.app import create_app
from conftest import FIXTURE_TEMPLATES, TOKEN, make_settings

RENDER = "/v1/actions/cookiecutter:render/runs"


def _repository(tmp_path: Path, extensions: list[str], files: dict[str, str] | None = None) -> Path:
    repo = tmp_path / "templates" / "greeter"
    repo.parent.mkdir()
    subprocess.run(["cp", "-r", str(FIXTURE_TEMPLATES / "hooked"), str(repo)], check=True)
    for name, text in (files or {}).items():
        (repo / "{{cookiecutter.name}}" / name).write_text(text)
    config = json.loads((repo / "cookiecutter.json").read_text())
    (repo / "cookiecutter.json").write_text(json.dumps({**config, "_extensions": extensions}))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "template"], check=True)
    return repo


@pytest.fixture
def planted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable module that leaves a mark when imported: what a hostile extension would run."""
    modules = tmp_path / "modules"
    modules.mkdir()
    sentinel = tmp_path / "imported"
    (modules / "pltf_planted.py").write_text(
        f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('ran')\n"
        "from jinja2.ext import Extension\nclass Planted(Extension):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(modules))
    # Imported afresh in each test, so each one sees whether its own render imported it.
    monkeypatch.delitem(sys.modules, "pltf_planted", raising=False)
    yield sentinel
    sys.modules.pop("pltf_planted", None)


@pytest.mark.parametrize("trusted", [False, True])
def test_only_trusted_templates_load_extensions_beyond_the_safe_ones(
    tmp_path: Path, planted_module: Path, trusted: bool
) -> None:
    repo = _repository(tmp_path, ["pltf_planted.Planted"])
    prefix = f"file://{tmp_path}/templates/"
    settings = make_settings(tmp_path, template_sources=[prefix], trusted_template_sources=[prefix] if trusted else [])
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        body = {"input": {"template": f"file://{repo}", "values": {"greeting": "hi"}}, "dryRun": True}
        response = client.post(RENDER, json=body)
    if trusted:
        assert response.status_code == 200, response.text
        assert planted_module.read_text() == "ran"
    else:
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert "pltf_planted.Planted" in error["message"] and error["fields"][0]["field"] == "template"
        assert not planted_module.exists()


def test_an_untrusted_template_may_use_the_value_filters(tmp_path: Path) -> None:
    repo = _repository(
        tmp_path,
        ["actions_server.template_filters.ValueFilters", "jinja2.ext.do"],
        {"quoted.py": "greeting = {{ cookiecutter.greeting | python_string }}\n"},
    )
    settings = make_settings(tmp_path, template_sources=[f"file://{tmp_path}/templates/"])
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        body = {"input": {"template": f"file://{repo}", "values": {"greeting": 'say "hi"'}}, "dryRun": True}
        response = client.post(RENDER, json=body)
    assert response.status_code == 200, response.text
    quoted = next(f for f in response.json()["output"]["directoryContents"] if f["path"].endswith("quoted.py"))
    assert base64.b64decode(quoted["base64Content"]).decode() == "greeting = 'say \"hi\"'\n"
    quoted = next(f for f in response.json()["output"]["directoryContents"] if f["path"].endswith("quoted.py"))
    assert base64.b64decode(quoted["base64Content"]).decode() == "greeting = 'say \"hi\"'\n"
