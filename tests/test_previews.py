"""preview:create / preview:destroy with the local provider: a real service, served at its clean URL.

The service is tests/fixtures/preview-service (stdlib only) in a real git repository;
every readiness and teardown is observed by polling with a deadline, never by sleeping.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from previews_support import Gate, pid_alive, service_repository
from sqlalchemy import create_engine, update

from actions_server.app import create_app
from actions_server.auth import hash_token
from actions_server.config import Settings
from actions_server.previews import previews_table
from conftest import TOKEN, make_settings, wait_until

HOST = "users-api.preview.localhost:8787"


def preview_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"preview_sources": [f"file://{tmp_path}/"], "preview_reap_seconds": 0.2}
    values.update(overrides)
    return make_settings(tmp_path, **values)


def kill_leftovers(settings: Settings) -> list[int]:
    """Whatever a failing test left running (found in /proc, even if its directory is gone); a passing test leaves nothing."""
    killed = []
    root = str(settings.storage.data_dir)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"PLTF_PREVIEW_ID=" not in (proc / "environ").read_bytes():
                continue
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd.startswith(root) and pid_alive(int(proc.name)):
            os.killpg(os.getpgid(int(proc.name)), signal.SIGKILL)
            killed.append(int(proc.name))
    return killed


@pytest.fixture
def gate() -> Iterator[Gate]:
    closed = Gate()
    yield closed
    closed.close()


@pytest.fixture
def repo(tmp_path: Path, gate: Gate) -> str:
    return service_repository(tmp_path, gate=gate)


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        try:
            yield client
        finally:
            for preview in client.get("/v1/previews", params={"status": "active"}).json()["previews"]:
                client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": preview["id"]}})
    assert kill_leftovers(settings) == []


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with running(preview_settings(tmp_path)) as test_client:
        yield test_client


def create(client: TestClient, repo: str, **extra: Any) -> Any:
    return client.post(
        "/v1/actions/preview:create/runs", json={"input": {"repoUrl": repo, "service": "users-api", **extra}}
    )


def test_preview_serves_its_clean_url_and_destroy_stops_it(client: TestClient, repo: str) -> None:
    response = create(client, repo, owner="group:default/platform-team", experiment="new-checkout")
    assert response.status_code == 200, response.text
    out = response.json()["output"]
    assert out["status"] == "ready"
    assert out["previewUrl"] == "http://users-api.preview.localhost:8787/"
    assert out["namespace"] == "users-api-preview"
    assert out["previewId"].startswith("pv-") and out["expiresAt"].endswith("Z")
    messages = [line["message"] for line in response.json()["log"]]
    assert any("started" in m for m in messages) and any("preview ready" in m for m in messages)

    health = client.get("/healthz", headers={"Host": HOST})
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "preview": out["previewId"]}
    # The path-based fallback, by name and by id.
    assert client.get("/previews/users-api/healthz").status_code == 200
    assert client.get(f"/previews/{out['previewId']}/healthz").status_code == 200
    # Bodies stream both ways; forwarding headers are set; no server secret reaches the service.
    streamed = client.get("/stream", headers={"Host": HOST})
    assert streamed.text.splitlines()[-1] == "line 99"
    upload = client.post("/upload", headers={"Host": HOST}, content=b"x" * 3_000_000)
    assert upload.json() == {"path": "/upload", "received": 3_000_000}
    echoed = client.get("/echo?q=1", headers={"Host": HOST}).json()
    assert echoed["path"] == "/echo?q=1"
    assert echoed["headers"]["x-forwarded-host"] == HOST
    assert echoed["env"] == ["PLTF_PREVIEW_ID", "PLTF_PREVIEW_URL"]
    # The rest of the app is untouched.
    assert client.get("/healthz").json() == {"status": "ok"}

    shown = client.get(f"/v1/previews/{out['previewId']}").json()
    assert shown["status"] == "ready" and shown["experiment"] == "new-checkout" and shown["commit"]
    assert any("fixture service starting" in line for line in shown["logTail"])

    destroyed = client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": out["previewId"]}})
    assert destroyed.status_code == 200, destroyed.text
    assert destroyed.json()["output"]["status"] == "destroyed"
    gone = client.get("/healthz", headers={"Host": HOST})
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "no_preview"
    assert client.get(f"/v1/previews/{out['previewId']}").json()["status"] == "destroyed"
    # Destroying again is not an error.
    again = client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": out["previewId"]}})
    assert again.status_code == 200 and again.json()["output"]["status"] == "destroyed"


def test_destroy_stops_the_process_and_frees_its_directory(tmp_path: Path, repo: str) -> None:
    settings = preview_settings(tmp_path)
    with running(settings) as client:
        preview_id = create(client, repo).json()["output"]["previewId"]
        home = settings.storage.data_dir / "previews" / "envs" / preview_id
        pid = int((home / "pid").read_text())
        assert pid_alive(pid)
        client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": preview_id}})
        assert not pid_alive(pid)
        assert not home.exists()


def test_the_same_request_concurrently_makes_one_environment(client: TestClient, repo: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: create(client, repo), range(6)))
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    ids = {r.json()["output"]["previewId"] for r in responses}
    assert len(ids) == 1
    active = client.get("/v1/previews", params={"status": "active"}).json()["previews"]
    assert [p["id"] for p in active] == list(ids)


def test_a_different_request_for_a_name_in_use_is_a_conflict(client: TestClient, repo: str) -> None:
    assert create(client, repo).status_code == 200
    response = create(client, repo, ref="never-ready")
    assert response.status_code == 409
    assert "already runs" in response.json()["error"]["message"]


def test_a_pull_request_gets_its_own_name_and_namespace(client: TestClient, repo: str) -> None:
    response = create(client, repo, pullRequest=7)
    assert response.status_code == 200, response.text
    out = response.json()["output"]
    assert out["previewUrl"] == "http://users-api-pr-7.preview.localhost:8787/"
    assert out["namespace"] == "users-api-pr-7"
    assert client.get("/healthz", headers={"Host": "users-api-pr-7.preview.localhost:8787"}).status_code == 200
    missing = create(client, repo, pullRequest=8)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "ref_not_found"
    assert [p["name"] for p in client.get("/v1/previews", params={"status": "active"}).json()["previews"]] == [
        "users-api-pr-7"
    ]


def test_previews_are_listed_newest_first_a_page_at_a_time(client: TestClient, repo: str) -> None:
    made = [create(client, repo).json()["output"]["previewId"]]
    made.append(create(client, repo, pullRequest=7).json()["output"]["previewId"])
    first = client.get("/v1/previews", params={"limit": 1}).json()
    assert [p["id"] for p in first["previews"]] == [made[1]] and first["nextCursor"]
    second = client.get("/v1/previews", params={"limit": 1, "cursor": first["nextCursor"]}).json()
    assert [p["id"] for p in second["previews"]] == [made[0]] and second["nextCursor"] is None
    assert client.get("/v1/previews", params={"cursor": "%%%"}).status_code == 422


def test_past_the_cap_the_answer_is_429(tmp_path: Path, repo: str) -> None:
    with running(preview_settings(tmp_path, preview_max_active=1)) as client:
        assert create(client, repo).status_code == 200
        response = create(client, repo, pullRequest=7)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "too_many_previews"
        assert "limit is 1" in response.json()["error"]["message"]
        # The same request as the running one is still answered (it makes nothing new).
        assert create(client, repo).status_code == 200
        assert client.get("/v1/runs", params={"action": "preview:create"}).json()["runs"].__len__() == 2


def test_a_service_that_never_gets_ready_fails_the_run_with_its_log(tmp_path: Path, repo: str) -> None:
    with running(preview_settings(tmp_path, preview_ready_timeout_seconds=1.5)) as client:
        response = create(client, repo, ref="never-ready")
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert error["code"] == "preview_failed"
        assert "did not answer 200 within 1.5 s" in error["message"]
        assert "database unreachable" in error["message"]
        assert any("database unreachable" in line["message"] for line in response.json()["log"])
        (preview,) = client.get("/v1/previews").json()["previews"]
        assert preview["status"] == "failed"
        assert any("database unreachable" in line for line in preview["logs"])
        # Its name is free again, and nothing of it is left.
        assert client.get("/v1/previews", params={"status": "active"}).json()["previews"] == []
        assert list((tmp_path / "data" / "previews" / "envs").iterdir()) == []


def test_a_service_that_crashes_fails_the_run_with_its_log(client: TestClient, repo: str) -> None:
    response = create(client, repo, ref="crash")
    assert response.status_code == 502, response.text
    assert "exited with code 3" in response.json()["error"]["message"]
    assert "APP_DATABASE_URL is not set" in response.json()["error"]["message"]


def test_best_effort_reports_failure_without_failing_the_run(client: TestClient, repo: str) -> None:
    response = create(client, repo, ref="crash", bestEffort=True)
    assert response.status_code == 200
    assert response.json()["output"]["status"] == "failed"
    assert "exited" in response.json()["output"]["reason"]


def test_the_run_answers_starting_within_its_bound_then_readiness_shows(tmp_path: Path, repo: str, gate: Gate) -> None:
    with running(preview_settings(tmp_path, run_wait_seconds=3.0)) as client:
        started = time.monotonic()
        response = create(client, repo, ref="gated")
        assert time.monotonic() - started < 3.0
        assert response.status_code == 200, response.text
        out = response.json()["output"]
        assert out["status"] == "starting"
        assert out["previewUrl"] == "http://users-api.preview.localhost:8787/"
        run_id = response.json()["id"]
        starting = client.get("/healthz", headers={"Host": HOST})
        assert starting.status_code == 503 and starting.headers["retry-after"] == "2"

        gate.open()
        wait_until(lambda: client.get(f"/v1/previews/{out['previewId']}").json()["status"] == "ready", what="ready")
        run = wait_until(
            lambda: (r := client.get(f"/v1/runs/{run_id}").json())["output"]["status"] == "ready" and r,
            what="readiness on the run",
        )
        assert any("is ready at" in line["message"] for line in run["log"])
        assert client.get("/healthz", headers={"Host": HOST}).status_code == 200


def test_an_expired_preview_is_reaped(tmp_path: Path, repo: str) -> None:
    settings = preview_settings(tmp_path)
    with running(settings) as client:
        out = create(client, repo, ttlSeconds=60).json()["output"]
        engine = create_engine(settings.storage.resolved_database_url)
        with engine.begin() as conn:  # as if its TTL had run out
            conn.execute(
                update(previews_table).where(previews_table.c.id == out["previewId"]).values(expires_at=time.time() - 1)
            )
        engine.dispose()
        wait_until(lambda: client.get(f"/v1/previews/{out['previewId']}").json()["status"] == "expired", what="reaped")
        assert client.get("/healthz", headers={"Host": HOST}).status_code == 404
        # The row is finished before the files go (so no supervisor restarts it meanwhile): wait for the removal.
        home = settings.storage.data_dir / "previews" / "envs" / out["previewId"]
        wait_until(lambda: not home.exists(), what="the checkout to be removed")


def test_the_supervisor_restarts_a_crashed_service(tmp_path: Path, repo: str) -> None:
    settings = preview_settings(tmp_path)
    with running(settings) as client:
        out = create(client, repo).json()["output"]
        pid_file = settings.storage.data_dir / "previews" / "envs" / out["previewId"] / "pid"
        first = int(pid_file.read_text())
        os.killpg(first, signal.SIGKILL)
        wait_until(lambda: int(pid_file.read_text()) != first, what="a restart")
        wait_until(lambda: client.get("/healthz", headers={"Host": HOST}).status_code == 200, what="serving again")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"repoUrl": "https://evil.example.com/x/users-api.git"}, "repoUrl"),
        ({"repoUrl": "https://user:secret@evil.example.com/users-api.git"}, "repoUrl"),
        ({"ref": "main", "pullRequest": 3}, "input"),
        ({"ref": "../etc"}, "input"),
        ({"service": "Users_API"}, "input.service"),
        ({"ttlSeconds": 10**8}, "ttlSeconds"),
        ({"service": "a" * 60, "pullRequest": 12345}, "service"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(
    client: TestClient, repo: str, extra: dict[str, Any], field: str
) -> None:
    body = {"repoUrl": repo, "service": "users-api", **extra}
    response = client.post("/v1/actions/preview:create/runs", json={"input": body})
    assert response.status_code == 422, response.text
    assert any(f["field"].startswith(field) for f in response.json()["error"]["fields"])
    assert "secret" not in response.text
    assert client.get("/v1/runs", params={"action": "preview:create"}).json()["runs"] == []
    assert client.get("/v1/previews").json()["previews"] == []


def test_unknown_previews_are_404(client: TestClient) -> None:
    assert client.get("/v1/previews/pv-nope").status_code == 404
    assert client.get("/anything", headers={"Host": "nope.preview.localhost:8787"}).status_code == 404
    assert client.get("/previews/nope/").status_code == 404
    response = client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": "pv-nope"}})
    assert response.status_code == 404
    assert client.get("/v1/previews", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_proxy_keeps_pltfs_credentials_from_the_preview(client: TestClient, repo: str) -> None:
    assert create(client, repo).status_code == 200
    credentials = {
        "Authorization": f"Bearer {TOKEN}",
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "Cookie": "pltf_session=s3cret",
        "X-Api-Key": "key-s3cret",
        "X-Pltf-Token": "pltf-s3cret",
    }
    for path, host in (("/echo", {"Host": HOST}), ("/previews/users-api/echo", {})):
        received = client.get(path, headers={**credentials, **host, "X-Trace": "kept"}).json()["headers"]
        assert received["x-trace"] == "kept", path
        assert not {name.lower() for name in credentials} & received.keys(), path
        assert TOKEN not in str(received) and "s3cret" not in str(received), path


def test_path_based_answers_are_sandboxed_and_set_no_cookie(client: TestClient, repo: str) -> None:
    assert create(client, repo).status_code == 200
    # On the API's own origin: no cookie for the API's origin, and a sandbox (no allow-same-origin).
    page = client.get("/previews/users-api/page")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in page.headers
    policies = page.headers.get_list("content-security-policy")
    assert "default-src 'self'" in policies
    (sandbox,) = [policy for policy in policies if policy.startswith("sandbox")]
    assert "allow-scripts" in sandbox and "allow-same-origin" not in sandbox
    # The clean URL is an origin of its own: the preview's headers as it sent them.
    clean = client.get("/page", headers={"Host": HOST})
    assert clean.headers["set-cookie"].startswith("preview_session=abc")
    assert clean.headers.get_list("content-security-policy") == ["default-src 'self'"]


def test_preview_sources_are_compared_after_resolving_dot_segments(tmp_path: Path, repo: str) -> None:
    settings = preview_settings(
        tmp_path, preview_sources=[f"file://{tmp_path}/repos/", "http://git.example.test/platform-team/"]
    )
    with running(settings) as client:
        forge = f"{settings.server.base_url}/git"
        for url in (
            "http://git.example.test/platform-team/../team-b/users-api.git",
            "http://git.example.test/platform-team/%2e%2e/team-b/users-api.git",
            "http://git.example.test/platform-team-evil/users-api.git",
            f"{forge}/platform-team/%2E%2E/%2e%2e/pltf.db",
            f"file://{tmp_path}/repos/../service-src",
            f"file://{tmp_path}/repos-old/users-api.git",
        ):
            response = create(client, url)
            assert response.status_code == 422, url
            assert [f["field"] for f in response.json()["error"]["fields"]] == ["repoUrl"], url
        assert client.get("/v1/runs").json()["runs"] == []
        # Under the prefix, however spelt, it passes the check (a dry run fetches nothing).
        planned = client.post(
            "/v1/actions/preview:create/runs",
            json={"input": {"repoUrl": "HTTP://git.example.test:80/platform-team/./users-api.git"}, "dryRun": True},
        )
        assert planned.status_code == 200, planned.text


PREVIEW_TOKENS = {
    "team-a": ("preview-team-a-token", "group:default/team-a"),
    "team-b": ("preview-team-b-token", "group:default/team-b"),
    "team-b-2": ("preview-team-b-second-token", "group:default/team-b"),
}


def test_previews_are_listed_read_and_destroyed_only_by_their_team(tmp_path: Path, repo: str) -> None:
    token_file = tmp_path / "tokens.yaml"
    entries = [
        {"name": name, "sha256": hash_token(token), "actions": ["preview:*"], "team": team}
        for name, (token, team) in PREVIEW_TOKENS.items()
    ]
    token_file.write_text(yaml.safe_dump({"tokens": entries}))

    def as_(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {PREVIEW_TOKENS[name][0]}"}

    with running(preview_settings(tmp_path, token_file=token_file)) as client:
        made = client.post(
            "/v1/actions/preview:create/runs",
            json={"input": {"repoUrl": repo, "service": "users-api"}},
            headers=as_("team-b"),
        )
        assert made.status_code == 200, made.text
        preview_id = made.json()["output"]["previewId"]

        assert client.get("/v1/previews", headers=as_("team-a")).json()["previews"] == []
        for key in (preview_id, "users-api"):
            assert client.get(f"/v1/previews/{key}", headers=as_("team-a")).status_code == 404
        destroy = {"input": {"previewId": preview_id}}
        refused = client.post("/v1/actions/preview:destroy/runs", json=destroy, headers=as_("team-a"))
        assert refused.status_code == 404, refused.text
        assert client.get("/healthz", headers={"Host": HOST}).status_code == 200

        listed = client.get("/v1/previews", headers=as_("team-b-2")).json()["previews"]
        assert [p["id"] for p in listed] == [preview_id]
        assert [p["id"] for p in client.get("/v1/previews").json()["previews"]] == [preview_id]  # the admin
        destroyed = client.post("/v1/actions/preview:destroy/runs", json=destroy, headers=as_("team-b-2"))
        assert destroyed.status_code == 200 and destroyed.json()["output"]["status"] == "destroyed"
