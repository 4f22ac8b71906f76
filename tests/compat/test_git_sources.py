"""Git template sources: `ref` as branch, tag, full or abbreviated commit, and `directory`, rendered as
cookiecutter renders them; a branch that moved is fetched again; untrusted sources skip hooks and say so."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_harness import archive_tree, differences, disk_tree, reference_render, write_template
from fastapi.testclient import TestClient

from actions_server.app import create_app
from conftest import TOKEN, make_settings

RENDER = "/v1/actions/cookiecutter:render/runs"
TEMPLATE = {
    "sub/cookiecutter.json": '{"name": "svc", "greeting": "hello {{ cookiecutter.name }}"}\n',
    "sub/hooks/post_gen_project.py": "open('hooked.txt', 'w').write('{{ cookiecutter.greeting }}\\n')\n",
    "sub/{{cookiecutter.name}}/VERSION": "one\n",
    "README.md": "not a template\n",
}


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, version: str) -> str:
    (repo / "sub" / "{{cookiecutter.name}}" / "VERSION").write_text(f"{version}\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", version)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    # "git" in the name: cookiecutter tells a git URL by it.
    repo = write_template(tmp_path / "sources" / "template.git", TEMPLATE)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    _git(repo, "tag", "-a", "v1", "-m", "first")
    return repo


def _client(tmp_path: Path, trusted: bool) -> Iterator[TestClient]:
    prefix = f"file://{tmp_path}/sources/"
    settings = make_settings(tmp_path, template_sources=[prefix], trusted_template_sources=[prefix] if trusted else [])
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
def trusted(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, trusted=True)


@pytest.fixture
def untrusted(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, trusted=False)


def _render(client: TestClient, repo: Path, ref: str | None, directory: str | None = "sub") -> tuple[str, dict]:
    body = {"template": f"file://{repo}", "ref": ref, "directory": directory, "values": {"name": "orders"}}
    response = client.post(RENDER, json={"input": body})
    assert response.status_code == 200, response.text
    archive = client.get(f"/v1/workspaces/{response.json()['output']['workspaceId']}/archive")
    return archive_tree(archive.content)


def test_refs_and_directory_render_as_cookiecutter_does(tmp_path: Path, repo: Path, trusted: TestClient) -> None:
    first = _git(repo, "rev-parse", "HEAD")
    _commit(repo, "two")
    refs = [None, "main", "v1", first, first[:7]]
    reference = reference_render(
        [
            {
                "id": str(ref),
                "template": f"file://{repo}",
                "checkout": ref,
                "directory": "sub",
                "values": {"name": "orders"},
                "output_dir": str(tmp_path / "reference" / str(ref)),
            }
            for ref in refs
        ],
        tmp_path / "cookiecutter",
    )
    versions = {}
    for ref in refs:
        directory, tree = _render(trusted, repo, ref)
        expected = Path(reference[str(ref)]["project"])
        assert directory == expected.name == "orders"
        assert differences(disk_tree(expected), tree) == [], ref
        assert tree["hooked.txt"][2] == b"hello orders\n"
        versions[ref] = tree["VERSION"][2]
    assert versions == {None: b"two\n", "main": b"two\n", "v1": b"one\n", first: b"one\n", first[:7]: b"one\n"}


def test_a_branch_that_moved_is_fetched_again_and_a_commit_is_cached(repo: Path, trusted: TestClient) -> None:
    first = _git(repo, "rev-parse", "HEAD")
    assert _render(trusted, repo, "main")[1]["VERSION"][2] == b"one\n"
    assert _render(trusted, repo, first)[1]["VERSION"][2] == b"one\n"
    _commit(repo, "two")
    assert _render(trusted, repo, "main")[1]["VERSION"][2] == b"two\n"
    assert _render(trusted, repo, None)[1]["VERSION"][2] == b"two\n"
    # A commit cannot move: once cloned, it renders without the remote.
    shutil.rmtree(repo)
    assert _render(trusted, repo, first)[1]["VERSION"][2] == b"one\n"
    gone = trusted.post(RENDER, json={"input": {"template": f"file://{repo}", "ref": "main", "directory": "sub"}})
    assert gone.status_code == 502 and gone.json()["error"]["code"] == "template_unavailable"


def test_a_ref_the_repository_does_not_have_is_refused(repo: Path, trusted: TestClient) -> None:
    for ref in ("no-such-branch", "deadbeef"):
        response = trusted.post(RENDER, json={"input": {"template": f"file://{repo}", "ref": ref, "directory": "sub"}})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["fields"][0]["field"] == "ref"
    wrong_directory = trusted.post(RENDER, json={"input": {"template": f"file://{repo}", "directory": "nowhere"}})
    assert wrong_directory.status_code == 422
    assert wrong_directory.json()["error"]["fields"][0]["field"] == "directory"


def test_an_untrusted_source_skips_hooks_and_the_log_says_which_and_how_to_run_them(
    repo: Path, untrusted: TestClient
) -> None:
    response = untrusted.post(RENDER, json={"input": {"template": f"file://{repo}", "directory": "sub"}})
    assert response.status_code == 200, response.text
    run = response.json()
    skipped = [line["message"] for line in run["log"] if "hook" in line["message"]]
    assert skipped == [
        "skipped the template's hooks post_gen_project: its source is not trusted "
        "(list it in PLTF_TRUSTED_TEMPLATE_SOURCES to run them)"
    ]
    assert "hooked.txt" not in run["output"]["files"]
