"""Holes an attacker with an ordinary team token still found after issue 12's fixes, each through the
HTTP API and real git against a real server: two teams' tokens and an admin's (see test_forge_permissions).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient
from previews_support import service_repository
from test_forge_embedded import git
from test_forge_permissions import CATALOG_INFO, TEAM_A, TEAM_B, api, basic, clone, commit, create, run
from test_forge_permissions import server as permissions_server
from test_preview_database import ready_postgres_service
from test_previews import HOST as PREVIEW_HOST
from test_previews import preview_settings, running

from actions_server.app import create_app
from conftest import POSTGRES_URL, TOKEN, ServerProcess, make_settings, need

server = permissions_server


def test_a_preview_of_a_private_repository_cannot_be_had_through_another_spelling_of_its_url(
    server: ServerProcess,
) -> None:
    output = create(server, TEAM_A, "team-a", "ledger", visibility="private")
    port = server.url.rsplit(":", 1)[1]
    # Each is the same repository once normalised, and the preview would check it out from disk.
    spellings = [
        output["remoteUrl"].replace("http://", "HTTP://"),
        f"{server.url}/git/team-b/../team-a/ledger.git",
        f"{server.url}/git/team-a/%6Cedger.git",
        f"http://127.0.0.1.:{port}/git/team-a/ledger",
    ]
    for url in spellings:
        for dry_run in (True, False):
            body = {"input": {"repoUrl": url, "service": "ledger"}, "dryRun": dry_run}
            refused = run(server, TEAM_B, "preview:create", body).json()
            assert refused["status"] == "failed", (url, refused)
            assert refused["error"]["status"] == 404, (url, refused)
            assert "checked out" not in str(refused.get("log")), url


def push_link(server: ServerProcess, token: str, name: str, link: str, target: Path, work: Path) -> str:
    """A repository of `token`'s team whose `link` is a symbolic link to `target` on the server's disk."""
    owner = "team-b" if token == TEAM_B else "team-a"
    remote = create(server, token, owner, name)["remoteUrl"]
    clone(remote, work, token)
    (work / link).symlink_to(target)
    assert git("add", link, cwd=work).returncode == 0
    assert git("commit", "--quiet", "-m", f"{link} is a link", cwd=work).returncode == 0
    assert git("push", "origin", "main", cwd=work, authorization=basic(token)).returncode == 0
    return str(remote)


# What the server would read as the file: each target is valid in the linked file's format.
LINKED_SECRETS = {
    "requirements.txt": "dependency-named-host-secret-4242\n",
    "pyproject.toml": '[project]\ndependencies = ["dependency-named-host-secret-4242"]\n',
}


@pytest.mark.parametrize("link", sorted(LINKED_SECRETS))
def test_a_preview_checkout_cannot_make_the_server_read_a_file_through_a_link(
    server: ServerProcess, tmp_path: Path, link: str
) -> None:
    need(shutil.which("bwrap") is not None or shutil.which("unshare") is not None, "a sandbox (bwrap or unshare)")
    secret = tmp_path / "host-secret"
    secret.write_text(LINKED_SECRETS[link])
    secret.chmod(0o600)  # the server's alone: only the server itself can read it
    remote = push_link(server, TEAM_B, "snoop", link, secret, tmp_path / "work")

    answer = run(server, TEAM_B, "preview:create", {"input": {"repoUrl": remote, "service": "snoop"}})
    assert "host-secret-4242" not in answer.text
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"]["status"] == 422
    assert link in answer.json()["error"]["message"]


def template_repository(directory: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    """A real git repository holding a template of an allow-listed (not trusted) source."""
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    for name, target in (links or {}).items():
        (directory / name).symlink_to(target)
    assert git("init", "--quiet", "-b", "main", str(directory)).returncode == 0
    assert git("add", ".", cwd=directory).returncode == 0
    assert git("commit", "--quiet", "-m", "template", cwd=directory).returncode == 0
    return directory


def untrusted_client(tmp_path: Path) -> TestClient:
    settings = make_settings(tmp_path, template_sources=[f"file://{tmp_path}/sources/"])
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"})


RENDER = "/v1/actions/cookiecutter:render/runs"


@pytest.mark.parametrize("where", ["file", "path", "default"])
def test_an_untrusted_templates_own_jinja_cannot_run_code_on_the_host(tmp_path: Path, where: str) -> None:
    pwned = tmp_path / "pwned"
    # No slash in the code itself, so it also fits in a file name.
    code = "{{ cycler.__init__.__globals__.os.popen('touch ' + cookiecutter.target).read() }}"
    context = {"name": "svc", "target": str(pwned)}
    files = {"cookiecutter.json": json.dumps(context), "{{cookiecutter.name}}/README.md": "hello\n"}
    if where == "file":
        files["{{cookiecutter.name}}/README.md"] = code
    elif where == "path":
        files[f"{{{{cookiecutter.name}}}}/{code}.txt"] = "x\n"
    else:
        files["cookiecutter.json"] = json.dumps({**context, "motto": code})
    repo = template_repository(tmp_path / "sources" / "evil", files)

    with untrusted_client(tmp_path) as client:
        answer = client.post(RENDER, json={"input": {"template": f"file://{repo}"}, "dryRun": True})
    assert not pwned.exists(), "the template's Jinja ran a command on the host"
    assert answer.status_code >= 400 or answer.json()["status"] == "failed", answer.text


def test_an_untrusted_template_cannot_copy_a_host_file_through_a_link(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("template-linked-host-secret-4242\n")
    secret.chmod(0o600)
    files = {"cookiecutter.json": json.dumps({"name": "svc"}), "{{cookiecutter.name}}/README.md": "hello\n"}
    repo = template_repository(tmp_path / "sources" / "linker", files, {"{{cookiecutter.name}}/leak.txt": str(secret)})

    with untrusted_client(tmp_path) as client:
        answer = client.post(RENDER, json={"input": {"template": f"file://{repo}"}, "dryRun": True})
    assert "host-secret-4242" not in answer.text
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["fields"][0]["field"] == "template"


def push_file(token: str, remote: str, work: Path, name: str, text: str) -> None:
    if not work.exists():
        clone(remote, work, token)
    commit(work, name, text)
    assert git("push", "origin", "main", cwd=work, authorization=basic(token)).returncode == 0


def test_refreshing_a_location_cannot_publish_a_private_file_its_caller_cannot_read(
    server: ServerProcess, tmp_path: Path
) -> None:
    private = create(server, TEAM_A, "team-a", "vault", visibility="private")
    secret_entity = {**CATALOG_INFO, "metadata": {"name": "vault", "description": "team-a-private-4242"}}
    push_file(TEAM_A, private["remoteUrl"], tmp_path / "a", "catalog-info.yaml", yaml.safe_dump(secret_entity))

    public = create(server, TEAM_B, "team-b", "index")
    location: dict[str, Any] = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": "everything"},
        "spec": {"targets": []},
    }
    push_file(TEAM_B, public["remoteUrl"], tmp_path / "b", "catalog-info.yaml", yaml.safe_dump(location))
    registered = run(
        server, TEAM_B, "catalog:register", {"input": {"catalogInfoUrl": public["rawUrlBase"] + "/catalog-info.yaml"}}
    )
    assert registered.json()["status"] == "succeeded", registered.text
    # Registered harmless, then pointed at the private file: registration's check is behind it now.
    location["spec"]["targets"] = [f"{private['rawUrlBase']}/catalog-info.yaml"]
    push_file(TEAM_B, public["remoteUrl"], tmp_path / "b", "catalog-info.yaml", yaml.safe_dump(location))

    with api(server, TEAM_B) as client:
        refreshed = client.post("/api/catalog/refresh", json={"entityRef": "location:default/everything"})
    assert refreshed.status_code == 422, refreshed.text
    assert "team-a-private-4242" not in refreshed.text
    assert httpx.get(f"{server.url}/api/catalog/entities/by-name/component/default/vault").status_code == 404


def test_no_token_can_create_the_gitops_repository_before_pltf_does(server: ServerProcess) -> None:
    # Argo CD applies whatever that repository holds; pltf makes it on its first apply.
    for token in (TEAM_B, TOKEN):
        rendered = run(server, token, "cookiecutter:render", {"input": {"template": "demo", "values": {"name": "x"}}})
        workspace = rendered.json()["output"]["workspaceId"]
        body = {"input": {"workspaceId": workspace, "owner": "platform", "name": "gitops"}}
        refused = run(server, token, "repo:create", body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["fields"] == [{"field": "input.name", "message": "the GitOps repository's name"}]
    assert httpx.get(f"{server.url}/git/platform/gitops", auth=("x", TOKEN)).status_code == 404


def test_a_location_or_target_that_is_not_a_url_is_a_422_not_a_500(server: ServerProcess, tmp_path: Path) -> None:
    with api(server, TEAM_B) as client:
        direct = client.post("/api/catalog/locations", json={"type": "url", "target": "http://[::1/catalog-info.yaml"})
    assert direct.status_code == 422, direct.text
    assert direct.json()["error"]["code"] == "location_unreadable"

    public = create(server, TEAM_B, "team-b", "index")
    location = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": "broken"},
        "spec": {"targets": ["http://[::1/catalog-info.yaml"]},
    }
    push_file(TEAM_B, public["remoteUrl"], tmp_path / "b", "catalog-info.yaml", yaml.safe_dump(location))
    body = {"input": {"catalogInfoUrl": public["rawUrlBase"] + "/catalog-info.yaml"}}
    refused = run(server, TEAM_B, "catalog:register", body)
    assert refused.json()["status"] == "failed", refused.text
    assert refused.json()["error"]["status"] == 422, refused.text


def preview_environment(preview_id: str) -> dict[str, str]:
    """The environment of the preview's outermost process, read as the host sees it."""
    marker = f"PLTF_PREVIEW_ID={preview_id}\0".encode()
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        if marker in environ:
            pairs = (item.split("=", 1) for item in environ.decode().split("\0") if "=" in item)
            return dict(pairs)
    raise AssertionError(f"no process of preview {preview_id}")


