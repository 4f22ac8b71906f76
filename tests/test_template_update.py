"""template:update against a real server: services made from version 1 of a template, each edited with a
real `git push`, then version 2 merged into each as a change request on the embedded forge."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_forge_embedded import AUTH_HEADER, git

import conftest
from actions_server.auth import hash_token
from conftest import TOKEN, ServerProcess, assert_documented, get_documented

APP_V1 = "import os\n\nVERSION = 1\nNAME = '{{ cookiecutter.name }}'\nPORT = 8080\n\n\ndef main():\n    print(NAME)\n"
CONFIG_V1 = "replicas: 1\nmemory: 256Mi\ncpu: 100m\nlogLevel: info\n"
GUIDE = "# Guide\n\nHow to run {{ cookiecutter.name }}.\n"
CATALOG_INFO = """apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {{ cookiecutter.name }}
  annotations:
    pltf.dev/template-version: "{{ cookiecutter._pltf.version }}"
spec:
  type: service
  lifecycle: production
  owner: {{ cookiecutter.owner }}
"""


def write_template(root: Path, version: str, files: dict[str, str], migrations: list[Any] | None = None) -> None:
    """The template `svc` at `version`: its directory replaced, as an author editing it in place would."""
    template = root / "svc"
    shutil.rmtree(template, ignore_errors=True)
    project = template / "{{cookiecutter.name}}"
    project.mkdir(parents=True)
    meta: dict[str, Any] = {"version": version, **({"migrations": migrations} if migrations else {})}
    context = {"name": "svc", "owner": "group:default/team-a", "tier": "bronze", "_pltf": meta}
    (template / "cookiecutter.json").write_text(json.dumps(context))
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)


V1 = {
    "app.py": APP_V1,
    "config.yaml": CONFIG_V1,
    "old.txt": "legacy\n",
    "docs/guide.md": GUIDE,
    "catalog-info.yaml": CATALOG_INFO,
}
V2 = {
    "app.py": APP_V1.replace("VERSION = 1", "VERSION = 2"),
    "config.yaml": CONFIG_V1.replace("replicas: 1", "replicas: 2"),
    "docs/handbook.md": GUIDE,
    "Dockerfile": "FROM python:3.12-slim\n",
    "catalog-info.yaml": CATALOG_INFO,
}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    write_template(root, "1", V1)
    return root


@pytest.fixture
def server(server_env: dict[str, str], templates: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess({**server_env, "PLTF_TEMPLATES_DIR": str(templates)}, tmp_path / "server.log").start()
    yield process
    process.stop()


def pltf(*args: str, server: ServerProcess) -> subprocess.CompletedProcess[str]:
    return conftest.pltf(*args, env={"PLTF_URL": server.url, "PLTF_API_TOKEN": TOKEN}, timeout=300)


def run(client: httpx.Client, action: str, params: dict[str, Any]) -> httpx.Response:
    return client.post(f"/v1/actions/{action}/runs", json={"input": params})


def make_service(client: httpx.Client, name: str, **extra: Any) -> str:
    rendered = run(client, "cookiecutter:render", {"template": "svc", "values": {"name": name}})
    assert rendered.status_code == 200, rendered.text
    created = run(
        client,
        "repo:create",
        {"workspaceId": rendered.json()["output"]["workspaceId"], "owner": "team-a", "name": name, **extra},
    )
    assert created.status_code == 200, created.text
    return str(created.json()["output"]["remoteUrl"])


def push_edit(remote: str, checkout: Path, edit: Any) -> None:
    assert git("clone", "--quiet", remote, str(checkout), authorization=AUTH_HEADER).returncode == 0
    edit(checkout)
    assert git("add", "--all", ".", cwd=checkout).returncode == 0
    assert git("commit", "--quiet", "-m", "service edit", cwd=checkout).returncode == 0
    pushed = git("push", "--quiet", "origin", "HEAD:main", cwd=checkout, authorization=AUTH_HEADER)
    assert pushed.returncode == 0, pushed.stderr


def replace_in(path: str, old: str, new: str) -> Any:
    def edit(checkout: Path) -> None:
        target = checkout / path
        assert old in target.read_text()
        target.write_text(target.read_text().replace(old, new))

    return edit


def test_a_recorded_render_names_a_commit_pltf_can_render_again(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        remote = make_service(client, "recorded")
    git("clone", "--quiet", remote, str(tmp_path / "c"), authorization=AUTH_HEADER)
    recorded = json.loads((tmp_path / "c" / ".cruft.json").read_text())
    assert recorded["template"] == "cookiecutters/svc"
    assert len(recorded["commit"]) == 40
    assert recorded["context"]["cookiecutter"]["name"] == "recorded"
    assert recorded["template_version"] == "1"


def test_bad_repositories_get_a_422_that_says_why(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        missing = run(client, "template:update", {"repository": "team-a/nothing-here"})
        assert missing.status_code == 422
        assert missing.json()["error"]["fields"][0]["field"] == "repository"
        remote = make_service(client, "plain")
        push_edit(remote, tmp_path / "plain", lambda c: (c / ".cruft.json").unlink())
        plain = run(client, "template:update", {"repository": "team-a/plain"})
        assert plain.status_code == 422, plain.text
        assert "not made from a template" in plain.json()["error"]["message"]
        assert git("ls-remote", "--heads", remote, authorization=AUTH_HEADER).stdout.count("refs/heads/") == 1
        make_service(client, "forged")
        forged = tmp_path / "forged"
        push_edit(remote.replace("plain", "forged"), forged, replace_in(".cruft.json", '"commit": "', '"commit": "0'))
        unknown = run(client, "template:update", {"repository": "team-a/forged"})
        assert unknown.status_code == 422
        assert "cannot be rendered: pltf has no such version" in unknown.json()["error"]["message"]
        assert unknown.json()["error"]["fields"][0]["field"] == "repository"
        make_service(client, "fine")
        bad_ref = run(client, "template:update", {"repository": "team-a/fine", "toRef": "f" * 40})
        assert bad_ref.status_code == 422
        assert bad_ref.json()["error"]["fields"][0]["field"] == "toRef"
        bad_value = run(client, "template:update", {"repository": "team-a/fine", "values": {"tier": ["x"]}})
        assert bad_value.status_code == 422
        assert bad_value.json()["error"]["fields"][0]["field"].startswith("values.tier")


def add_files(checkout: Path) -> None:
    (checkout / "worker.py").write_text("print('work')\n")
    (checkout / "docs" / "runbook.md").write_text("# Runbook\n")


# Per service: its edit, the conflicts the update must report, and what the update branch must then hold
# (path -> text, or None for "absent").
FLEET: dict[str, tuple[Any, list[str], dict[str, Any]]] = {
    "s0-untouched": (
        None,
        [],
        {
            "app.py": "VERSION = 2",
            "Dockerfile": "FROM",
            "docs/handbook.md": "# Guide",
            "old.txt": None,
            "docs/guide.md": None,
        },
    ),
    "s1-same-line": (
        replace_in("app.py", "VERSION = 1", "VERSION = 100"),
        ["app.py"],
        {"app.py": "<<<<<<<", "config.yaml": "replicas: 2"},
    ),
    "s2-other-line": (
        replace_in("app.py", "PORT = 8080", "PORT = 9090"),
        [],
        {"app.py": "VERSION = 2\nNAME = 's2-other-line'\nPORT = 9090"},
    ),
    "s3-deleted-changed-file": (
        lambda c: (c / "config.yaml").unlink(),
        [],
        {"config.yaml": None, "app.py": "VERSION = 2"},
    ),
    "s4-added-files": (
        add_files,
        [],
        {"worker.py": "print('work')", "docs/runbook.md": "# Runbook", "Dockerfile": "FROM"},
    ),
    "s5-edited-renamed-file": (
        replace_in("docs/guide.md", "How to run", "How to start"),
        [],
        {"docs/handbook.md": "How to start", "docs/guide.md": None},
    ),
    "s6-edited-removed-file": (replace_in("old.txt", "legacy", "still used"), ["old.txt"], {"old.txt": "still used"}),
    "s7-config-other-line": (
        replace_in("config.yaml", "logLevel: info", "logLevel: debug"),
        [],
        {"config.yaml": "replicas: 2\nmemory: 256Mi\ncpu: 100m\nlogLevel: debug"},
    ),
    "s8-config-same-line": (
        replace_in("config.yaml", "replicas: 1", "replicas: 5"),
        ["config.yaml"],
        {"config.yaml": "<<<<<<<"},
    ),
    "s9-deleted-renamed-file": (
        lambda c: (c / "docs" / "guide.md").unlink(),
        [],
        {"docs/guide.md": None, "docs/handbook.md": None, "app.py": "VERSION = 2"},
    ),
}


def branch_file(remote: str, branch: str, path: str, tmp_path: Path) -> str | None:
    checkout = tmp_path / f"check-{remote.rsplit('/', 1)[-1]}-{branch.replace('/', '_')}"
    if not checkout.exists():
        done = git("clone", "--quiet", "--branch", branch, remote, str(checkout), authorization=AUTH_HEADER)
        assert done.returncode == 0, done.stderr
    target = checkout / path
    return target.read_text() if target.exists() else None


def test_a_fleet_takes_version_2_keeping_each_services_edits(
    server: ServerProcess, templates: Path, tmp_path: Path
) -> None:
    remotes = {}
    with server.client() as client:
        for name, (edit, _, _) in FLEET.items():
            remotes[name] = make_service(client, name)
            if edit is not None:
                push_edit(remotes[name], tmp_path / "edits" / name, edit)
        same = run(client, "template:update", {"repository": "team-a/s0-untouched"})
        assert same.json()["output"]["status"] == "up-to-date", same.text
        write_template(templates, "2", V2)

        dry = pltf("update", "--all", "--template", "svc", "--dry-run", "--json", server=server)
        assert dry.returncode == 0, dry.stderr
        assert {row["status"] for row in json.loads(dry.stdout)} == {"clean", "conflicts"}
        assert all(client.get(f"/v1/repositories/team-a/{name}/changes").json()["changes"] == [] for name in FLEET)

        fleet = pltf("update", "--all", "--template", "svc", "--parallel", "3", "--json", server=server)
        assert fleet.returncode == 0, fleet.stderr
        assert fleet.stderr.count("[") == len(FLEET)  # a progress line per repository
        rows = {row["repository"].removeprefix("team-a/"): row for row in json.loads(fleet.stdout)}
        assert set(rows) == set(FLEET)
        for name, (_, conflicts, expected) in FLEET.items():
            out = rows[name]
            assert out["conflicts"] == conflicts, name
            assert out["status"] == ("conflicts" if conflicts else "clean"), name
            assert (out["fromVersion"], out["toVersion"], out["branch"]) == ("1", "2", "pltf/update-2")
            for path, text in expected.items():
                found = branch_file(remotes[name], "pltf/update-2", path, tmp_path)
                if text is None:
                    assert found is None, f"{name}: {path} should be absent"
                else:
                    assert found is not None and text in found, f"{name}: {path}: {found!r}"
            assert not any(p.endswith(".rej") for p in out["filesChanged"])

        again = pltf("update", "--all", "--template", "svc", "--json", server=server)
        assert again.returncode == 0, again.stderr
        assert {r["repository"]: r["changeRequestUrl"] for r in json.loads(again.stdout)} == {
            r["repository"]: r["changeRequestUrl"] for r in rows.values()
        }
        unresolved = client.post("/v1/repositories/team-a/s1-same-line/changes/1/merge")
        assert unresolved.status_code == 409 and "has conflicts in app.py" in unresolved.json()["error"]["message"]
        table = pltf("update", "team-a/s1-same-line", server=server)
        assert "conflicts" in table.stdout and "app.py" in table.stdout and "/changes/1" in table.stdout
        for name in FLEET:
            listed = client.get(f"/v1/repositories/team-a/{name}/changes").json()["changes"]
            assert len(listed) == 1, name


def test_a_change_request_is_viewed_and_merged_only_while_current(
    server: ServerProcess, templates: Path, tmp_path: Path
) -> None:
    with server.client() as client:
        remote = make_service(client, "merging")
        registered = run(
            client,
            "catalog:register",
            {"catalogInfoUrl": f"{server.url}/git/team-a/merging/raw/main/catalog-info.yaml"},
        )
        assert registered.status_code == 200, registered.text
        write_template(templates, "2", V2)
        out = run(client, "template:update", {"repository": "team-a/merging"}).json()["output"]
        assert out["changeRequestUrl"] == f"{server.url}/git/team-a/merging/changes/1"
        before = get_documented(client, "/v1/templates/svc/drift")
        assert before["versions"] == [{"version": "1", "services": 1}, {"version": "2", "services": 0}]
        assert before["updateRequests"] == {"open": 1}
        page = client.get(out["changeRequestUrl"])
        assert page.status_code == 200
        assert "+VERSION = 2" in page.text and "pltf/update-2" in page.text

        # main moves on: the branch is no longer current, and merging it would lose that commit.
        push_edit(remote, tmp_path / "moving", replace_in("app.py", "PORT = 8080", "PORT = 1"))
        stale = client.post("/v1/repositories/team-a/merging/changes/1/merge")
        assert stale.status_code == 409
        assert "not current" in stale.json()["error"]["message"]
        head = git("ls-remote", remote, "refs/heads/main", authorization=AUTH_HEADER).stdout.split()[0]

        # Merged by hand into the branch (a normal push), the change is current again and merges.
        branch = tmp_path / "branch"
        git("clone", "--quiet", "--branch", "pltf/update-2", remote, str(branch), authorization=AUTH_HEADER)
        git("pull", "--quiet", "--no-rebase", "origin", "main", cwd=branch, authorization=AUTH_HEADER)
        assert (
            git("push", "--quiet", "origin", "HEAD:pltf/update-2", cwd=branch, authorization=AUTH_HEADER).returncode
            == 0
        )
        merged = client.post("/v1/repositories/team-a/merging/changes/1/merge")
        assert merged.status_code == 200, merged.text
        assert assert_documented(client.get("/openapi.json").json(), merged)["state"] == "merged"
        assert merged.json()["refreshedEntities"] == ["component:default/merging"]
        (listed,) = get_documented(client, "/v1/repositories/team-a/merging/changes")["changes"]
        assert listed["state"] == "merged" and listed["toVersion"] == "2"
        assert get_documented(client, "/v1/repositories/team-a/merging/changes/1")["number"] == 1
        entity = client.get("/api/catalog/entities/by-name/component/default/merging").json()
        assert entity["metadata"]["annotations"]["pltf.dev/template-version"] == "2"
        after_drift = get_documented(client, "/v1/templates/svc/drift")
        assert after_drift["versions"] == [{"version": "1", "services": 0}, {"version": "2", "services": 1}]
        assert after_drift["updateRequests"] == {"merged": 1}
        portal = client.get("/templates/svc")
        assert portal.status_code == 200 and "#1 to 2: merged" in portal.text
        after = tmp_path / "after"
        git("clone", "--quiet", remote, str(after), authorization=AUTH_HEADER)
        assert git("merge-base", "--is-ancestor", head, "HEAD", cwd=after).returncode == 0
        assert "VERSION = 2" in (after / "app.py").read_text() and "PORT = 1" in (after / "app.py").read_text()
        assert json.loads((after / ".cruft.json").read_text())["template_version"] == "2"
        assert client.post("/v1/repositories/team-a/merging/changes/1/merge").status_code == 409
        assert (
            run(client, "template:update", {"repository": "team-a/merging"}).json()["output"]["status"] == "up-to-date"
        )


def test_migrations_run_in_the_sandbox_when_an_update_crosses_their_version(
    server: ServerProcess, templates: Path, tmp_path: Path
) -> None:
    move = "import os; os.makedirs('conf', exist_ok=True); os.rename('extra.cfg', 'conf/extra.cfg')"
    stamp = "open('MIGRATED', 'w').write(open('app.py').read().splitlines()[2])"
    steps = [
        {"version": "2", "when": "before", "command": ["python", "-c", move]},
        {"version": "2", "when": "after", "command": ["python", "-c", stamp]},
        # Not crossed by 1 -> 2: never runs.
        {"version": "3", "when": "after", "command": ["python", "-c", "open('NEVER', 'w')"]},
    ]
    with server.client() as client:
        remote = make_service(client, "migrated")
        push_edit(remote, tmp_path / "edit", lambda c: (c / "extra.cfg").write_text("mine\n"))
        write_template(templates, "2", V2, steps)
        answer = run(client, "template:update", {"repository": "team-a/migrated"})
        assert answer.json()["status"] == "succeeded", answer.text
        assert answer.json()["output"]["status"] == "clean"
    assert branch_file(remote, "pltf/update-2", "conf/extra.cfg", tmp_path) == "mine\n"
    assert branch_file(remote, "pltf/update-2", "extra.cfg", tmp_path) is None
    # The after step saw the merged tree.
    assert branch_file(remote, "pltf/update-2", "MIGRATED", tmp_path) == "VERSION = 2"
    assert branch_file(remote, "pltf/update-2", "NEVER", tmp_path) is None
    checkout = tmp_path / "check-migrated.git-pltf_update-2"
    subjects = git("log", "--format=%s", "origin/main..HEAD", cwd=checkout).stdout.splitlines()
    assert subjects == [
        "Template migration to 2 (after the merge)",
        "Update template svc from 1 to 2",
        "Template migration to 2 (before the merge)",
    ]


def test_only_the_owner_team_updates_and_merges_its_repositories(
    server_env: dict[str, str], templates: Path, tmp_path: Path
) -> None:
    team_a, team_b = "team-a-token-0123456789", "team-b-token-0123456789"
    token_file = tmp_path / "tokens.yaml"
    entries = [
        {"name": "team-a", "sha256": hash_token(team_a), "actions": ["*"], "team": "group:default/team-a"},
        {"name": "team-b", "sha256": hash_token(team_b), "actions": ["*"], "team": "group:default/team-b"},
    ]
    token_file.write_text(yaml.safe_dump({"tokens": entries}))
    env = {**server_env, "PLTF_TEMPLATES_DIR": str(templates), "PLTF_TOKEN_FILE": str(token_file)}
    env.pop("PLTF_API_TOKEN")
    server = ServerProcess(env, tmp_path / "server.log").start()

    def as_team(token: str) -> httpx.Client:
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    try:
        with as_team(team_a) as owner, as_team(team_b) as other:
            make_service(owner, "owned")
            write_template(templates, "2", V2)
            refused = run(other, "template:update", {"repository": "team-a/owned"})
            assert refused.status_code == 403, refused.text
            assert "only its team's tokens" in refused.json()["error"]["message"]
            assert owner.get("/v1/repositories/team-a/owned/changes").json()["changes"] == []
            opened = run(owner, "template:update", {"repository": "team-a/owned"})
            assert opened.json()["output"]["status"] == "clean", opened.text
            # Another team may read the change request of a repository it may read, and not merge it.
            assert other.get("/v1/repositories/team-a/owned/changes/1").status_code == 200
            merge = other.post("/v1/repositories/team-a/owned/changes/1/merge")
            assert merge.status_code == 403 and merge.json()["error"]["code"] == "forbidden"
            assert owner.get("/v1/repositories/team-a/owned/changes/1").json()["state"] == "open"
            assert owner.post("/v1/repositories/team-a/owned/changes/1/merge").json()["state"] == "merged"
    finally:
        server.stop()


def test_the_scorecard_wants_the_latest_template_version_or_one_behind(server: ServerProcess, templates: Path) -> None:
    with server.client() as client:
        make_service(client, "old-one", visibility="public")
        write_template(templates, "2", V2)
        make_service(client, "newer-one", visibility="public")
        write_template(templates, "3", {**V2, "Dockerfile": "FROM python:3.13-slim\n"})

        def rule(service: str) -> dict[str, Any]:
            card = client.get(f"/v1/services/{service}/scorecard").json()
            return next(r for r in card["rules"] if r["id"] == "template-current")

        assert rule("old-one")["passed"] is False
        assert rule("old-one")["detail"] == "on svc 1, 2 behind 3"
        assert rule("newer-one")["passed"] is True
        assert rule("newer-one")["detail"] == "on svc 2, 1 behind 3"
