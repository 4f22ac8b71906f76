"""Code pltf did not write (template hooks, preview services) runs in the sandbox: it sees none of the
server's secrets, environment or data, and its resource limits hold. Real hooks, a real preview, real processes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from previews_support import service_repository
from test_cli import pltf
from test_previews import kill_leftovers

from actions_server.app import create_app
from actions_server.config import Settings
from actions_server.sandbox import KEPT_ENVIRONMENT
from actions_server.templates import check as template_check
from conftest import FIXTURE_TEMPLATES, ServerProcess, make_settings

RENDER = "/v1/actions/cookiecutter:render/runs"
GITHUB_TOKEN = "ghp_fake0123456789sandboxprobe"
ENV_TOKEN = "env-token-the-hook-must-not-see"
SANDBOX_UID = 65534


@pytest.fixture
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's environment holds tokens, as a deployment's would."""
    monkeypatch.setenv("PLTF_GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("PLTF_API_TOKEN", ENV_TOKEN)


@contextlib.contextmanager
def server(settings: Settings) -> Iterator[TestClient]:
    """The server with no configured token, so it writes the generated one to <data dir>/api-token."""
    with TestClient(create_app(settings)) as client:
        token = settings.storage.generated_token_path.read_text().strip()
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def secret_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path, api_token=None, trusted_template_sources=[], **overrides)


def another_teams_repository(client: TestClient) -> None:
    rendered = client.post(RENDER, json={"input": {"template": "demo", "values": {"name": "payroll"}}})
    workspace = rendered.json()["output"]["workspaceId"]
    created = client.post(
        "/v1/actions/repo:create/runs",
        json={"input": {"workspaceId": workspace, "owner": "finance", "name": "payroll"}},
    )
    assert created.status_code == 200, created.text


def probes(settings: Settings) -> list[str]:
    data = settings.storage.data_dir.resolve()
    return [
        str(data),
        str(settings.storage.generated_token_path.resolve()),
        str(data / "pltf.db"),
        str(data / "git"),
        str(data / "git" / "finance" / "payroll.git" / "config"),
        str(FIXTURE_TEMPLATES / "demo"),  # the server's own checkout
        sys.prefix,  # the server's virtualenv
        str(Path.home()),
        "/home",
    ]


def assert_saw_nothing(report: dict[str, Any], secrets: list[str]) -> None:
    text = json.dumps(report)
    for secret in secrets:
        assert secret not in text
    allowed = {*KEPT_ENVIRONMENT, "PATH", "HOME", "PWD", "PLTF_CONTEXT_FILE", "PLTF_PREVIEW_ID", "PLTF_PREVIEW_URL"}
    allowed |= {"PORT", "HOST", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "APP_PORT", "APP_ENVIRONMENT"}
    assert set(report["env"]) <= allowed
    assert set(report["procEnvironNames"]) <= allowed
    # A directory on the way to what the code was given (its workspace, Python) exists, holding only that way on.
    own = [Path(sys.base_prefix), Path(report["env"]["HOME"])]
    for path, state in report["paths"].items():
        if state.startswith("listed: "):
            names = state.removeprefix("listed: ").split(",")
            assert all(any(o.is_relative_to(Path(path) / name) for o in own) for name in names), (path, state)
        else:
            assert state == "missing", (path, state)
    if os.geteuid() == 0:
        assert report["uid"] == SANDBOX_UID


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_hooks_see_no_secret_no_server_environment_and_no_data(
    tmp_path: Path, secrets_in_environment: None, backend: str
) -> None:
    settings = secret_settings(tmp_path, sandbox=backend)
    with server(settings) as client:
        another_teams_repository(client)
        token = settings.storage.generated_token_path.read_text().strip()
        body = {
            "input": {"template": "snooping-hook", "values": {"probes": ",".join(probes(settings))}},
            "dryRun": True,
        }
        run = client.post(RENDER, json=body)
        assert run.status_code == 200, run.text
        files = {f["path"]: base64.b64decode(f["base64Content"]) for f in run.json()["output"]["directoryContents"]}
        after = json.loads(files["snoop-post.json"])
        (line,) = [e["message"] for e in run.json()["log"] if e["message"].startswith("hook pre_gen_project: ")]
        before = json.loads(line.removeprefix("hook pre_gen_project: "))
    for report in (before, after):
        assert_saw_nothing(report, [token, GITHUB_TOKEN, ENV_TOKEN])
        assert report["env"]["HOME"] == report["env"]["PWD"]  # its workspace


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_a_preview_sees_no_secret_no_data_and_no_other_preview(
    tmp_path: Path, secrets_in_environment: None, backend: str
) -> None:
    repo = service_repository(tmp_path)
    sources = [f"file://{tmp_path}/"]
    settings = secret_settings(tmp_path, sandbox=backend, preview_sources=sources, preview_reap_seconds=0.2)
    try:
        with server(settings) as client:
            another_teams_repository(client)
            token = settings.storage.generated_token_path.read_text().strip()
            created = {}
            for service in ("users-api", "orders-api"):
                body = {"input": {"repoUrl": repo, "service": service}}
                response = client.post("/v1/actions/preview:create/runs", json=body)
                assert response.status_code == 200, response.text
                created[service] = response.json()["output"]["previewId"]
            other = settings.storage.data_dir.resolve() / "previews" / "envs" / created["users-api"]
            query = ",".join([*probes(settings), str(other), str(other / "src" / "server.py")])
            seen = client.get(f"/snoop?probes={query}", headers={"Host": "orders-api.preview.localhost:8787"})
            assert seen.status_code == 200, seen.text
            report = seen.json()
            for preview_id in created.values():
                client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": preview_id}})
    finally:
        assert kill_leftovers(settings) == []
    assert_saw_nothing(report, [token, GITHUB_TOKEN, ENV_TOKEN])
    assert report["env"]["PLTF_PREVIEW_ID"] == created["orders-api"]


