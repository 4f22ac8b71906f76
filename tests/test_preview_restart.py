"""A real server killed with SIGKILL and restarted: it adopts the previews still answering
/readyz, stops and cleans up the rest, and sweeps leftovers; none is leaked. Also the CLI."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from previews_support import Gate, pid_alive, service_repository
from test_previews import kill_leftovers, preview_settings

from conftest import TOKEN, ServerProcess, pltf, wait_until


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return pltf(*args, env={"PLTF_URL": server.url, "PLTF_API_TOKEN": TOKEN})


def test_restart_adopts_live_previews_and_cleans_up_the_rest(tmp_path: Path, server_env: dict[str, str]) -> None:
    gate = Gate()
    gate.open()
    repo = service_repository(tmp_path, gate=gate)
    env = {**server_env, "PLTF_PREVIEW_SOURCES": f"file://{tmp_path}/", "PLTF_PREVIEW_REAP_SECONDS": "0.2"}
    server = ServerProcess(env, tmp_path / "server.log").start()
    envs = tmp_path / "data" / "previews" / "envs"
    try:
        with server.client() as client:

            def create(service: str, **extra: str) -> dict[str, str]:
                body = {"input": {"repoUrl": repo, "service": service, **extra}}
                response = client.post("/v1/actions/preview:create/runs", json=body)
                assert response.status_code == 200, response.text
                assert response.json()["output"]["status"] == "ready"
                return dict(response.json()["output"])

            kept = create("users-api")
            dropped = create("orders-api", ref="gated")
        kept_pid = int((envs / kept["previewId"] / "pid").read_text())
        dropped_pid = int((envs / dropped["previewId"] / "pid").read_text())
        orphan = envs / "pv-orphan"  # a directory no preview owns, as a crash mid-create leaves
        orphan.mkdir()

        server.kill()
        assert pid_alive(kept_pid) and pid_alive(dropped_pid)  # previews outlive the server
        gate.close()  # orders-api no longer answers /readyz 200

        server.start()
        with server.client() as client:
            wait_until(
                lambda: client.get(f"/v1/previews/{dropped['previewId']}").json()["status"] == "failed",
                what="the unready preview cleaned up",
            )
            assert client.get(f"/v1/previews/{kept['previewId']}").json()["status"] == "ready"
            host = f"users-api.preview.localhost:{server.port}"
            assert client.get("/healthz", headers={"Host": host}).status_code == 200
            assert pid_alive(kept_pid)
            assert not pid_alive(dropped_pid)
            assert not (envs / dropped["previewId"]).exists()
            # Adoption removes what no preview owns after it settles the previews it knows.
            wait_until(lambda: not orphan.exists(), what="the orphaned directory removed")
            shown = client.get(f"/v1/previews/{dropped['previewId']}").json()
            assert "server restarted" in shown["detail"]

        listed = cli(server, "previews", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [p["id"] for p in json.loads(listed.stdout)["previews"]] == [kept["previewId"]]
        text = cli(server, "previews", "list", "--all")
        assert "users-api" in text.stdout and "orders-api" in text.stdout

        destroyed = cli(server, "previews", "destroy", kept["previewId"])
        assert destroyed.returncode == 0, destroyed.stderr
        assert "destroyed" in destroyed.stdout
        assert httpx.get(f"{server.url}/healthz", headers={"Host": host}).status_code == 404
        assert not pid_alive(kept_pid)

        collected = cli(server, "previews", "gc", "--json")
        assert collected.returncode == 0, collected.stderr
        assert json.loads(collected.stdout)["removed"] == []
        missing = cli(server, "previews", "destroy", "pv-nope")
        assert missing.returncode == 1 and "no preview" in missing.stderr
    finally:
        gate.close()
        server.stop()
        assert kill_leftovers(preview_settings(tmp_path)) == []


@pytest.mark.postgres
def test_two_replicas_on_one_postgres_make_one_environment(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str
) -> None:
    repo = service_repository(tmp_path)
    env = {
        **server_env,
        "PLTF_DATABASE_URL": postgres_url,
        "PLTF_PREVIEW_SOURCES": f"file://{tmp_path}/",
        "PLTF_PREVIEW_REAP_SECONDS": "0.2",
    }
    servers = [ServerProcess(env, tmp_path / f"server-{n}.log").start() for n in range(2)]
    try:
        body = {"input": {"repoUrl": repo, "service": "users-api"}}

        def create(n: int) -> httpx.Response:
            with servers[n % 2].client() as client:
                return client.post("/v1/actions/preview:create/runs", json=body)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(create, range(8)))
        assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
        ids = {r.json()["output"]["previewId"] for r in responses}
        assert len(ids) == 1
        envs = tmp_path / "data" / "previews" / "envs"
        assert [p.name for p in envs.iterdir()] == list(ids)
        with servers[1].client() as client:
            host = {"Host": f"users-api.preview.localhost:{servers[1].port}"}
            assert client.get("/healthz", headers=host).status_code == 200
            destroyed = client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": ids.pop()}})
            assert destroyed.json()["output"]["status"] == "destroyed"
    finally:
        for server in servers:
            server.stop()
        assert kill_leftovers(preview_settings(tmp_path)) == []
