"""The shared GitOps repository: plan writes nothing, apply is one commit or none, races are retried."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from actions_server.config import Settings
from actions_server.errors import PltfError
from actions_server.forges.base import GitAuthor
from actions_server.gitops import Changes, GitOpsRepository
from actions_server.redact import Redactor
from conftest import make_settings

AUTHOR = GitAuthor("test", "test@example.com")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def bare(settings: Settings) -> Path:
    return settings.storage.data_dir / "git" / "platform" / "gitops.git"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def test_plan_writes_nothing_and_apply_commits_once(settings: Settings) -> None:
    repo = GitOpsRepository.from_settings(settings, Redactor())
    changes = Changes({"envs/prod/a/namespace.yaml": "kind: Namespace\n"}, replace=("envs/prod/a",))

    diff = repo.plan(changes)
    assert "+++ b/envs/prod/a/namespace.yaml" in diff and "+kind: Namespace" in diff
    assert not bare(settings).exists(), "a plan must not create the repository"

    sha = repo.apply(changes, "first", AUTHOR)
    assert sha is not None
    assert git(bare(settings), "rev-parse", "main").strip() == sha
    assert git(bare(settings), "show", "main:envs/prod/a/namespace.yaml") == "kind: Namespace\n"
    assert repo.url.endswith("/git/platform/gitops.git")

    assert repo.apply(changes, "again", AUTHOR) is None
    assert repo.plan(changes) == ""
    assert git(bare(settings), "rev-list", "--count", "main").strip() == "1"


def test_replace_deletes_files_no_longer_written(settings: Settings) -> None:
    repo = GitOpsRepository.from_settings(settings, Redactor())
    repo.apply(Changes({"envs/dev/a/x.yaml": "x\n", "envs/dev/a/y.yaml": "y\n", "other/z": "z\n"}), "two", AUTHOR)
    changes = Changes({"envs/dev/a/x.yaml": "x2\n"}, replace=("envs/dev/a",))
    diff = repo.diff(changes)
    assert {(f.path, f.status) for f in diff.files} == {
        ("envs/dev/a/x.yaml", "modified"),
        ("envs/dev/a/y.yaml", "deleted"),
    }
    repo.apply(changes, "replace", AUTHOR)
    assert git(bare(settings), "ls-tree", "-r", "--name-only", "main").split() == ["envs/dev/a/x.yaml", "other/z"]


def test_a_push_that_loses_a_race_is_retried_on_the_new_head(settings: Settings, tmp_path: Path) -> None:
    repo = GitOpsRepository.from_settings(settings, Redactor())
    repo.apply(Changes({"README": "gitops\n"}), "init", AUTHOR)
    # Another writer (another replica, with its own clone) pushes between our fetch and our push.
    other = GitOpsRepository(make_settings(tmp_path / "other"), Redactor(), remote=str(bare(settings)))
    real_push = GitOpsRepository._push
    calls: list[int] = []

    def racing_push(self: GitOpsRepository, author: GitAuthor) -> bool:
        if self is repo and not calls:
            calls.append(1)
            other.apply(Changes({"previews/p/ns.yaml": "p\n"}), "someone else", AUTHOR)
        return real_push(self, author)

    GitOpsRepository._push = racing_push  # type: ignore[method-assign]
    try:
        sha = repo.apply(Changes({"envs/prod/a/ns.yaml": "a\n"}), "mine", AUTHOR)
    finally:
        GitOpsRepository._push = real_push  # type: ignore[method-assign]
    assert calls == [1]
    log = git(bare(settings), "log", "--format=%s", "main").split("\n")
    assert log[:3] == ["mine", "someone else", "init"]
    assert git(bare(settings), "rev-parse", "main").strip() == sha
    files = git(bare(settings), "ls-tree", "-r", "--name-only", "main").split()
    assert files == ["README", "envs/prod/a/ns.yaml", "previews/p/ns.yaml"]


def test_credentials_stay_out_of_urls_and_git_config(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(PltfError, match="must not carry credentials"):
        GitOpsRepository(settings, Redactor(), remote="https://user:secret-token@git.example.com/gitops.git")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    redactor = Redactor()
    repo = GitOpsRepository(settings, redactor, remote=str(remote), authorization="Bearer s3cret-gitops-token")
    repo.apply(Changes({"a": "a\n"}), "one", AUTHOR)
    config = (repo.workdir / ".git" / "config").read_text()
    assert "s3cret" not in config and "remote" not in config
    assert redactor("token s3cret-gitops-token") == "token ***"


def test_paths_must_stay_inside_the_repository() -> None:
    for path in ("../x", "/etc/passwd", ".git/config", ""):
        with pytest.raises(PltfError):
            Changes({path: "x"})


def test_config_applies_to_every_writer(settings: Settings, tmp_path: Path, monkeypatch: Any) -> None:
    remote = tmp_path / "elsewhere.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    settings = settings.replace(gitops_url=str(remote))
    repo = GitOpsRepository.from_settings(settings, Redactor())
    assert repo.url == str(remote)
    repo.apply(Changes({"x": "1\n"}), "x", AUTHOR)
    assert git(remote, "show", "main:x") == "1\n"
    assert not bare(settings).exists()
