"""The values schema a template derives from its cookiecutter.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from actions_server.errors import PltfError
from actions_server.templates.catalog import TemplateCatalog
from conftest import make_settings


@pytest.fixture
def catalog(tmp_path: Path) -> TemplateCatalog:
    return TemplateCatalog(make_settings(tmp_path))


def test_schema_types_follow_defaults(catalog: TemplateCatalog) -> None:
    schema = catalog.get("demo").values_schema
    props = schema["properties"]
    assert props["name"]["type"] == "string" and props["name"]["maxLength"] == 63
    assert props["name"]["description"] == "Service name"
    assert props["port"]["type"] == "integer" and props["port"]["default"] == 8080
    assert props["public"]["type"] == "boolean"
    assert props["database"]["enum"] == ["none", "postgres"] and props["database"]["default"] == "none"
    assert props["slug"]["x-derived"] is True
    assert "_private" not in props and "__prompts__" not in props and "_pltf" not in props
    assert schema["additionalProperties"] is False


def test_only_values_the_caller_set_are_kept(catalog: TemplateCatalog) -> None:
    template = catalog.get("demo")
    assert template.validate_values({"port": "9000", "public": "true"}) == {"port": 9000, "public": True}


def test_private_and_unknown_keys_are_refused(catalog: TemplateCatalog) -> None:
    template = catalog.get("demo")
    with pytest.raises(PltfError) as caught:
        template.validate_values({"_private": "x", "database": "mysql"})
    assert {f.field for f in caught.value.fields} == {"values._private", "values.database"}


def test_git_sources_must_be_allow_listed(tmp_path: Path) -> None:
    catalog = TemplateCatalog(make_settings(tmp_path, template_sources=["https://git.example.com/templates/"]))
    with pytest.raises(PltfError) as caught:
        catalog.get("https://evil.example.com/t.git")
    assert caught.value.status == 422 and caught.value.fields[0].field == "template"
    with pytest.raises(PltfError) as bad_ref:
        catalog.get("https://git.example.com/templates/t.git", ref="--upload-pack=touch /tmp/x")
    assert bad_ref.value.fields[0].field == "ref"
