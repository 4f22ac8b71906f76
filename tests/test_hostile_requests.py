"""Hostile requests (issue 12, finding 8): each gets a bounded, clear 4xx, never a 500 or a hung connection.

A broken data dir is reported (a one-line start-up error, a 503 from /readyz, a
failed run), never a traceback or a run left "running".
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from actions_server.api.middleware import MAX_JSON_DEPTH
from actions_server.app import create_app
from actions_server.errors import MAX_FIELD_ERRORS
from actions_server.runs import MAX_SECRETS
from conftest import TOKEN, ServerProcess, make_settings, wait_until

RENDER = "/v1/actions/cookiecutter:render/runs"
DEMO = {"template": "demo", "values": {"name": "hostile"}}


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert isinstance(error["code"], str) and error["message"]
    return dict(error)


def finished_run(client: TestClient) -> dict[str, Any]:
    response = client.post(RENDER, json={"input": DEMO, "dryRun": True})
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- Last-Event-ID ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"99999999999999999999999999999",
        b"9223372036854775808",
        b"-1",
        b"1e3",
        b"0x10",
        b"abc",
        "\u00b2".encode("latin-1"),
    ],
)
def test_a_last_event_id_that_is_not_a_bounded_number_is_a_422(client: TestClient, value: bytes) -> None:
    run = finished_run(client)
    response = client.get(f"/v1/runs/{run['id']}/events", headers=[(b"Last-Event-ID", value)])
    error = assert_error_body(response, 422)
    assert [field["field"] for field in error["fields"]] == ["Last-Event-ID"]


def test_a_valid_last_event_id_resumes_after_that_line(client: TestClient) -> None:
    run = finished_run(client)
    last = run["log"][-1]["seq"]
    for value, expected in ((str(last - 1), [last]), ("9223372036854775807", [])):
        response = client.get(f"/v1/runs/{run['id']}/events", headers={"Last-Event-ID": value})
        assert response.status_code == 200, response.text
        ids = [int(line[3:]) for line in response.text.splitlines() if line.startswith("id:")]
        assert ids == expected


# -- JSON depth ------------------------------------------------------------------

DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["arrays", "objects"])
@pytest.mark.parametrize(
    "path",
    [RENDER, "/api/catalog/locations", "/api/catalog/refresh", "/v1/events", "/webhooks/alertmanager"],
)
def test_deeply_nested_json_is_a_422_on_every_json_route(client: TestClient, path: str, body: str) -> None:
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    error = assert_error_body(response, 422)
    assert error["fields"][0]["field"] == "(body)"
    assert str(MAX_JSON_DEPTH) in error["message"]
    assert client.get("/v1/runs").json()["runs"] == []


def test_json_as_deep_as_the_limit_is_parsed(client: TestClient) -> None:
    nested: Any = "deep"
    for _ in range(MAX_JSON_DEPTH - 3):  # the body, input and values are three levels
        nested = {"a": nested}
    # Brackets inside strings are text, not nesting.
    values = {"name": "hostile", "description": "[" * 5000, "extra": nested}
    response = client.post(RENDER, json={"input": {"template": "demo", "values": values}, "dryRun": True})
    error = assert_error_body(response, 422)
    assert "nests deeper" not in error["message"]
    assert any(field["field"].startswith("values.extra") for field in error["fields"]), error


# -- secrets ---------------------------------------------------------------------


def test_too_many_secrets_are_a_422_naming_secrets(client: TestClient) -> None:
    secrets = {f"s{n}": f"v{n:07d}" for n in range(40_000)}  # as many as fit in the body limit
    started = time.monotonic()
    response = client.post(RENDER, json={"input": DEMO, "dryRun": True, "secrets": secrets})
    error = assert_error_body(response, 422)
    assert [field["field"] for field in error["fields"]] == ["secrets"]
    assert str(MAX_SECRETS) in error["message"]
    assert time.monotonic() - started < 5
    assert client.get("/v1/runs").json()["runs"] == []


def test_an_oversized_secret_is_a_422_and_is_not_echoed(client: TestClient) -> None:
    value = "s3cr3t" * 10_000
    response = client.post(RENDER, json={"input": DEMO, "dryRun": True, "secrets": {"big": value}})
    error = assert_error_body(response, 422)
    assert error["fields"][0]["field"] == "secrets"
    assert "s3cr3t" not in response.text


def test_the_most_secrets_allowed_are_all_redacted(client: TestClient) -> None:
    # As many and as large as fit in the body limit: the redactor's realistic worst case.
    secrets = {f"name{n}": f"secret-value-{n:03d}-" + "x" * 9_000 for n in range(MAX_SECRETS - 1)}
    secrets["short"] = "short-secret-used-in-a-value"
    values = {"name": "hostile", "description": f"uses {secrets['short']}"}
    started = time.monotonic()
    response = client.post(
        RENDER, json={"input": {"template": "demo", "values": values}, "dryRun": True, "secrets": secrets}
    )
    assert time.monotonic() - started < 10
    assert response.status_code == 200, response.text[:2000]
    assert response.json()["input"]["values"]["description"] == "uses ***"
    assert "short-secret-used-in-a-value" not in response.text


# -- size of error bodies ----------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "input"])
def test_thousands_of_unknown_keys_give_a_short_422(client: TestClient, where: str) -> None:
    unknown = {f"u{n}": 1 for n in range(80_000)}  # as many as fit in the body limit
    body = unknown if where == "body" else {"input": {"template": "demo", **unknown}, "dryRun": True}
    response = client.post(RENDER, json=body)
    error = assert_error_body(response, 422)
    assert len(response.content) < 20_000
    assert len(error["fields"]) == MAX_FIELD_ERRORS + 1
    more = error["fields"][-1]
    assert more["field"] == "(more)"
    assert str(80_000 - MAX_FIELD_ERRORS) in more["message"]


def test_field_errors_of_fastapi_routes_are_capped_too(client: TestClient) -> None:
    body = {"target": "x", **{f"unknown{n}": 1 for n in range(5_000)}}
    response = client.post("/api/catalog/locations", json=body)
    error = assert_error_body(response, 422)
    assert len(error["fields"]) == MAX_FIELD_ERRORS + 1


# -- other request values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", RENDER + "?wait=nan", {}),
        ("POST", RENDER + "?wait=1e999", {}),
        ("POST", RENDER + "?wait=-0.5", {}),
        ("POST", RENDER, {"Idempotency-Key": "k" * 256}),
        ("GET", "/v1/runs?limit=99999999999999999999999999", {}),
        ("GET", "/v1/runs?limit=-1", {}),
        ("GET", "/v1/previews?limit=99999999999999999999999999", {}),
        ("GET", "/api/catalog/entities/by-query?limit=99999999999999999999999999", {}),
    ],
)
def test_out_of_range_parameters_are_a_422(client: TestClient, method: str, path: str, headers: dict[str, str]) -> None:
    body = {"input": DEMO, "dryRun": True} if method == "POST" else None
    response = client.request(method, path, json=body, headers=headers)
    assert_error_body(response, 422)


def test_a_hostile_request_id_is_replaced(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "x" * 5000})
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) == 32


# -- the generated local token ----------------------------------------------------


def test_a_value_equal_to_the_generated_token_is_redacted(tmp_path: Path, server_env: dict[str, str]) -> None:
    env = {key: value for key, value in server_env.items() if key != "PLTF_API_TOKEN"}
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        token = (tmp_path / "data" / "api-token").read_text().strip()
        values = {"name": "hostile", "description": token}
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            response = http.post(RENDER, json={"input": {"template": "demo", "values": values}, "dryRun": True})
            assert response.status_code == 200, response.text
            run = http.get(f"/v1/runs/{response.json()['id']}").json()
            events = http.get(f"/v1/runs/{run['id']}/events").text
    finally:
        server.stop()
    assert run["input"]["values"]["description"] == "***"
    for shown in (response.text, json.dumps(run), events, (tmp_path / "server.log").read_text()):
        assert token not in shown


# -- slow clients -------------------------------------------------------------------


@pytest.fixture
def impatient_server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[ServerProcess]:
    env = {**server_env, "PLTF_HEADER_TIMEOUT_SECONDS": "1", "PLTF_BODY_TIMEOUT_SECONDS": "1"}
    server = ServerProcess(env, tmp_path / "server.log").start()
    yield server
    server.stop()


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open after `within`."""
    sock.settimeout(within)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def trickle_until_answered(sock: socket.socket, data: bytes, within: float) -> bytes:
    """Sends `data` a byte at a time, as a slowloris does, until the server answers."""
    deadline = time.monotonic() + within
    for byte in data:
        if time.monotonic() > deadline:
            break
        sock.sendall(bytes([byte]))
        sock.settimeout(0.2)  # a wait for the answer, between two bytes
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        return answer + read_until_closed(sock, within)
    raise AssertionError("the server kept listening to a client that never finished its headers")


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def test_a_client_trickling_its_headers_gets_408_and_is_disconnected(impatient_server: ServerProcess) -> None:
    endless_headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: slowloris\r\n" * 10_000
    with connect(impatient_server) as sock:
        answer = trickle_until_answered(sock, endless_headers, within=15)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "header_timeout"