@pytest.mark.postgres
def test_a_preview_database_url_carries_a_role_of_its_own_not_the_admins(tmp_path: Path, postgres_url: str) -> None:
    with ready_postgres_service(tmp_path) as (_, preview):
        given = preview_environment(preview["id"])["APP_DATABASE_URL"]
        with psycopg.connect(POSTGRES_URL) as admin:
            admin_role = admin.execute("SELECT current_user").fetchone()
        with psycopg.connect(given, autocommit=True) as conn:
            role, superuser, creates = conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone() or (None, None, None)
            assert (role,) != admin_role and superuser is False and creates is False
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"COPY (SELECT 1) TO PROGRAM 'touch {tmp_path}/pwned'")
        assert not (tmp_path / "pwned").exists()


def test_a_client_cannot_tell_a_preview_who_it_is_through_forwarding_headers(tmp_path: Path) -> None:
    with running(preview_settings(tmp_path)) as client:
        body = {"input": {"repoUrl": service_repository(tmp_path), "service": "users-api"}}
        assert client.post("/v1/actions/preview:create/runs", json=body).status_code == 200
        spoofed = {
            "Forwarded": "for=6.6.6.6;host=admin.example;proto=https",
            "X-Real-IP": "6.6.6.6",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "admin.example",
            "X-Forwarded-Proto": "https",
        }
        for path, host in (("/echo", {"Host": PREVIEW_HOST}), ("/previews/users-api/echo", {})):
            received = client.get(path, headers={**spoofed, **host}).json()["headers"]
            assert "forwarded" not in received and "x-real-ip" not in received, path
            assert "6.6.6.6" not in str(received) and "admin.example" not in str(received), path
            assert received["x-forwarded-proto"] == "http", path


