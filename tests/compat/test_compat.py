"""Differential suite: every case rendered by cookiecutter (the pinned version, its Python API) and by pltf
(a running server, through the HTTP API), trees, bytes and file modes compared.

The cases are the templates cookiecutter's own test suite uses, taken at test time from the sdist of the
installed version and rendered with their defaults, and our templates for every feature pltf must match
(compat_fixtures.py), with values. The only differences allowed are the documented values-as-data ones.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from compat_fixtures import CASES, Case
from compat_harness import (
    PINNED,
    Outcome,
    Tree,
    cookiecutter_test_templates,
    differences,
    disk_tree,
    own_templates,
    pltf_render,
    reference_render,
    template_name,
)

from conftest import TOKEN, ServerProcess

# What cookiecutter's test templates must show: the same tree, or a refusal on both sides.
AS_COOKIECUTTER = "as cookiecutter"
RANDOM = {("cc-test-extensions--default", "id")}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
# One xdist worker for the module: `compared` (pip download of cookiecutter's sdist, then every case rendered
# twice) takes ~18 s, and each worker a test lands on would build it again (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("compat")


@dataclass
class Compared:
    case: Case
    reference: dict[str, str]
    reference_tree: Tree | None
    pltf: Outcome

    @property
    def verdict(self) -> str:
        """identical, refused (both), values-as-data, or what is wrong."""
        if "error" in self.reference:
            if self.pltf.status == 200:
                return f"cookiecutter refused ({self.reference['error']}) and pltf rendered"
            error = self.pltf.error or {}
            if not 400 <= self.pltf.status < 500 or not str(error.get("message", "")).strip():
                return f"pltf refused with {self.pltf.status} {error} (cookiecutter: {self.reference['error']})"
            if self.case.message and self.case.message not in error["message"]:
                return f"pltf's error does not say {self.case.message!r}: {error['message']}"
            return "refused"
        if self.pltf.tree is None:
            return f"cookiecutter rendered and pltf refused: {self.pltf.status} {self.pltf.error}"
        name = Path(self.reference["project"]).name
        if self.pltf.directory != name:
            return f"project directory {self.pltf.directory!r}, cookiecutter's {name!r}"
        assert self.reference_tree is not None
        found = [line for line in differences(self.reference_tree, self.pltf.tree) if not _random(self.case, line)]
        if not found:
            return "identical"
        if self.case.expect == "values-as-data" and {line.split(":")[0] for line in found} == set(self.case.differs):
            return "values-as-data"
        return "; ".join(found)


def _random(case: Case, difference: str) -> bool:
    """Two random UUIDs differ: cookiecutter's default-extensions template renders `{{ uuid4() }}`."""
    path, _, rest = difference.partition(": content ")
    return (case.template, path) in RANDOM and len(UUID.findall(rest)) == 2


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Compared]]:
    root = tmp_path_factory.mktemp("compat")
    templates = root / "templates"
    templates.mkdir()
    cases = []
    for relative, path in cookiecutter_test_templates(root / "sdist").items():
        shutil.copytree(path, templates / template_name(relative), symlinks=True)
        cases.append(Case(f"cookiecutter's tests/{relative}", template_name(relative), expect=AS_COOKIECUTTER))
    own_templates(templates)
    cases += CASES
    reference = reference_render(
        [
            {
                "id": str(number),
                "template": str(templates / case.template),
                "values": case.values,
                "output_dir": str(root / "reference" / str(number)),
            }
            for number, case in enumerate(cases)
        ],
        root / "cookiecutter",
    )
    env = {"PLTF_DATA_DIR": str(root / "data"), "PLTF_TEMPLATES_DIR": str(templates), "PLTF_API_TOKEN": TOKEN}
    server = ServerProcess(env, root / "server.log").start()
    try:
        with server.client() as client:
            results = []
            for number, case in enumerate(cases):
                outcome = pltf_render(client, {"template": case.template, "values": case.values})
                expected = reference[str(number)]
                tree = disk_tree(Path(expected["project"])) if "project" in expected else None
                results.append(Compared(case, expected, tree, outcome))
    finally:
        server.stop()
    yield results


def test_every_case_renders_as_cookiecutter_does(compared: list[Compared], capsys: pytest.CaptureFixture[str]) -> None:
    verdicts = {item.case.name: item.verdict for item in compared}
    counts = Counter(v if v in ("identical", "refused", "values-as-data") else "wrong" for v in verdicts.values())
    with capsys.disabled():
        print(
            f"\ncompat with cookiecutter {PINNED}: {len(compared)} cases compared, "
            f"{counts['identical']} identical, {counts['refused']} refused by both, "
            f"{counts['values-as-data']} differing by design (values as data), {counts['wrong']} wrong"
        )
    wrong = {
        name: verdict for name, verdict in verdicts.items() if verdict not in ("identical", "refused", "values-as-data")
    }
    assert not wrong, "\n".join(f"{name}: {verdict}" for name, verdict in wrong.items())
    for item in compared:
        if item.case.expect in ("identical", "refused", "values-as-data"):
            assert item.verdict == item.case.expect, f"{item.case.name}: {item.verdict}"
        if item.verdict == "identical":  # not two empty trees
            assert item.pltf.tree and any(kind == "file" for kind, _, _ in item.pltf.tree.values()), item.case.name


def test_cookiecutters_own_templates_are_all_there(compared: list[Compared]) -> None:
    ours = [item for item in compared if item.case.expect == AS_COOKIECUTTER]
    # cookiecutter 2.x's suite has more than twenty templates with a cookiecutter.json; most render.
    assert len(ours) >= 20
    assert sum(item.verdict == "identical" for item in ours) >= 10


def test_a_value_with_template_syntax_is_written_as_sent(compared: list[Compared]) -> None:
    (item,) = [item for item in compared if item.case.expect == "values-as-data"]
    assert item.pltf.tree is not None and item.reference_tree is not None
    assert item.pltf.tree["motto.txt"][2] == b"{{ 7 * 7 }}\n{{ 7 * 7 }}!\n"
    assert item.reference_tree["motto.txt"][2] == b"49\n49!\n"
    assert item.pltf.tree["same.txt"] == item.reference_tree["same.txt"]