def test_a_kept_alive_connection_trickling_its_next_request_is_disconnected(impatient_server: ServerProcess) -> None:
    with connect(impatient_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        answer = trickle_until_answered(sock, b"GET /healthz HTTP/1.1\r\n" + b"X-Padding: slow\r\n" * 10_000, 15)
    assert answer.startswith(b"HTTP/1.1 408")


def test_a_client_that_stops_mid_body_gets_408_and_is_disconnected(impatient_server: ServerProcess) -> None:
    head = (
        f"POST {RENDER} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with connect(impatient_server) as sock:
        sock.sendall(head.encode() + b'{"input": {')
        answer = read_until_closed(sock, within=15)
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(body)["error"]["code"] == "body_timeout"
    with impatient_server.client() as http:
        assert http.get("/v1/runs").json()["runs"] == []


def test_a_prompt_client_is_served_under_short_timeouts(impatient_server: ServerProcess) -> None:
    with impatient_server.client() as http:
        response = http.post(RENDER, json={"input": DEMO, "dryRun": True})
    assert response.status_code == 200, response.text


# -- broken data dirs ----------------------------------------------------------------


def require_mount_namespaces() -> None:
    """Read-only and full disks are made with private mounts, which root may make here and in CI."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must allow mount namespaces (unshare -m): {probe.stderr.decode()}")
        pytest.skip("mount namespaces are not available (unshare -m)")


def in_private_mounts(setup: str) -> list[str]:
    """`pltf serve` in a mount namespace of its own, after the shell commands in `setup`."""
    script = f'set -e; {setup}; exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", sys.executable, "-m",
            "actions_server.cli", "serve"]  # fmt: skip


def serve_once(tmp_path: Path, server_env: dict[str, str], setup: str) -> subprocess.CompletedProcess[str]:
    server = ServerProcess(server_env, tmp_path / "unused.log")
    return subprocess.run(
        in_private_mounts(setup), env=server.env, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_with_a_read_only_data_dir_exits_with_one_clear_line(tmp_path: Path, server_env: dict[str, str]) -> None:
    require_mount_namespaces()
    data = tmp_path / "data"
    data.mkdir()
    d = shlex.quote(str(data))
    result = serve_once(tmp_path, server_env, f"mount --bind {d} {d}; mount -o remount,ro,bind {d}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pltf: error: cannot start:")
    assert str(data) in lines[0] and "Read-only file system" in lines[0]


def test_serve_with_a_full_data_dir_exits_with_one_clear_line(tmp_path: Path, server_env: dict[str, str]) -> None:
    require_mount_namespaces()
    data = tmp_path / "data"
    data.mkdir()
    d = shlex.quote(str(data))
    fill = f"mount -t tmpfs -o size=64k tmpfs {d}; head -c 1M /dev/zero > {d}/filler 2>/dev/null || true"
    result = serve_once(tmp_path, server_env, fill)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "No space left on device" in lines[0]


@pytest.fixture
def remountable_server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[tuple[ServerProcess, Path, Path]]:
    """A server whose data dir and temporary dir are mounts of their own; the database stays writable."""
    require_mount_namespaces()
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    data.mkdir()
    scratch.mkdir()
    env = {
        **server_env,
        "PLTF_DATABASE_URL": f"sqlite:///{tmp_path / 'runs.db'}",
        "TMPDIR": str(scratch),
        "PLTF_SCRATCH_DIR": str(scratch),
    }
    server = ServerProcess(env, tmp_path / "server.log")
    d, s = shlex.quote(str(data)), shlex.quote(str(scratch))
    server.command = in_private_mounts(f"mount --bind {d} {d}; mount -t tmpfs -o size=64m tmpfs {s}")
    server.start()
    yield server, data, scratch
    server.stop()


def make_read_only(server: ServerProcess, directory: Path) -> None:
    assert server.process is not None
    subprocess.run(
        ["nsenter", "-t", str(server.process.pid), "-m", "mount", "-o", "remount,ro,bind", str(directory)],
        check=True,
        capture_output=True,
    )


def test_readyz_is_503_with_the_reason_when_the_data_dir_turns_read_only(
    remountable_server: tuple[ServerProcess, Path, Path],
) -> None:
    server, data, _ = remountable_server
    make_read_only(server, data)
    response = wait_until(
        lambda: (r := httpx.get(f"{server.url}/readyz", timeout=5)).status_code == 503 and r, what="/readyz 503"
    )
    body = response.json()
    assert body["status"] == "unavailable"
    assert str(data) in body["reason"] and "Read-only file system" in body["reason"]


def test_a_run_whose_workspace_cannot_be_written_fails_instead_of_staying_running(
    remountable_server: tuple[ServerProcess, Path, Path],
) -> None:
    server, _, scratch = remountable_server
    with server.client() as http:
        assert http.post(RENDER, json={"input": DEMO, "dryRun": True}).json()["status"] == "succeeded"
        make_read_only(server, scratch)
        response = http.post(RENDER, json={"input": DEMO, "dryRun": True})
        run = response.json()
        assert run["status"] == "failed", run
        assert run["error"]["code"] == "storage"
        assert "could not write its workspace or log" in run["error"]["message"]
        assert http.get(f"/v1/runs/{run['id']}").json()["status"] == "failed"


def test_a_run_whose_log_cannot_be_written_fails_instead_of_staying_running(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        with sqlite3.connect(tmp_path / "data" / "pltf.db") as db:
            db.execute(
                "CREATE TRIGGER log_disk_full BEFORE INSERT ON run_logs "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        run = client.post(RENDER, json={"input": DEMO, "dryRun": True}).json()
        assert run["status"] == "failed", run
        assert "could not write its workspace or log" in run["error"]["message"]
        assert "disk is full" in run["error"]["message"]
        assert client.get(f"/v1/runs/{run['id']}").json()["status"] == "failed"
