"""`pltf backstage template`: Backstage Templates generated from cookiecutters, and the checked-in ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from actions_server.backstage_template import TemplateOptions, generate, load_cookiecutter, render
from actions_server.cli import app
from actions_server.errors import PltfError
from conftest import ROOT

COOKIECUTTERS = ROOT / "cookiecutters"
CHECKED_IN = ROOT / "backstage-templates"
REGENERATE = "pltf backstage template cookiecutters/{name} -o backstage-templates/{name}.yaml"


def properties(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {key: value for page in document["spec"]["parameters"] for key, value in page["properties"].items()}


def write_cookiecutter(tmp_path: Path, context: dict[str, Any], name: str = "tiny-service") -> Path:
    directory = tmp_path / name
    (directory / "{{cookiecutter.name}}").mkdir(parents=True)
    (directory / "{{cookiecutter.name}}" / "README.md").write_text("# {{ cookiecutter.name }}\n")
    (directory / "cookiecutter.json").write_text(json.dumps(context))
    return directory


@pytest.mark.parametrize("cookiecutter", sorted(p.name for p in COOKIECUTTERS.iterdir() if (p / "cookiecutter.json").is_file()))
def test_checked_in_templates_are_current(cookiecutter: str) -> None:
    """Each cookiecutter has a Create button, regenerated whenever the cookiecutter changes."""
    checked_in = CHECKED_IN / f"{cookiecutter}.yaml"
    command = REGENERATE.format(name=cookiecutter)
    assert checked_in.is_file(), f"no Backstage template for cookiecutters/{cookiecutter}; run: {command}"
    expected = render(load_cookiecutter(COOKIECUTTERS / cookiecutter))
    assert checked_in.read_text() == expected, f"backstage-templates/{cookiecutter}.yaml is stale; run: {command}"


def test_every_checked_in_template_comes_from_a_cookiecutter() -> None:
    for path in CHECKED_IN.glob("*.yaml"):
        assert (COOKIECUTTERS / path.stem / "cookiecutter.json").is_file(), f"{path.name} has no cookiecutter"


def test_golden_template_form_and_steps() -> None:
    document = yaml.safe_load((CHECKED_IN / "python-service.yaml").read_text())
    assert document["apiVersion"] == "scaffolder.backstage.io/v1beta3" and document["kind"] == "Template"
    fields = properties(document)
    name = fields["name"]
    assert name["maxLength"] <= 63 and re.compile(name["pattern"]).match("users-api")
    assert not re.compile(name["pattern"]).match("Users_API")
    assert fields["owner"]["ui:field"] == "OwnerPicker"
    assert fields["system"]["ui:field"] == "EntityPicker"
    assert fields["repoUrl"]["ui:field"] == "RepoUrlPicker"
    assert fields["preview"] == {**fields["preview"], "type": "boolean", "default": True}
    assert fields["database"]["enum"] == ["none", "postgres"] and fields["database"]["default"] == "none"
    assert fields["http_port"]["type"] == "integer" and fields["http_port"]["minimum"] == 1024
    assert fields["python_version"]["description"] == "Python version of the image and CI"

    create, register = document["spec"]["steps"]
    assert create["action"] == "http:backstage:request"
    assert create["input"]["path"] == "/proxy/pltf/v1/actions/service:create/runs"
    assert "${{ context.task.id }}" in create["input"]["headers"]["idempotency-key"]
    assert create["input"]["timeout"] > 50_000, "longer than the server's own 50 s wait"
    assert register["action"] == "catalog:register"
    assert register["input"]["catalogInfoUrl"] == "${{ steps.create.output.body.output.catalogInfoUrl }}"
    titles = {link["title"] for link in document["spec"]["output"]["links"]}
    assert {"Repository", "Open in catalog", "Preview", "pltf run log"} <= titles


def test_every_value_is_sent_with_its_default() -> None:
    """The REST API applies no form defaults, so the step carries them."""
    document = yaml.safe_load((CHECKED_IN / "python-service.yaml").read_text())
    fields = properties(document)
    body = document["spec"]["steps"][0]["input"]["body"]["input"]
    sent = {**body["values"], **{k: v for k, v in body.items() if k != "values"}}
    for key, field in fields.items():
        assert key in sent, f"{key} is not sent to service:create"
        if "default" in field and key != "system":
            assert "| default(" in sent[key], f"{key} has no | default() in the step"
    assert "default(" not in sent["alert_target"], "a derived default is left to pltf"
    assert "default" not in fields["alert_target"]


def test_types_choices_descriptions_and_pattern_from_cookiecutter_json(tmp_path: Path) -> None:
    directory = write_cookiecutter(
        tmp_path,
        {
            "name": "svc",
            "owner": "group:default/team",
            "replicas": 2,
            "ratio": 0.5,
            "public": False,
            "flavour": ["vanilla", "chocolate"],
            "slug": "{{ cookiecutter.name }}-slug",
            "_private": "hidden",
            "__prompts__": {"replicas": "How many pods"},
            "_pltf": {"schema": {"name": {"pattern": "^[a-z]+$", "maxLength": 20}, "replicas": {"maximum": 9}}},
        },
    )
    document = generate(load_cookiecutter(directory))
    fields = properties(document)
    assert fields["name"]["pattern"] == "^[a-z]+$" and fields["name"]["maxLength"] == 20
    assert "default" not in fields["name"], "every service needs its own name"
    assert fields["replicas"] == {
        "title": "Replicas", "type": "integer", "description": "How many pods", "default": 2, "maximum": 9,
    }
    assert fields["ratio"]["type"] == "number" and fields["public"]["type"] == "boolean"
    assert fields["public"]["default"] is False
    assert fields["flavour"]["enum"] == ["vanilla", "chocolate"] and fields["flavour"]["default"] == "vanilla"
    assert "default" not in fields["slug"] and "derive" in fields["slug"]["description"]
    assert "_private" not in fields and "__prompts__" not in fields
    values = document["spec"]["steps"][0]["input"]["body"]["input"]["values"]
    assert values["public"] == "${{ parameters.public | default(false) }}"
    assert values["flavour"] == '${{ parameters.flavour | default("vanilla") }}'
    assert values["slug"] == "${{ parameters.slug }}"
    assert "system" not in document["spec"]["steps"][0]["input"]["body"]["input"]


def test_a_name_without_a_pattern_gets_the_dns_label_rule(tmp_path: Path) -> None:
    directory = write_cookiecutter(tmp_path, {"name": "svc", "owner": "group:default/team"})
    name = properties(generate(load_cookiecutter(directory)))["name"]
    assert name["maxLength"] == 63
    assert re.compile(name["pattern"]).match("a-b") and not re.compile(name["pattern"]).match("-a")


def test_options(tmp_path: Path) -> None:
    directory = write_cookiecutter(tmp_path, {"name": "svc"})
    options = TemplateOptions(name="svc-template", owner="group:default/devex", repo_hosts=["git.example.com"])
    document = generate(load_cookiecutter(directory), options)
    assert document["metadata"]["name"] == "svc-template" and document["spec"]["owner"] == "group:default/devex"
    assert properties(document)["repoUrl"]["ui:options"] == {"allowedHosts": ["git.example.com"]}


def test_a_directory_without_cookiecutter_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PltfError, match="cookiecutter.json"):
        load_cookiecutter(tmp_path)
    (tmp_path / "cookiecutter.json").write_text("{nope")
    with pytest.raises(PltfError, match="not valid JSON"):
        load_cookiecutter(tmp_path)


def test_cli_writes_the_template(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "python-service.yaml"
    result = runner.invoke(app, ["backstage", "template", str(COOKIECUTTERS / "python-service"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == (CHECKED_IN / "python-service.yaml").read_text()
    printed = runner.invoke(app, ["backstage", "template", str(COOKIECUTTERS / "python-service")])
    assert printed.exit_code == 0 and printed.stdout == out.read_text()
