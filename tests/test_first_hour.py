"""The first hour (issue 17): right after the golden path, the catalog and the portal are real, linked and alive."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
from test_forge_embedded import AUTH_HEADER, create_repository, git

import conftest
from actions_server.config import PROJECT_ROOT
from conftest import ServerProcess, kill_processes_under, wait_until


def entity(http: httpx.Client, ref: str) -> httpx.Response:
    kind, rest = ref.split(":", 1)
    namespace, name = rest.split("/", 1) if "/" in rest else ("default", rest)
    return http.get(f"/api/catalog/entities/by-name/{kind}/{namespace}/{name}")


def fresh_server(tmp_path: Path, server_env: dict[str, str], **extra: str) -> ServerProcess:
    """A server as a newcomer starts it: the project's own templates and catalog-info/ registered at start."""
    env = {
        **server_env,
        "PLTF_TEMPLATES_DIR": str(PROJECT_ROOT / "cookiecutters"),
        "PLTF_REGISTER_PLATFORM_ENTITIES": "true",
        "PLTF_RUN_WAIT_SECONDS": "120",
        **extra,
    }
    return ServerProcess(env, tmp_path / "server.log")


def test_golden_path_with_a_preview_ends_in_a_live_linked_catalog(tmp_path: Path, server_env: dict[str, str]) -> None:
    server = fresh_server(tmp_path, server_env, PLTF_PROBE_INTERVAL_SECONDS="0.5").start()
    try:
        with server.client() as http:
            body = {"input": {"name": "users-api", "owner": "group:default/platform-team", "description": "Users API"}}
            run = http.post("/v1/actions/service:create/runs", json=body).json()
            assert run["status"] == "succeeded", run.get("error")
            out = run["output"]
            assert out["previewStatus"] == "ready"
            assert out["previewUrl"] == f"http://users-api.preview.localhost:{server.port}/"
            assert out["previewId"]

            component = entity(http, "component:default/users-api").json()
            annotations = component["metadata"]["annotations"]
            links = {link["title"]: link["url"] for link in component["metadata"]["links"]}
            contents = out["repoContentsUrl"]
            assert contents.startswith(f"{server.url}/git/platform-team/users-api/")
            assert links["Source"] == contents
            assert links["Preview"] == out["previewUrl"]
            assert annotations["pltf.dev/preview-url"] == out["previewUrl"]
            assert annotations["backstage.io/source-location"] == f"url:{contents}/"
            assert "github.com/project-slug" not in annotations  # the repository is not on GitHub
            assert annotations["backstage.io/source-template"] == "template:default/python-service"
            host = {"Host": f"users-api.preview.localhost:{server.port}"}
            answer = httpx.get(f"{server.url}/healthz", headers=host)
            assert answer.status_code == 200
            assert [name for name in ("date", "server") if len(answer.headers.get_list(name)) > 1] == []

            runbook = http.get(links["Runbook"])
            assert runbook.status_code == 200 and "runbook" in runbook.text.lower()

            refs = {relation["targetRef"] for relation in component["relations"]}
            refs |= {annotations["backstage.io/source-template"], component["spec"]["owner"]}
            refs.add(f"system:default/{component['spec']['system']}")
            missing = [ref for ref in sorted(refs) if entity(http, ref).status_code != 200]
            assert missing == []

            def probed_up() -> dict[str, Any] | None:
                found: dict[str, Any] = http.get("/v1/services/users-api/health").json()
                return found if found["last"] and found["last"]["ok"] else None

            health = wait_until(probed_up, timeout=60, what="a successful probe of the preview")
            assert health["url"] == f"{out['previewUrl']}healthz"
            assert health["uptime"]["24h"]["ratio"] == 1.0

            cost = http.get("/v1/services/users-api/cost").json()
            assert cost["estimate"] is True and "price sheet" in cost["basis"]
            assert cost["forecastMonthly"] is not None
            home = http.get("/").text
            assert "(estimate)" in home

            destroyed = http.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": out["previewId"]}})
            assert destroyed.json()["status"] == "succeeded", destroyed.text
            wait_until(
                lambda: http.get("/v1/services/users-api/health").json()["url"] is None,
                timeout=30,
                what="the destroyed preview to stop being probed",
            )
    finally:
        server.stop()


def test_platform_entities_are_registered_once_at_first_start(tmp_path: Path, server_env: dict[str, str]) -> None:
    server = fresh_server(tmp_path, server_env)
    for _ in range(2):  # a restart finds them registered and registers nothing twice
        server.start()
        try:
            with server.client() as http:
                for ref in (
                    "group:default/platform-team",
                    "system:default/platform",
                    "template:default/python-service",
                ):
                    assert entity(http, ref).status_code == 200, ref
                targets = [location["data"]["target"] for location in http.get("/api/catalog/locations").json()]
                own = [t for t in targets if t.endswith("catalog-info/catalog-info.yaml")]
                assert len(own) == 1
        finally:
            server.stop()