# A build backend of its own (nothing to download): building the package runs this, in the install sandbox,
# where the only writable directory is the dependency cache being built.
PLANTING_BACKEND = """
import os
import zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    for line in open("/proc/self/mountinfo"):
        mount = line.split()[4]
        if "/cache/" in mount and "." not in os.path.basename(mount):
            os.symlink(TARGET, os.path.join(mount, ".complete"))
    name = "planter-1-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        wheel.writestr("planter-1.dist-info/METADATA", "Metadata-Version: 2.1\\nName: planter\\nVersion: 1\\n")
        wheel.writestr("planter-1.dist-info/WHEEL", "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")
        wheel.writestr("planter-1.dist-info/RECORD", "")
    return name
"""


def test_a_dependency_build_cannot_make_the_server_create_a_file_where_it_points(
    server: ServerProcess, tmp_path: Path
) -> None:
    need(shutil.which("bwrap") is not None or shutil.which("unshare") is not None, "a sandbox (bwrap or unshare)")
    planted = tmp_path / "planted-as-root"
    package = create(server, TEAM_B, "team-b", "planter")["remoteUrl"]
    work = clone(package, tmp_path / "planter", TEAM_B)
    (work / "backend.py").write_text(f"TARGET = {str(planted)!r}\n{PLANTING_BACKEND}")
    build = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    (work / "pyproject.toml").write_text(build + '[project]\nname = "planter"\nversion = "1"\n')
    assert git("add", ".", cwd=work).returncode == 0
    commit(work, "README.md", "a package whose build plants a link\n")
    assert git("push", "origin", "main", cwd=work, authorization=basic(TEAM_B)).returncode == 0
    service = create(server, TEAM_B, "team-b", "victim")["remoteUrl"]
    push_file(TEAM_B, service, tmp_path / "victim", "requirements.txt", f"planter @ git+{package}\n")

    answer = run(server, TEAM_B, "preview:create", {"input": {"repoUrl": service, "service": "victim"}}).json()
    assert "installing dependencies" in str(answer["log"]), answer
    assert not planted.exists() and not planted.is_symlink(), "the server created the file the build's link named"


