"""The v1 HTTP contract: listing, runs, errors, retries, limits, events and open endpoints."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from actions_server.app import create_app
from actions_server.auth import TokenFileError, hash_token
from conftest import TOKEN, make_settings

RENDER = "/v1/actions/cookiecutter:render/runs"


def test_listing_mirrors_backstage_shape(client: TestClient) -> None:
    body = client.get("/v1/actions").json()
    (render,) = [a for a in body["actions"] if a["id"] == "cookiecutter:render"]
    assert set(render) == {"id", "description", "schema", "examples"}
    assert render["schema"]["input"]["required"] == ["template"]
    assert "workspaceId" in render["schema"]["output"]["properties"]
    for example in render["examples"]:
        steps = yaml.safe_load(example["example"])["steps"]
        assert steps[0]["action"] == "cookiecutter:render"
    # Each local template contributes its own values schema.
    by_template = {
        rule["if"]["properties"]["template"]["const"]: rule["then"]["properties"]["values"]
        for rule in render["schema"]["input"]["allOf"]
    }
    assert by_template["demo"]["properties"]["port"]["type"] == "integer"
    assert client.get("/v1/actions/cookiecutter:render").json()["actions"][0]["id"] == "cookiecutter:render"


def test_unknown_action_is_404(client: TestClient) -> None:
    assert client.get("/v1/actions/nope:nothing").status_code == 404
    response = client.post("/v1/actions/nope:nothing/runs", json={"input": {}})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_run_renders_and_answers_with_output_and_log(client: TestClient) -> None:
    response = client.post(
        RENDER, json={"input": {"template": "demo", "values": {"name": "users-api", "port": "9000"}}}
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "succeeded"
    assert run["caller"] == "api-token", "a run records who started it"
    assert run["output"]["directory"] == "users-api"
    assert run["output"]["files"] == [".cruft.json", "README.md", "run.sh", "src/users_api/__init__.py"]
    assert run["output"]["templateVersion"] == "1.2.3"
    assert [line["message"] for line in run["log"]][-1] == "cookiecutter:render succeeded"
    assert response.headers["Location"] == f"/v1/runs/{run['id']}"

    archive = client.get(f"/v1/workspaces/{run['output']['workspaceId']}/archive")
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        readme = tar.extractfile("users-api/README.md")
        assert readme is not None
        text = readme.read().decode()
    assert "port=9000" in text and "slug=users_api" in text


def test_dry_run_returns_files_and_stores_no_workspace(client: TestClient, settings: object) -> None:
    response = client.post(RENDER, json={"input": {"template": "demo"}, "dryRun": True})
    run = response.json()
    assert run["dryRun"] is True and "workspaceId" not in run["output"]
    contents = {item["path"]: item for item in run["output"]["directoryContents"]}
    assert contents["run.sh"]["executable"] is True
    assert contents["README.md"]["executable"] is False
    assert base64.b64decode(contents["README.md"]["base64Content"]).startswith(b"# demo")


def test_invalid_input_is_422_with_fields_and_starts_no_run(client: TestClient) -> None:
    response = client.post(RENDER, json={"input": {"template": "demo", "values": {"port": "abc", "bogus": 1}}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert {f["field"] for f in error["fields"]} == {"values.port", "values.bogus"}
    missing = client.post(RENDER, json={"input": {}})
    assert [f["field"] for f in missing.json()["error"]["fields"]] == ["input.template"]
    unknown_template = client.post(RENDER, json={"input": {"template": "no-such"}})
    assert unknown_template.status_code == 422
    assert client.get("/v1/runs").json()["runs"] == []


def test_tokens_401_and_403(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.yaml"
    token_file.write_text(
        yaml.safe_dump(
            {"tokens": [{"name": "reader", "sha256": hash_token("reader-token-123"), "actions": ["repo:*"]}]}
        )
    )
    settings = make_settings(tmp_path, token_file=token_file)
    with TestClient(create_app(settings)) as anonymous:
        assert anonymous.get("/v1/actions").status_code == 401
        assert anonymous.get("/v1/actions", headers={"Authorization": "Bearer wrong"}).status_code == 401
        limited = {"Authorization": "Bearer reader-token-123"}
        assert anonymous.get("/v1/actions", headers=limited).status_code == 200
        forbidden = anonymous.post(RENDER, json={"input": {"template": "demo"}}, headers=limited)
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
        full = {"Authorization": f"Bearer {TOKEN}"}
        assert anonymous.post(RENDER, json={"input": {"template": "demo"}}, headers=full).status_code == 200
    # Configured tokens mean no generated token file.
    assert not settings.storage.generated_token_path.exists()


@pytest.mark.parametrize(
    "authorization",
    [f"Basic {TOKEN}", f"Token {TOKEN}", TOKEN, f"Bearer{TOKEN}", f"Bearer: {TOKEN}"],
    ids=["basic-scheme", "token-scheme", "bare-token", "no-space", "colon"],
)
def test_only_the_bearer_scheme_carries_a_token(tmp_path: Path, authorization: str) -> None:
    # The right token under any other scheme is refused: proxies and logs treat schemes differently.
    with TestClient(create_app(make_settings(tmp_path))) as anonymous:
        response = anonymous.get("/v1/runs", headers={"Authorization": authorization})
        assert response.status_code == 401, response.text
        assert response.json() == {
            "error": {
                "code": "unauthorized",
                "message": "a valid API token is required (Authorization: Bearer <token>)",
                "status": 401,
            }
        }
        refused = anonymous.post(RENDER, json={"input": {"template": "demo"}}, headers={"Authorization": authorization})
        assert refused.status_code == 401
        assert anonymous.get("/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"}).json()["runs"] == []
        # RFC 6750 allows more than one space after the scheme, and the scheme in any case.
        for accepted in (f"Bearer  {TOKEN}", f"bearer {TOKEN}"):
            assert anonymous.get("/v1/runs", headers={"Authorization": accepted}).status_code == 200


DIGEST = hash_token("a-real-token-123")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read token file"),
        ("names: [ci]\n", "must have a 'tokens' list"),
        ("- {name: ci}\n", "must have a 'tokens' list"),
        (f"tokens:\n  - {{sha256: {DIGEST}}}\n", "entry 0 needs a name"),
        ("tokens:\n  - {name: ci}\n", "entry 'ci' needs a sha256 hex digest, not a token"),
        ("tokens:\n  - {name: ci, sha256: pltf_plaintext-token-1234}\n", "needs a sha256 hex digest, not a token"),
        (f"tokens:\n  - {{name: ci, sha256: {'g' * 64}}}\n", "needs a sha256 hex digest, not a token"),
        (f"tokens:\n  - {{name: ci, sha256: {DIGEST}, actions: 'repo:*'}}\n", "actions must be a list of patterns"),
    ],
    ids=["missing", "no-tokens-key", "not-a-mapping", "no-name", "no-digest", "plaintext", "not-hex", "actions-string"],
)
def test_a_bad_token_file_stops_the_server_with_the_reason(tmp_path: Path, content: str | None, problem: str) -> None:
    token_file = tmp_path / "tokens.yaml"
    if content is not None:
        token_file.write_text(content)
    settings = make_settings(tmp_path, api_token=None, token_file=token_file)
    with pytest.raises(TokenFileError) as raised, TestClient(create_app(settings)):
        pass
    assert str(token_file) in str(raised.value) and problem in str(raised.value)
    assert "pltf_plaintext" not in str(raised.value), "a token pasted by mistake is not repeated"
    assert not settings.storage.generated_token_path.exists()


def test_generated_token_file_is_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_token=None)
    with TestClient(create_app(settings)) as anonymous:
        path = settings.storage.generated_token_path
        assert path.stat().st_mode & 0o777 == 0o600
        token = path.read_text().strip()
        assert anonymous.get("/v1/actions", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # Prefixed so secret scanners can recognise a leaked one; 32 random bytes behind it.
    assert token.startswith("pltf_") and len(base64.urlsafe_b64decode(token[5:] + "=")) == 32
    # A restart keeps the token the developer already has.
    with TestClient(create_app(settings)) as restarted:
        assert restarted.get("/v1/actions", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert path.read_text().strip() == token


def test_open_endpoints_need_no_token(client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    assert client.get("/healthz", headers=anonymous).json() == {"status": "ok"}
    assert client.get("/readyz", headers=anonymous).json() == {"status": "ready", "sandbox": "bwrap"}
    assert "/v1/actions/{action_id}/runs" in client.get("/openapi.json", headers=anonymous).json()["paths"]
    client.post(RENDER, json={"input": {"template": "demo"}})
    metrics = client.get("/metrics", headers=anonymous).text
    assert 'pltf_runs_total{action="cookiecutter:render",status="succeeded"} 1.0' in metrics
    assert "pltf_run_duration_seconds_bucket" in metrics


def test_wait_false_answers_202_and_run_can_be_followed(client: TestClient) -> None:
    response = client.post(f"{RENDER}?wait=false", json={"input": {"template": "demo"}})
    assert response.status_code == 202
    location = response.headers["Location"]
    events = client.get(f"{location}/events").text
    frames = [frame for frame in events.split("\r\n\r\n") if frame.strip()]
    kinds = [
        line.split(":", 1)[1].strip() for frame in frames for line in frame.splitlines() if line.startswith("event:")
    ]
    assert kinds[-1] == "completion" and kinds.count("log") >= 3
    completion = json.loads(frames[-1].split("data:", 1)[1])
    assert completion["body"]["status"] == "succeeded"
    assert client.get(location).json()["status"] == "succeeded"
    listed = client.get("/v1/runs", params={"action": "cookiecutter:render", "status": "succeeded"}).json()["runs"]
    assert [run["id"] for run in listed] == [location.rsplit("/", 1)[1]]
    assert client.get("/v1/runs", params={"status": "bogus"}).status_code == 422


def test_runs_are_listed_newest_first_a_page_at_a_time(client: TestClient) -> None:
    made = [client.post(RENDER, json={"input": {"template": "demo"}, "dryRun": True}).json()["id"] for _ in range(5)]
    pages, params = [], {"limit": 2}
    while True:
        page = client.get("/v1/runs", params=params).json()
        pages.append([run["id"] for run in page["runs"]])
        if page["nextCursor"] is None:
            break
        params = {"limit": 2, "cursor": page["nextCursor"]}
    assert pages == [made[4:2:-1], made[2:0:-1], made[:1]]

    # A run started while a client pages does not shift the pages it has not read.
    second = client.get("/v1/runs", params={"limit": 2}).json()["nextCursor"]
    client.post(RENDER, json={"input": {"template": "demo"}, "dryRun": True})
    assert [r["id"] for r in client.get("/v1/runs", params={"limit": 2, "cursor": second}).json()["runs"]] == pages[1]

    hostile = [
        b'{"before": "yesterday"}',
        b'{"before": [1' + b"0" * 40 + b', "x"]}',  # an integer SQLite cannot compare
        b'{"before": [1.5, "a\\u0000b"]}',  # PostgreSQL holds no NUL in text
        b"[" * 5000 + b"]" * 5000,  # deeper than the JSON parser recurses
    ]
    for cursor in ("not a cursor", *(base64.urlsafe_b64encode(text).decode() for text in hostile)):
        refused = client.get("/v1/runs", params={"cursor": cursor})
        assert refused.status_code == 422
        assert refused.json()["error"]["fields"] == [{"field": "cursor", "message": "invalid cursor"}]


def test_events_resume_after_last_event_id(client: TestClient) -> None:
    run = client.post(RENDER, json={"input": {"template": "demo"}}).json()
    events = client.get(f"/v1/runs/{run['id']}/events", headers={"Last-Event-ID": "3"}).text
    ids = [int(line[3:]) for line in events.splitlines() if line.startswith("id:")]
    assert ids and min(ids) == 4


def test_idempotency_key_replays_and_rejects_other_bodies(client: TestClient) -> None:
    body = {"input": {"template": "demo", "values": {"name": "once"}}}
    first = client.post(RENDER, json=body, headers={"Idempotency-Key": "create-once"})
    again = client.post(RENDER, json=body, headers={"Idempotency-Key": "create-once"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["output"]["workspaceId"] == first.json()["output"]["workspaceId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(RENDER, json={"input": {"template": "demo"}}, headers={"Idempotency-Key": "create-once"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(client.get("/v1/runs").json()["runs"]) == 1


def test_idempotency_keys_belong_to_each_caller(tmp_path: Path) -> None:
    # Two teams' pipelines may pick the same key; one must never be handed the other's run.
    token_file = tmp_path / "tokens.yaml"
    token_file.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"name": "team-a-ci", "sha256": hash_token("team-a-token-123")},
                    {"name": "team-b-ci", "sha256": hash_token("team-b-token-123")},
                ]
            }
        )
    )
    settings = make_settings(tmp_path, api_token=None, token_file=token_file)
    body = {"input": {"template": "demo", "values": {"name": "shared"}}}
    with TestClient(create_app(settings)) as client:
        team_a = {"Authorization": "Bearer team-a-token-123", "Idempotency-Key": "deploy-42"}
        team_b = {"Authorization": "Bearer team-b-token-123", "Idempotency-Key": "deploy-42"}
        first_a = client.post(RENDER, json=body, headers=team_a)
        first_b = client.post(RENDER, json=body, headers=team_b)
        assert first_a.status_code == first_b.status_code == 200, (first_a.text, first_b.text)
        assert first_b.json()["id"] != first_a.json()["id"]
        assert "Idempotent-Replayed" not in first_b.headers
        assert first_b.json()["output"]["workspaceId"] != first_a.json()["output"]["workspaceId"]
        # Each caller's key still replays that caller's own run.
        again_b = client.post(RENDER, json=body, headers=team_b)
        assert again_b.json()["id"] == first_b.json()["id"] and again_b.headers["Idempotent-Replayed"] == "true"
        again_a = client.post(RENDER, json=body, headers=team_a)
        assert again_a.json()["id"] == first_a.json()["id"] and again_a.headers["Idempotent-Replayed"] == "true"
        runs = client.get("/v1/runs", headers={"Authorization": "Bearer team-a-token-123"}).json()["runs"]
        assert sorted(run["id"] for run in runs) == sorted([first_a.json()["id"], first_b.json()["id"]])


def test_body_over_limit_is_413_after_reading(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=10_000)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as limited:
        big = {"input": {"template": "demo", "values": {"description": "x" * 20_000}}}
        response = limited.post(RENDER, json=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
        assert limited.get("/v1/runs").json()["runs"] == []


def test_malformed_bodies_are_422(client: TestClient) -> None:
    for raw in (b"{not json", b"\xff\xfe\xfa not utf-8", b"[1, 2]"):
        response = client.post(RENDER, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, raw
        assert response.json()["error"]["code"] == "invalid_input"
    assert client.post(RENDER, json={"input": {"template": "demo"}, "dryRun": "yes"}).status_code == 422
    assert client.post(RENDER, json={"input": {"template": "demo"}, "extra": 1}).status_code == 422
    assert client.post(f"{RENDER}?wait=soon", json={"input": {"template": "demo"}}).status_code == 422


def test_failed_run_answers_status_of_its_cause(client: TestClient) -> None:
    response = client.post(RENDER, json={"input": {"template": "failing-hook"}})
    assert response.status_code == 422
    run = response.json()
    assert run["status"] == "failed"
    assert run["error"]["code"] == "hook_failed"
    assert "the database schema is not reachable" in run["error"]["message"]
    assert run["log"][-1]["level"] == "error"


def test_trusted_hooks_get_values_as_json_not_as_source(client: TestClient, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    hostile = f"'); import os; os.system('touch {sentinel}'); ('"
    run = client.post(RENDER, json={"input": {"template": "hooked", "values": {"greeting": hostile}}, "dryRun": True})
    assert run.status_code == 200, run.text
    files = {
        f["path"]: base64.b64decode(f["base64Content"]).decode() for f in run.json()["output"]["directoryContents"]
    }
    assert files["from-hook.txt"] == hostile + "\n"
    assert not sentinel.exists()
    assert any("hook saw hooked" in line["message"] for line in run.json()["log"])


def test_secrets_are_redacted_in_stored_runs_and_logs(client: TestClient) -> None:
    secret = "s3cr3t-value-for-test"
    body = {"input": {"template": "demo", "values": {"description": f"uses {secret}"}}, "secrets": {"apiKey": secret}}
    run = client.post(RENDER, json=body).json()
    stored = json.dumps(client.get(f"/v1/runs/{run['id']}").json())
    assert secret not in stored and "uses ***" in stored
    assert secret not in json.dumps(run)


def test_a_secret_inside_another_secret_is_masked_whole(client: TestClient) -> None:
    # Masking the short secret first would leave the long one's head and tail readable around the mask.
    inner = "inner-4b1d-value"
    outer = f"head-{inner}-tail"
    body = {
        "input": {"template": "demo", "values": {"description": f"uses {outer} and {inner} today"}},
        "secrets": {"apiKey": inner, "signingKey": outer},
    }
    run = client.post(RENDER, json=body).json()
    stored = client.get(f"/v1/runs/{run['id']}").json()
    for shown in (json.dumps(run), json.dumps(stored)):
        assert "uses *** and *** today" in shown
        assert "head-" not in shown and "-tail" not in shown and inner not in shown


def test_secrets_of_four_characters_are_masked_and_shorter_ones_are_not(client: TestClient) -> None:
    # Three characters occur by chance in ordinary text too often to be masked without garbling it.
    body = {
        "input": {"template": "demo", "values": {"description": "pin x1y, code k9z4"}},
        "secrets": {"pin": "x1y", "code": "k9z4", "empty": ""},
    }
    run = client.post(RENDER, json=body).json()
    stored = json.dumps(client.get(f"/v1/runs/{run['id']}").json())
    assert "pin x1y, code ***" in stored and "k9z4" not in stored


def test_cancelling_a_finished_run_is_409(client: TestClient) -> None:
    run = client.post(RENDER, json={"input": {"template": "demo"}}).json()
    assert client.post(f"/v1/runs/{run['id']}/cancel").status_code == 409
    assert client.get("/v1/runs/not-a-run").status_code == 404


def test_templates_listing(client: TestClient) -> None:
    templates = {t["name"]: t for t in client.get("/v1/templates").json()["templates"]}
    assert {"demo", "hooked"} <= set(templates)
    demo = client.get("/v1/templates/demo").json()
    assert demo["version"] == "1.2.3"
    assert client.get("/v1/templates/nope").status_code == 404


def test_published_outputs_show_while_running_and_survive_a_failure(client: TestClient) -> None:
    import threading

    from pydantic import BaseModel

    from actions_server.action import Action, RunContext
    from actions_server.errors import PltfError
    from conftest import wait_until

    class Params(BaseModel):
        fail: bool

    class Out(BaseModel):
        made: str | None = None
        done: bool = False

    gate = threading.Event()

    def handler(ctx: RunContext, params: Params) -> Out:
        ctx.output("made", "repo-1")
        gate.wait(timeout=30)
        if params.fail:
            raise PltfError("the later step failed", 502, "step_failed")
        return Out(made="repo-1", done=True)

    def bad_handler(ctx: RunContext, params: Params) -> Out:
        ctx.output("undeclared", 1)
        return Out()

    actions = client.app.state.actions  # type: ignore[attr-defined]
    actions["test:publish"] = Action("test:publish", "publishes", handler, input=Params, output=Out)
    actions["test:undeclared"] = Action("test:undeclared", "publishes junk", bad_handler, input=Params, output=Out)

    started = client.post("/v1/actions/test:publish/runs?wait=false", json={"input": {"fail": False}})
    location = started.headers["Location"]
    running = wait_until(lambda: (r := client.get(location).json())["output"] and r, what="the published output")
    assert running["status"] == "running" and running["output"] == {"made": "repo-1"}
    gate.set()
    done = wait_until(lambda: (r := client.get(location).json())["status"] == "succeeded" and r, what="the run")
    assert done["output"] == {"made": "repo-1", "done": True}

    failed = client.post("/v1/actions/test:publish/runs", json={"input": {"fail": True}})
    assert failed.status_code == 502 and failed.json()["output"] == {"made": "repo-1"}
    undeclared = client.post("/v1/actions/test:undeclared/runs", json={"input": {"fail": False}}).json()
    assert undeclared["status"] == "failed" and "declares no output 'undeclared'" in undeclared["error"]["message"]
