"""`pltf create service users api` against a real server: every promise of the golden path, end to end.

Repository (issue 4), catalog entity and page (issue 5), preview (issue 6), and the
portal's scorecard and cost (issue 9), all from one command on the embedded defaults.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
from test_cli import pltf

from actions_server.config import PROJECT_ROOT
from conftest import ServerProcess


def test_create_service_users_api(tmp_path: Path, server_env: dict[str, str]) -> None:
    env = {**server_env, "PLTF_TEMPLATES_DIR": str(PROJECT_ROOT / "cookiecutters"), "PLTF_RUN_WAIT_SECONDS": "120"}
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        cli_env = {"PLTF_URL": server.url, "PLTF_API_TOKEN": env["PLTF_API_TOKEN"]}
        created = pltf("create", "service", "users", "api", "--json", env=cli_env)
        assert created.returncode == 0, created.stderr
        output = json.loads(created.stdout)["output"]
        assert output["name"] == "users-api" and output["skipped"] == []
        titles = {link["title"] for link in output["links"]}
        assert {"Repository", "Catalog entity", "catalog-info.yaml", "Preview", "Run log"} <= titles

        checkout = tmp_path / "users-api"
        subprocess.run(["git", "clone", "-q", output["remoteUrl"], str(checkout)], check=True, timeout=60)
        assert (checkout / "catalog-info.yaml").is_file() and (checkout / "Dockerfile").is_file()

        with httpx.Client(base_url=server.url, timeout=30) as anyone:  # catalog and portal need no token
            entity = anyone.get("/api/catalog/entities/by-name/component/default/users-api").json()
            assert entity["spec"]["owner"] == "group:default/platform-team"
            assert output["entityRef"] == "component:default/users-api"
            page = anyone.get("/catalog/default/component/users-api").text
            assert "platform-team" in page and output["repoContentsUrl"] in page and "api:default/users-api" in page

            host = {"Host": f"users-api.preview.localhost:{server.port}"}
            assert anyone.get("/healthz", headers=host).status_code == 200

            portal = anyone.get("/services/users-api").text
            assert "Scorecard" in portal and "Has a CI workflow" in portal
            assert "users-api-prod" in portal  # cost of the env the chart describes

        destroyed = pltf("previews", "destroy", "users-api", env=cli_env)
        assert destroyed.returncode == 0, destroyed.stderr
        with httpx.Client(base_url=server.url, timeout=30) as anyone:
            assert anyone.get("/healthz", headers=host).status_code == 404
    finally:
        server.stop()
