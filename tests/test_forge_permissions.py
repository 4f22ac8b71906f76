"""Who may push to and read which embedded repository, attacked with stock `git` and the HTTP API.

A server with three tokens: an admin (every action, no team) and two teams'
tokens that may run every action. Each test makes its repositories through the
API as the token under test, then pushes, clones and registers as another.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_forge_embedded import git

from actions_server.auth import hash_token
from conftest import TOKEN, ServerProcess, pltf

TEAM_A = "team-a-token-0123456789"
TEAM_B = "team-b-token-0123456789"
CATALOG_INFO = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "ledger"},
    "spec": {"type": "service", "lifecycle": "production", "owner": "group:default/team-a"},
}


def basic(token: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"pltf:{token}".encode()).decode()


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    process = start_with_team_tokens(server_env, tmp_path)
    yield process
    process.stop()


def start_with_team_tokens(server_env: dict[str, str], tmp_path: Path) -> ServerProcess:
    token_file = tmp_path / "tokens.yaml"
    entries = [
        {"name": "admin", "sha256": hash_token(TOKEN)},
        {"name": "team-a", "sha256": hash_token(TEAM_A), "actions": ["*"], "team": "group:default/team-a"},
        {"name": "team-b", "sha256": hash_token(TEAM_B), "actions": ["*"], "team": "group:default/team-b"},
    ]
    token_file.write_text(yaml.safe_dump({"tokens": entries}))
    env = {key: value for key, value in server_env.items() if key != "PLTF_API_TOKEN"}
    return ServerProcess({**env, "PLTF_TOKEN_FILE": str(token_file)}, tmp_path / "server.log").start()


def api(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def run(server: ServerProcess, token: str, action: str, body: dict[str, Any]) -> httpx.Response:
    with api(server, token) as client:
        return client.post(f"/v1/actions/{action}/runs", json=body)


def create(server: ServerProcess, token: str, owner: str, name: str, **extra: Any) -> dict[str, Any]:
    rendered = run(server, token, "cookiecutter:render", {"input": {"template": "demo", "values": {"name": name}}})
    assert rendered.status_code == 200, rendered.text
    workspace = rendered.json()["output"]["workspaceId"]
    created = run(
        server, token, "repo:create", {"input": {"workspaceId": workspace, "owner": owner, "name": name, **extra}}
    )
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "succeeded", created.text
    return dict(created.json()["output"])


def head(remote: str, branch: str = "main", token: str = TOKEN) -> str:
    listed = git("ls-remote", remote, f"refs/heads/{branch}", authorization=basic(token))
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()[0] if listed.stdout else ""


def commit(work: Path, name: str, text: str = "change\n") -> str:
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(text)
    assert git("add", name, cwd=work).returncode == 0
    assert git("commit", "--quiet", "-m", f"add {name}", cwd=work).returncode == 0
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def clone(remote: str, into: Path, token: str = TOKEN) -> Path:
    cloned = git("clone", "--quiet", remote, str(into), authorization=basic(token))
    assert cloned.returncode == 0, cloned.stderr
    return into


def test_only_the_owner_team_and_admins_push(server: ServerProcess, tmp_path: Path) -> None:
    output = create(server, TEAM_A, "team-a", "orders")
    assert output["team"] == "group:default/team-a"
    remote = output["remoteUrl"]
    work = clone(remote, tmp_path / "b", TEAM_B)  # public: anyone reads
    commit(work, "by-b.txt")

    refused = git("push", "origin", "main", cwd=work, authorization=basic(TEAM_B))
    assert refused.returncode != 0
    assert "403" in refused.stderr and "belongs to team group:default/team-a" in refused.stderr
    assert head(remote) == output["commitHash"]

    mine = git("push", "origin", "main", cwd=work, authorization=basic(TEAM_A))
    assert mine.returncode == 0, mine.stderr
    assert head(remote) == git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert git("push", "origin", "HEAD:admin-branch", cwd=work, authorization=basic(TOKEN)).returncode == 0


def test_a_team_token_may_not_create_for_another_team_but_an_admin_may(server: ServerProcess) -> None:
    rendered = run(server, TEAM_B, "cookiecutter:render", {"input": {"template": "demo", "values": {"name": "x"}}})
    workspace = rendered.json()["output"]["workspaceId"]
    body = {"workspaceId": workspace, "owner": "team-a", "name": "planted", "team": "group:default/team-a"}
    planted = run(server, TEAM_B, "repo:create", {"input": body}).json()
    assert planted["status"] == "failed"
    assert planted["error"]["status"] == 403 and planted["error"]["fields"][0]["field"] == "input.team"
    assert httpx.get(f"{server.url}/git/team-a/planted").status_code == 404  # nothing was created
    garbled = run(server, TOKEN, "repo:create", {"input": {**body, "team": "team a; rm"}})
    assert garbled.status_code == 422 and garbled.json()["error"]["fields"][0]["field"] == "input.team"

    given = create(server, TOKEN, "team-b", "handed-over", team="team-b")
    assert given["team"] == "group:default/team-b"
    refs = f"{given['remoteUrl']}/info/refs"
    as_b = httpx.get(refs, params={"service": "git-receive-pack"}, auth=("x", TEAM_B))
    assert as_b.status_code == 200
    as_a = httpx.get(refs, params={"service": "git-receive-pack"}, auth=("x", TEAM_A))
    assert as_a.status_code == 403

    # An admin naming no team makes a repository only admins may push to.
    unowned = create(server, TOKEN, "platform", "tools")
    assert "team" not in unowned
    refused = httpx.get(f"{unowned['remoteUrl']}/info/refs", params={"service": "git-receive-pack"}, auth=("x", TEAM_A))
    assert refused.status_code == 403 and "no owner team" in refused.text


def test_the_protected_default_branch_takes_no_force_push_or_deletion(server: ServerProcess, tmp_path: Path) -> None:
    output = create(server, TOKEN, "platform", "protected")
    remote = output["remoteUrl"]
    work = clone(remote, tmp_path / "work")
    fast_forward = commit(work, "one.txt")
    pushed = git("push", "origin", "main", cwd=work, authorization=basic(TOKEN))
    assert pushed.returncode == 0, pushed.stderr
    assert head(remote) == fast_forward

    assert git("reset", "--quiet", "--hard", output["commitHash"], cwd=work).returncode == 0
    commit(work, "rewritten.txt")
    forced = git("push", "--force", "origin", "main", cwd=work, authorization=basic(TOKEN))
    assert forced.returncode != 0
    assert "[remote rejected] main -> main (pre-receive hook declined)" in forced.stderr
    assert "refs/heads/main is a protected branch: pushes must fast-forward it" in forced.stderr
    deleted = git("push", "origin", ":main", cwd=work, authorization=basic(TOKEN))
    assert deleted.returncode != 0 and "it cannot be deleted" in deleted.stderr
    assert head(remote) == fast_forward

    # Other branches are the team's own business: force-push and delete freely.
    assert git("push", "origin", "HEAD:feature", cwd=work, authorization=basic(TOKEN)).returncode == 0
    assert git("commit", "--quiet", "--amend", "-m", "reworded", cwd=work).returncode == 0
    reworded = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    forced_feature = git("push", "--force", "origin", "HEAD:feature", cwd=work, authorization=basic(TOKEN))
    assert forced_feature.returncode == 0, forced_feature.stderr
    assert head(remote, "feature") == reworded
    assert git("push", "origin", ":feature", cwd=work, authorization=basic(TOKEN)).returncode == 0
    assert head(remote, "feature") == ""


def test_an_unprotected_default_branch_may_be_rewritten(server: ServerProcess, tmp_path: Path) -> None:
    output = create(server, TEAM_A, "team-a", "scratch", protectDefaultBranch=False)
    work = clone(output["remoteUrl"], tmp_path / "work", TEAM_A)
    assert git("commit", "--quiet", "--amend", "-m", "rewritten", cwd=work).returncode == 0
    forced = git("push", "--force", "origin", "main", cwd=work, authorization=basic(TEAM_A))
    assert forced.returncode == 0, forced.stderr
    assert head(output["remoteUrl"]) == git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_nobody_pushes_to_the_gitops_repository(server: ServerProcess, tmp_path: Path) -> None:
    env = {"PLTF_DATA_DIR": server.env["PLTF_DATA_DIR"]}
    spec = "kind: service\nname: promoapi\nenv: prod\npolicy: pii=false\n"
    applied = pltf("apply", "-", "--owner", "growth", "--json", env=env, stdin=spec)
    assert applied.returncode == 0, applied.stderr
    remote = f"{server.url}/git/platform/gitops.git"
    before = head(remote)
    assert before == json.loads(applied.stdout)["output"]["commit"]

    work = clone(remote, tmp_path / "gitops")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "planted", "namespace": "promoapi"}}
    commit(work, "envs/prod/promoapi/secret.yaml", yaml.safe_dump(secret))
    for token in (TOKEN, TEAM_A, TEAM_B):
        refused = git("push", "origin", "main", cwd=work, authorization=basic(token))
        assert refused.returncode != 0, token
    as_admin = git("push", "origin", "main", cwd=work, authorization=basic(TOKEN))
    assert "403" in as_admin.stderr and "only pltf writes it" in as_admin.stderr
    assert head(remote) == before

    # pltf itself still writes it.
    again = pltf("apply", "-", "--owner", "growth", "--json", env=env, stdin=spec.replace("promoapi", "cartapi"))
    assert again.returncode == 0, again.stderr
    after = head(remote)
    assert after != before and after == json.loads(again.stdout)["output"]["commit"]


def test_private_repositories_are_read_by_their_team_and_admins_only(server: ServerProcess, tmp_path: Path) -> None:
    output = create(server, TEAM_A, "team-a", "ledger", visibility="private")
    remote, raw = output["remoteUrl"], f"{output['rawUrlBase']}/README.md"

    stolen = git("clone", "--quiet", remote, str(tmp_path / "b"), authorization=basic(TEAM_B))
    assert stolen.returncode != 0 and not (tmp_path / "b" / "README.md").exists()
    assert (
        httpx.get(f"{remote}/info/refs", params={"service": "git-upload-pack"}, auth=("x", TEAM_B)).status_code == 404
    )
    assert httpx.get(raw, auth=("x", TEAM_B)).status_code == 404
    assert httpx.get(output["repoContentsUrl"], auth=("x", TEAM_B)).status_code == 404
    assert httpx.get(raw).status_code == 401
    assert "team-a/ledger" not in httpx.get(f"{server.url}/git/", auth=("x", TEAM_B)).text

    assert (clone(remote, tmp_path / "a", TEAM_A) / "README.md").is_file()
    assert (clone(remote, tmp_path / "admin", TOKEN) / "README.md").is_file()
    assert httpx.get(raw, headers={"Authorization": f"Bearer {TEAM_A}"}).status_code == 200
    assert "team-a/ledger" in httpx.get(f"{server.url}/git/", auth=("x", TEAM_A)).text

    # Internal: any valid token reads it, as on GitHub.
    internal = create(server, TEAM_A, "team-a", "handbook", visibility="internal")
    assert httpx.get(f"{internal['rawUrlBase']}/README.md", auth=("x", TEAM_B)).status_code == 200
    assert httpx.get(f"{internal['rawUrlBase']}/README.md").status_code == 401


def test_the_catalog_registers_a_private_file_only_for_its_readers(server: ServerProcess, tmp_path: Path) -> None:
    output = create(server, TEAM_A, "team-a", "ledger", visibility="private")
    work = clone(output["remoteUrl"], tmp_path / "a", TEAM_A)
    commit(work, "catalog-info.yaml", yaml.safe_dump(CATALOG_INFO))
    assert git("push", "origin", "main", cwd=work, authorization=basic(TEAM_A)).returncode == 0
    url = f"{output['rawUrlBase']}/catalog-info.yaml"
    entity_url = f"{server.url}/api/catalog/entities/by-name/component/default/ledger"

    for dry_run in (True, False):
        refused = run(server, TEAM_B, "catalog:register", {"input": {"catalogInfoUrl": url}, "dryRun": dry_run}).json()
        assert refused["status"] == "failed", refused
        assert refused["error"]["status"] == 404 and refused["error"]["code"] == "location_not_found"
        assert "ledger" not in json.dumps(refused.get("output") or {})
    with api(server, TEAM_B) as client:
        direct = client.post("/api/catalog/locations", json={"type": "url", "target": url})
        assert direct.status_code == 404 and direct.json()["error"]["code"] == "location_not_found"
        dry = client.post("/api/catalog/locations", params={"dryRun": "true"}, json={"type": "url", "target": url})
        assert dry.status_code == 404
    assert httpx.get(entity_url).status_code == 404
    assert httpx.get(f"{server.url}/api/catalog/locations").json() == []

    registered = run(server, TEAM_A, "catalog:register", {"input": {"catalogInfoUrl": url}}).json()
    assert registered["status"] == "succeeded", registered
    assert registered["output"]["entityRef"] == "component:default/ledger"
    assert httpx.get(entity_url).status_code == 200


def test_a_location_in_a_public_repository_cannot_lead_into_a_private_one(
    server: ServerProcess, tmp_path: Path
) -> None:
    private = create(server, TEAM_A, "team-a", "ledger", visibility="private")
    work = clone(private["remoteUrl"], tmp_path / "a", TEAM_A)
    commit(work, "catalog-info.yaml", yaml.safe_dump(CATALOG_INFO))
    assert git("push", "origin", "main", cwd=work, authorization=basic(TEAM_A)).returncode == 0

    public = create(server, TEAM_B, "team-b", "index")
    location = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": "everything"},
        "spec": {"targets": [f"{private['rawUrlBase']}/catalog-info.yaml"]},
    }
    work_b = clone(public["remoteUrl"], tmp_path / "b", TEAM_B)
    commit(work_b, "catalog-info.yaml", yaml.safe_dump(location))
    assert git("push", "origin", "main", cwd=work_b, authorization=basic(TEAM_B)).returncode == 0

    url = f"{public['rawUrlBase']}/catalog-info.yaml"
    refused = run(server, TEAM_B, "catalog:register", {"input": {"catalogInfoUrl": url}}).json()
    # The target is refused as a missing repository would be, in the words used for one.
    assert refused["status"] == "failed" and refused["error"]["status"] == 422, refused
    assert "no repository team-a/ledger on this server's forge" in refused["error"]["message"]
    assert httpx.get(f"{server.url}/api/catalog/entities/by-name/component/default/ledger").status_code == 404
    assert httpx.get(f"{server.url}/api/catalog/entities/by-name/location/default/everything").status_code == 404


def test_a_preview_of_a_private_repository_is_for_its_readers_only(server: ServerProcess) -> None:
    output = create(server, TEAM_A, "team-a", "ledger", visibility="private")
    body = {"input": {"repoUrl": output["remoteUrl"], "service": "ledger"}, "dryRun": True}
    refused = run(server, TEAM_B, "preview:create", body).json()
    assert refused["status"] == "failed" and refused["error"]["status"] == 404, refused
    assert refused["error"]["fields"] == [{"field": "input.repoUrl", "message": "no such repository"}]
    planned = run(server, TEAM_A, "preview:create", body).json()
    assert planned["status"] == "succeeded" and planned["output"]["status"] == "planned", planned


def test_the_public_portal_reads_catalog_files_of_public_repositories_only(
    server: ServerProcess, tmp_path: Path
) -> None:
    # The portal is anonymous: what a private repository's catalog-info.yaml says is its team's to publish.
    for name, visibility in (("ledger", "private"), ("storefront", "public")):
        output = create(server, TEAM_A, "team-a", name, visibility=visibility)
        work = clone(output["remoteUrl"], tmp_path / name, TEAM_A)
        entity = {
            **CATALOG_INFO,
            "metadata": {"name": name},
            "spec": {**CATALOG_INFO["spec"], "owner": f"group:default/{name}-owners"},
        }
        commit(work, "catalog-info.yaml", yaml.safe_dump(entity))
        assert git("push", "origin", "main", cwd=work, authorization=basic(TEAM_A)).returncode == 0

    home = httpx.get(f"{server.url}/", timeout=60)
    assert home.status_code == 200
    assert "storefront-owners" in home.text
    assert "ledger-owners" not in home.text