def test_a_team_cannot_provision_another_teams_service_by_naming_it_the_owner(server: ServerProcess) -> None:
    spec = "kind: service\nname: payapi\nenv: prod\npolicy: pii=false\nexposure: internal\n"
    mine = run(server, TEAM_A, "service:provision", {"input": {"spec": spec}}).json()
    assert mine["status"] == "succeeded", mine
    manifests = f"{server.url}/git/platform/gitops/raw/main/envs/prod/payapi/namespace.yaml"
    before = httpx.get(manifests, auth=("x", TOKEN))
    assert before.status_code == 200 and "group:default/team-a" in before.text

    hijack = spec.replace("exposure: internal", "owner: group:default/team-a\nexposure: public")
    for dry_run in (True, False):
        refused = run(server, TEAM_B, "service:provision", {"input": {"spec": hijack}, "dryRun": dry_run})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["fields"][0]["field"] == "owner"
    assert httpx.get(manifests, auth=("x", TOKEN)).text == before.text
    # Its own team, spelt short, is its own.
    again = run(
        server, TEAM_A, "service:provision", {"input": {"spec": spec.replace("env: prod", "env: prod\nowner: team-a")}}
    )
    assert again.json()["status"] == "succeeded", again.text


NETWORK_HOOK = """
import json, os, pathlib, socket

context = json.loads(pathlib.Path(os.environ["PLTF_CONTEXT_FILE"]).read_text())
try:
    socket.create_connection(("127.0.0.1", int(context["port"])), timeout=5).close()
    reached = "reached"
except OSError as exc:
    reached = f"unreachable: {exc}"
pathlib.Path("network.txt").write_text(reached)
"""


def test_a_hook_cannot_reach_the_hosts_loopback_services(tmp_path: Path) -> None:
    need(shutil.which("bwrap") is not None or shutil.which("unshare") is not None, "a sandbox (bwrap or unshare)")
    template = tmp_path / "templates" / "network-hook"
    (template / "hooks").mkdir(parents=True)
    (template / "{{cookiecutter.name}}").mkdir()
    (template / "{{cookiecutter.name}}" / "README.md").write_text("x\n")
    (template / "cookiecutter.json").write_text(json.dumps({"name": "svc", "port": "0"}))
    (template / "hooks" / "post_gen_project.py").write_text(NETWORK_HOOK)
    # A service on the host's loopback, as pltf's API or a PostgreSQL that trusts local connections are.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        settings = make_settings(tmp_path, templates_dir=tmp_path / "templates")
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            body = {"input": {"template": "network-hook", "values": {"port": str(port)}}, "dryRun": True}
            answer = client.post(RENDER, json=body)
    assert answer.status_code == 200, answer.text
    files = {item["path"]: item["base64Content"] for item in answer.json()["output"]["directoryContents"]}
    seen = base64.b64decode(files["network.txt"]).decode()
    assert seen.startswith("unreachable"), seen