def test_platform_entities_are_not_registered_when_turned_off(tmp_path: Path, server_env: dict[str, str]) -> None:
    server = fresh_server(tmp_path, server_env, PLTF_REGISTER_PLATFORM_ENTITIES="false").start()
    try:
        with server.client() as http:
            assert entity(http, "group:default/platform-team").status_code == 404
    finally:
        server.stop()


def test_raw_and_tree_urls_take_refs_of_several_segments(tmp_path: Path, server_env: dict[str, str]) -> None:
    server = ServerProcess(server_env, tmp_path / "server.log").start()
    try:
        with server.client() as http:
            output = create_repository(http, "team", "branched")
        work = tmp_path / "work"
        assert git("clone", "--quiet", output["remoteUrl"], str(work)).returncode == 0
        (work / "docs").mkdir()
        (work / "docs" / "release.md").write_text("# Release one\n")
        git("checkout", "--quiet", "-b", "release/1", cwd=work)
        git("add", ".", cwd=work)
        git("commit", "--quiet", "-m", "release notes", cwd=work)
        pushed = git("push", "origin", "release/1", cwd=work, authorization=AUTH_HEADER)
        assert pushed.returncode == 0, pushed.stderr

        base = output["webUrl"]
        raw = httpx.get(f"{base}/raw/release/1/docs/release.md")
        assert raw.status_code == 200 and raw.text == "# Release one\n"
        assert httpx.get(f"{base}/raw/main/docs/release.md").status_code == 404  # only on the branch
        tree = httpx.get(f"{base}/tree/release/1/docs")
        assert tree.status_code == 200 and "release.md" in tree.text
        assert httpx.get(f"{base}/tree/release/1").status_code == 200
        assert httpx.get(f"{base}/tree/release/2").status_code == 404
    finally:
        server.stop()


def pltf(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Creating a service with its preview takes longer than most commands.
    return conftest.pltf(*args, env=env, timeout=300)


def in_process_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PLTF_URL": "",
        "PLTF_DATA_DIR": str(tmp_path / "data"),
        "PLTF_TEMPLATES_DIR": str(PROJECT_ROOT / "cookiecutters"),
    }


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    env = in_process_env(tmp_path)
    for args in (("create", "service", "orders", "--owner"), ("create", "service"), ("create", "service", "--bogus")):
        result = pltf(*args, env=env)
        assert result.returncode == 2, args
        assert result.stderr.startswith("pltf: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "<bool>" not in pltf("create", "service", "--help", env=env).stdout


def test_names_say_the_rule_the_limit_and_what_was_derived(tmp_path: Path) -> None:
    env = in_process_env(tmp_path)
    digit = pltf("create", "service", "1", "api", env=env)
    assert digit.returncode == 2 and digit.stderr.count("\n") == 1
    assert "'1-api'" in digit.stderr and "starting with a letter" in digit.stderr
    long = pltf("create", "service", "a" * 80, env=env)
    assert long.returncode == 2 and "80 characters long; the limit is 63" in long.stderr
    derived = pltf("create", "service", "Users API!", "--no-preview", "--dry-run", env=env)
    assert derived.returncode == 0, derived.stderr
    assert derived.stderr.splitlines()[0].startswith("the name is users-api (from 'Users API!'")


def test_an_unknown_template_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    result = pltf("create", "service", "orders", "--template", "nope", env=in_process_env(tmp_path))
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "pltf: error: unknown template 'nope' (template: the templates here are: python-service)"
    ]


def test_in_process_mode_says_so_links_nowhere_and_says_how_to_stop_its_preview(tmp_path: Path) -> None:
    env = in_process_env(tmp_path)
    try:
        created = pltf("create", "service", "users", "api", env=env)
        assert created.returncode == 0, created.stderr
        assert "in this process (PLTF_URL is unset" in created.stderr
        assert "http://" not in created.stdout and "https://" not in created.stdout
        stop = next(line for line in created.stdout.splitlines() if "stop it with: " in line)
        command = stop.split("stop it with: ", 1)[1].split()
        assert command[:3] == ["pltf", "previews", "destroy"]
        assert json.loads(pltf("previews", "list", "--json", env=env).stdout)["previews"] != []
        stopped = pltf(*command[1:], env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(pltf("previews", "list", "--json", env=env).stdout)["previews"] == []
    finally:
        kill_processes_under(tmp_path / "data")


def test_make_test_without_node_or_root_says_so_in_one_line(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a machine with make and a shell, but no Node, chromium, promtool or apt-get
    bare.mkdir()
    for tool in ("make", "bash", "env", "sed", "id"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bare / tool).symlink_to(found)
    # -n: even were the check to pass, nothing would run.
    done = subprocess.run(
        ["make", "-n", "test"],
        cwd=PROJECT_ROOT,
        env={"PATH": str(bare), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "make test: needs Node 20+ and npm" in line
    assert "root with apt-get to install chromium, prometheus (for promtool)" in line
