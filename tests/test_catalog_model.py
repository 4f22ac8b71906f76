"""Entity validation, refs, relations and YAML reading, and agreement with Backstage's own validator.

The agreement test runs `@backstage/catalog-model` (tools/validators, installed
by `.ci/install-validators`) over every file in tests/fixtures/catalog/ and
checks that it and our validator give the same verdict on each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions_server.catalog.model import (
    EntityRef,
    RefError,
    load_documents,
    parse_ref,
    relations_of,
    validate_entity,
    with_defaults,
)
from actions_server.config import PROJECT_ROOT
from conftest import need

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "catalog"
VALIDATORS = PROJECT_ROOT / "tools" / "validators"
GOOD = sorted((FIXTURES / "good").glob("*.yaml"))
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))


def ours(path: Path) -> list[str]:
    """Our verdict on a fixture: the problems, [] when valid."""
    try:
        documents = load_documents(path.read_text())
    except yaml.YAMLError as exc:
        return [f"YAML: {exc}"]
    return [f"{e.field}: {e.message}" for doc in documents for e in validate_entity(doc)]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_fixtures_are_valid(path: Path) -> None:
    assert ours(path) == []


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixtures_are_invalid(path: Path) -> None:
    assert ours(path) != []


def component(**changes: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "users-api"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "platform-team"},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = entity
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return entity


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metadata__name": "Users API!"}, "metadata.name"),
        ({"metadata__name": "a" * 64}, "metadata.name"),
        ({"metadata__namespace": "Prod"}, "metadata.namespace"),
        ({"spec__owner": None}, "spec.owner"),
        ({"spec__providesApis": ["ok", ""]}, "spec.providesApis.1"),
        ({"metadata__tags": ["ok", "Not_OK"]}, "metadata.tags.1"),
        ({"metadata__links": [{"title": "x"}]}, "metadata.links.0.url"),
        ({"metadata__annotations": {"example.com/port": 80}}, "metadata.annotations.example.com/port"),
        ({"kind": "Widget"}, "kind"),
        ({"apiVersion": "backstage.io/v9"}, "apiVersion"),
        ({"extra": 1}, "extra"),
    ],
)
def test_each_error_names_its_field(changes: dict[str, Any], field: str) -> None:
    assert field in [e.field for e in validate_entity(component(**changes))]


def test_all_problems_are_reported_at_once() -> None:
    errors = validate_entity(component(metadata__name="bad name", spec__owner=None, spec__type=None))
    assert {"metadata.name", "spec.owner", "spec.type"} <= {e.field for e in errors}


def test_namespace_defaults_and_refs_are_lowercase() -> None:
    entity = with_defaults(component(metadata__name="Users-API"))
    assert entity["metadata"]["namespace"] == "default"
    assert str(EntityRef.of(entity)) == "component:default/users-api"


@pytest.mark.parametrize(
    ("text", "default_kind", "expected"),
    [
        ("group:default/platform-team", None, "group:default/platform-team"),
        ("platform-team", "Group", "group:default/platform-team"),
        ("ops/platform-team", "Group", "group:ops/platform-team"),
        ("api:payments-api", None, "api:default/payments-api"),
    ],
)
def test_parse_ref(text: str, default_kind: str | None, expected: str) -> None:
    assert str(parse_ref(text, default_kind)) == expected


def test_a_ref_without_kind_and_no_default_is_refused() -> None:
    with pytest.raises(RefError):
        parse_ref("users-db")


def test_relations_come_in_pairs_with_defaults_from_the_entity() -> None:
    entity = with_defaults(
        component(
            metadata__namespace="payments",
            spec__system="pltf",
            spec__providesApis=["payments-api"],
            spec__dependsOn=["resource:payments-db"],
        )
    )
    pairs = {(r.source, r.type, r.target) for r in relations_of(entity).relations}
    me = "component:payments/users-api"
    assert (me, "ownedBy", "group:payments/platform-team") in pairs
    assert ("group:payments/platform-team", "ownerOf", me) in pairs
    assert (me, "partOf", "system:payments/pltf") in pairs
    assert ("system:payments/pltf", "hasPart", me) in pairs
    assert (me, "providesApi", "api:payments/payments-api") in pairs
    assert ("api:payments/payments-api", "apiProvidedBy", me) in pairs
    assert (me, "dependsOn", "resource:payments/payments-db") in pairs


def test_depends_on_needs_a_kind_as_in_backstage() -> None:
    found = relations_of(with_defaults(component(spec__dependsOn=["payments-db"])))
    assert [e.field for e in found.errors] == ["spec.dependsOn.0"]


def test_group_and_user_relations() -> None:
    group = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "team", "namespace": "default"},
        "spec": {"type": "team", "parent": "org", "children": ["sub"], "members": ["alice"]},
    }
    pairs = {(r.source, r.type, r.target) for r in relations_of(group).relations}
    assert ("group:default/team", "childOf", "group:default/org") in pairs
    assert ("group:default/team", "parentOf", "group:default/sub") in pairs
    assert ("group:default/team", "hasMember", "user:default/alice") in pairs
    assert ("user:default/alice", "memberOf", "group:default/team") in pairs


def test_yaml_is_read_as_backstage_reads_it() -> None:
    (doc,) = load_documents("name: on\nother: yes\ndate: 2024-01-01\nflag: true\nport: 8080\nsexagesimal: 1:20\n")
    assert doc == {
        "name": "on",
        "other": "yes",
        "date": "2024-01-01",
        "flag": True,
        "port": 8080,
        "sexagesimal": "1:20",
    }
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        load_documents("a: 1\na: 2\n")
    assert load_documents("---\n---\nkind: x\n") == [{"kind": "x"}]


# -- agreement with @backstage/catalog-model ----------------------------------------


def node_with_catalog_model() -> str:
    node = shutil.which("node")
    need(
        node is not None and (VALIDATORS / "node_modules" / "@backstage" / "catalog-model").is_dir(),
        "node and tools/validators/node_modules (run .ci/install-validators)",
    )
    assert node is not None
    return node


def backstage_verdicts(paths: list[Path]) -> dict[str, Any]:
    node = node_with_catalog_model()
    done = subprocess.run(
        [node, str(VALIDATORS / "validate-entities.js"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_our_validator_and_backstages_agree_on_every_fixture() -> None:
    paths = GOOD + BAD
    report = backstage_verdicts(paths)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for result in report["results"]:
        by_file.setdefault(result["file"], []).append(result)
    disagreements, unchecked = [], []
    for path in paths:
        results = by_file[str(path)]
        if not all(r["kindChecked"] for r in results):
            unchecked.append(path.stem)
            continue
        backstage_ok = all(r["ok"] for r in results)
        our_problems = ours(path)
        if backstage_ok != (our_problems == []):
            disagreements.append(f"{path.parent.name}/{path.name}: backstage={results} ours={our_problems}")
    assert disagreements == []
    # Without @backstage/plugin-scaffolder-common, Backstage's side cannot check a Template's spec.
    assert set(unchecked) <= {p.stem for p in paths if "template" in p.stem}
    assert len(paths) - len(unchecked) >= 55


def test_template_fixtures_agree_with_scaffolder_common() -> None:
    paths = [p for p in GOOD + BAD if "template" in p.stem]
    report = backstage_verdicts(paths)
    need(report["templateValidator"], "@backstage/plugin-scaffolder-common in tools/validators")
    for result in report["results"]:
        path = Path(result["file"])
        assert result["ok"] == (ours(path) == []), result


def test_the_validators_report_a_broken_scaffolder_common_instead_of_skipping_templates(tmp_path: Path) -> None:
    node = node_with_catalog_model()
    (tmp_path / "backstage-entities.js").write_text((VALIDATORS / "backstage-entities.js").read_text())
    scoped = tmp_path / "node_modules" / "@backstage"
    scoped.mkdir(parents=True)
    (scoped / "catalog-model").symlink_to(VALIDATORS / "node_modules" / "@backstage" / "catalog-model")
    broken = scoped / "plugin-scaffolder-common"
    broken.mkdir()
    (broken / "package.json").write_text(
        json.dumps({"name": "@backstage/plugin-scaffolder-common", "main": "index.js"})
    )
    (broken / "index.js").write_text("require('@backstage/a-dependency-that-was-not-installed');\n")
    load = [node, "-e", "console.log(require('./backstage-entities.js').hasTemplateValidator)"]

    done = subprocess.run(load, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0, done.stdout
    assert "Cannot find module '@backstage/a-dependency-that-was-not-installed'" in done.stderr

    # Not installed at all is allowed: Templates then get the policies only, and say so.
    shutil.rmtree(broken)
    done = subprocess.run(load, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "false\n"), done.stderr