@pytest.mark.parametrize(
    ("attack", "limits", "expected"),
    [
        ("fork", {"sandbox_max_processes": 64}, "Resource temporarily unavailable"),
        ("memory", {"sandbox_memory_mb": 256}, "MemoryError"),
        ("cpu", {"sandbox_cpu_seconds": 1}, "CPU time (PLTF_SANDBOX_CPU_SECONDS)"),
    ],
)
def test_a_hook_past_its_limits_is_stopped_and_the_server_carries_on(
    tmp_path: Path, attack: str, limits: dict[str, int], expected: str
) -> None:
    with server(secret_settings(tmp_path, **limits)) as client:
        run = client.post(RENDER, json={"input": {"template": "hostile-hook", "values": {"attack": attack}}})
        assert run.status_code == 422, run.text
        error = run.json()["error"]
        assert error["code"] == "hook_failed" and expected in error["message"]
        assert client.get("/healthz").status_code == 200
        assert client.post(RENDER, json={"input": {"template": "demo"}}).status_code == 200


def test_sandbox_off_runs_hooks_unisolated_and_says_so(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path, sandbox="off")
    with server(settings) as client:
        assert client.get("/readyz").json() == {"status": "ready", "sandbox": "off"}
        body = {"input": {"template": "snooping-hook", "values": {"probes": str(settings.storage.data_dir.resolve())}}}
        run = client.post(RENDER, json={**body, "dryRun": True})
        assert run.status_code == 200, run.text
        (report,) = [f for f in run.json()["output"]["directoryContents"] if f["path"] == "snoop-post.json"]
        # Unsafe, as documented: the hook lists the data dir.
        paths = json.loads(base64.b64decode(report["base64Content"]))["paths"]
        assert paths[str(settings.storage.data_dir.resolve())].startswith("listed: ")
    shown = pltf("config", env={"PLTF_SANDBOX": "off"})
    assert "PLTF_SANDBOX=off" in shown.stdout and "# sandbox_in_use: off" in shown.stdout


def test_without_a_sandbox_hooks_are_refused_clearly_and_readyz_says_why(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    # No bwrap and no unshare on this PATH, only git (which the server itself runs): no sandbox can be had.
    only_git = tmp_path / "only-git"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    nowhere = {**server_env, "PATH": str(only_git)}
    running = ServerProcess(nowhere, tmp_path / "server.log").start()
    try:
        with running.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["sandbox"] == "unavailable" and "bubblewrap" in ready.json()["sandboxProblem"]
            refused = client.post(RENDER, json={"input": {"template": "hooked"}})
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "sandbox_unavailable"
            assert "install bubblewrap" in error["message"] and "PLTF_SANDBOX=off" in error["message"]
            # What runs no template code is unaffected.
            assert client.post(RENDER, json={"input": {"template": "demo"}}).status_code == 200
    finally:
        running.stop()
    shown = pltf("config", env={"PATH": str(only_git)})
    assert "# sandbox_in_use: unavailable" in shown.stdout


def test_template_check_runs_the_generated_service_tests_in_the_sandbox(
    tmp_path: Path, secrets_in_environment: None
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the server's")
    service = tmp_path / "service"
    (service / "tests").mkdir(parents=True)
    (service / "pyproject.toml").write_text(
        '[project]\nname = "probe"\nversion = "0.1.0"\n[tool.setuptools]\npy-modules = []\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    (service / "requirements-dev.txt").write_text("pytest\n")
    (service / "tests" / "test_where.py").write_text(
        "import os\n\n\n"
        "def test_it_sees_nothing_of_the_server():\n"
        f"    assert not os.path.exists({str(secret)!r})\n"
        "    assert not any(name.startswith('PLTF_') for name in os.environ)\n"
        f"    assert os.geteuid() == {SANDBOX_UID if os.geteuid() == 0 else os.geteuid()}\n"
    )
    assert [str(finding) for finding in template_check.check_service_tests(service)] == []


def test_a_hook_cannot_plant_a_link_for_the_server_to_follow(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    with server(settings) as client:
        token_file = str(settings.storage.generated_token_path.resolve())
        body = {"input": {"template": "snooping-hook", "values": {"plant": token_file}}, "dryRun": True}
        run = client.post(RENDER, json=body)
        assert run.status_code == 422
        assert (
            run.json()["error"]["message"] == "template hook post_gen_project made planted a link out of its directory"
        )
        assert settings.storage.generated_token_path.read_text().strip() not in run.text


def test_a_scratch_directory_lent_from_dev_shm_keeps_the_sandboxs_shm_as_made() -> None:
    # The unshare backend mounts a 1777 tmpfs at /dev/shm; re-making it as a plain 0755 directory for the
    # lent path under it would keep a hook that drops to another uid from shared memory.
    from actions_server.sandbox import _Mounts, _unshare_script

    mounts = _Mounts()
    mounts.add("dev", "", "/dev")
    mounts.add("bind", "/dev/shm/pltf-run-x/out", "/dev/shm/pltf-run-x/out")
    script = _unshare_script(mounts, "/root-of-jail", "/dev/shm/pltf-run-x/out")
    assert ("dir", "", "/dev/shm") not in mounts.ops and ("dir", "", "/dev") not in mounts.ops
    assert 'chmod 0755 "$R"/dev/shm\n' not in script
    assert ("dir", "", "/dev/shm/pltf-run-x") in mounts.ops
