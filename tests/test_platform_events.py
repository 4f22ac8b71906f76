"""The platform's own events reach the portal: a new repository, its first commit and later pushes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import create_engine, select

from actions_server.config import PROJECT_ROOT
from actions_server.portal.tables import changes, service_info
from conftest import TOKEN, ServerProcess


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60)
    return result.stdout.strip()


def test_repository_and_pushes_become_changes(tmp_path: Path, server_env: dict[str, str]) -> None:
    env = {**server_env, "PLTF_TEMPLATES_DIR": str(PROJECT_ROOT / "cookiecutters")}
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        with server.client() as http:
            body = {"input": {"name": "events-api", "owner": "group:default/growth", "preview": False}}
            run = http.post("/v1/actions/service:create/runs", json=body).json()
            assert run["status"] == "succeeded", run["error"]
            first = run["output"]["commitHash"]

        checkout = tmp_path / "checkout"
        git("clone", "-q", run["output"]["remoteUrl"], str(checkout), cwd=tmp_path)
        (checkout / "CHANGELOG.md").write_text("# Changes\n")
        git("add", ".", cwd=checkout)
        git("-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", "changelog", cwd=checkout)
        second = git("rev-parse", "HEAD", cwd=checkout)
        push_url = run["output"]["remoteUrl"].replace("http://", f"http://dev:{TOKEN}@")
        git("push", "-q", push_url, "HEAD:main", cwd=checkout)
    finally:
        server.stop()

    database = create_engine(f"sqlite:///{Path(server_env['PLTF_DATA_DIR']) / 'pltf.db'}")
    with database.connect() as conn:
        shas = set(conn.execute(select(changes.c.sha).where(changes.c.service == "events-api")).scalars())
        team = conn.execute(select(service_info.c.team).where(service_info.c.name == "events-api")).scalar()
    assert {first, second} <= shas
    assert team is not None and "growth" in team
