"""A real preview of the real golden template: cookiecutters/python-service, rendered, committed
to a git repository, installed from its pinned requirements.txt and started with uvicorn."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from previews_support import git
from test_previews import kill_leftovers, preview_settings, running

from actions_server.config import PROJECT_ROOT


def test_the_golden_template_runs_as_a_preview_at_its_clean_url(tmp_path: Path) -> None:
    settings = preview_settings(
        tmp_path,
        templates_dir=PROJECT_ROOT / "cookiecutters",
        run_wait_seconds=170.0,
        preview_ready_timeout_seconds=60.0,
    )
    with running(settings) as client:
        rendered = client.post(
            "/v1/actions/cookiecutter:render/runs",
            json={"input": {"template": "python-service", "values": {"name": "users-api"}}},
        )
        assert rendered.status_code == 200, rendered.text
        archive = client.get(f"/v1/workspaces/{rendered.json()['output']['workspaceId']}/archive")
        work = tmp_path / "rendered"
        with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
            tar.extractall(work, filter="data")
        (project,) = [p for p in work.iterdir() if p.is_dir()]
        git(project, "init", "-q", "-b", "main")
        git(project, "add", ".")
        git(project, "commit", "-qm", "Initial commit from python-service")
        bare = tmp_path / "repos" / "users-api.git"
        git(tmp_path, "clone", "-q", "--bare", str(project), str(bare))

        response = client.post(
            "/v1/actions/preview:create/runs", json={"input": {"repoUrl": f"file://{bare}", "service": "users-api"}}
        )
        assert response.status_code == 200, response.text
        out = response.json()["output"]
        assert out["status"] == "ready"
        host = {"Host": "users-api.preview.localhost:8787"}
        assert client.get("/healthz", headers=host).json() == {"status": "ok", "checks": {}}
        assert client.get("/readyz", headers=host).status_code == 200
        assert (
            "http_requests" in client.get("/metrics", headers=host).text
            or client.get("/metrics", headers=host).status_code == 200
        )

        client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": out["previewId"]}})
        assert client.get("/healthz", headers=host).status_code == 404
    assert kill_leftovers(settings) == []
