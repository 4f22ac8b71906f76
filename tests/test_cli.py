"""The `pltf` CLI, in-process and against a running server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FIXTURE_TEMPLATES, ServerProcess, pltf


def local_env(tmp_path: Path) -> dict[str, str]:
    env = {"PLTF_DATA_DIR": str(tmp_path / "data"), "PLTF_TEMPLATES_DIR": str(FIXTURE_TEMPLATES)}
    return {k: v for k, v in {**env, "PLTF_URL": ""}.items()}


def test_run_in_process_shows_progress_and_summary(tmp_path: Path) -> None:
    result = pltf(
        "run", "cookiecutter:render", "--set", "template=demo", "--set", "values.name=cli-demo", env=local_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert "rendered 4 files into cli-demo/" in result.stderr
    assert "directory: cli-demo" in result.stdout


def test_run_json_is_machine_readable(tmp_path: Path) -> None:
    result = pltf(
        "run",
        "cookiecutter:render",
        "--set",
        "template=demo",
        "--set-json",
        "values.port=9001",
        "--dry-run",
        "--json",
        env=local_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded" and run["input"]["values"] == {"port": 9001}
    assert result.stderr == ""


def test_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    for args in (
        ("run", "cookiecutter:render", "--set", "template=demo", "--set", "values.name=../x"),
        ("run", "cookiecutter:render", "--set", "no-equals-sign"),
        ("run", "nope:action"),
        ("run", "cookiecutter:render", "--set-json", "values={bad"),
    ):
        result = pltf(*args, env=local_env(tmp_path))
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pltf: error:"), result.stderr
        assert "Traceback" not in result.stderr


def test_failed_run_exits_non_zero(tmp_path: Path) -> None:
    result = pltf("run", "cookiecutter:render", "--set", "template=failing-hook", env=local_env(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("pltf: error: cookiecutter:render failed: template hook")


def test_listing_commands(tmp_path: Path) -> None:
    actions = json.loads(pltf("actions", "--json", env=local_env(tmp_path)).stdout)["actions"]
    assert "cookiecutter:render" in [a["id"] for a in actions]
    templates = pltf("templates", env=local_env(tmp_path)).stdout
    assert "demo 1.2.3" in templates


def test_cli_against_a_running_server(tmp_path: Path, server_env: dict[str, str]) -> None:
    server = ServerProcess({**server_env, "PLTF_API_TOKEN": ""}, tmp_path / "server.log").start()
    try:
        # With no configured token the server generates one; the CLI finds it in the data dir.
        env = {"PLTF_URL": server.url, "PLTF_DATA_DIR": server_env["PLTF_DATA_DIR"], "PLTF_API_TOKEN": ""}
        result = pltf("run", "cookiecutter:render", "--set", "template=demo", "--set", "values.name=remote", env=env)
        assert result.returncode == 0, result.stderr
        assert "rendered 4 files into remote/" in result.stderr
        bad = pltf("run", "cookiecutter:render", "--set", "template=demo", "--set", "values.port=x", env=env)
        assert bad.returncode == 1 and "values.port" in bad.stderr
        denied = pltf("actions", env={**env, "PLTF_API_TOKEN": "wrong-token"})
        assert denied.returncode == 1 and "valid API token" in denied.stderr
        # The server logs JSON lines that carry the request and run ids, and never the token.
        log = (tmp_path / "server.log").read_text()
        token = (Path(server_env["PLTF_DATA_DIR"]) / "api-token").read_text().strip()
        assert token not in log
        events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        finished = [e for e in events if e.get("event") == "run finished"]
        assert finished and all(e.get("run_id") and e.get("request_id") for e in finished)
    finally:
        server.stop()


def test_templates_check_exits_non_zero_with_findings(tmp_path: Path) -> None:
    import shutil

    from actions_server.config import PROJECT_ROOT

    broken = tmp_path / "templates" / "python-service"
    shutil.copytree(PROJECT_ROOT / "cookiecutters" / "python-service", broken)
    dockerfile = next(broken.glob("*/Dockerfile"))
    dockerfile.write_text(dockerfile.read_text().replace("FROM ", "FROM python:latest AS ignored\nFROM ", 1))
    env = {"PLTF_TEMPLATES_DIR": str(broken.parent), "PLTF_DATA_DIR": str(tmp_path / "data")}
    result = pltf("templates", "check", "--fast", "--json", env=env)
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["templates"]["python-service"]
    assert any("latest" in finding["message"] for finding in findings)
    assert result.stderr.strip().splitlines()[-1] == "pltf: error: template check failed: python-service"


def test_serve_with_a_bad_token_file_exits_with_one_clear_line(tmp_path: Path, server_env: dict[str, str]) -> None:
    token_file = tmp_path / "tokens.yaml"
    token_file.write_text("tokens:\n  - name: ci\n    sha256: pltf_plaintext_pasted_by_mistake\n")
    env = {key: value for key, value in server_env.items() if key != "PLTF_API_TOKEN"}
    done = pltf("serve", env={**env, "PLTF_TOKEN_FILE": str(token_file), "PLTF_PORT": "1"})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pltf: error: cannot start: token file {token_file}"), done.stderr
    assert "pltf_plaintext" not in done.stderr


@pytest.mark.parametrize("command", [["db", "current"], ["serve"]])
def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, server_env: dict[str, str], command: list[str]
) -> None:
    unreachable = "postgresql://pltf:hunter2-secret@127.0.0.1:1/pltf"
    done = pltf(*command, env={**server_env, "PLTF_DATABASE_URL": unreachable, "PLTF_PORT": "1"})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pltf: error: cannot use the database:"), done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("PLTF_PORT", "0", "PLTF_PORT: Input should be greater than or equal to 1"),
        ("PLTF_RENDER_PROCESSES", "-1", "PLTF_RENDER_PROCESSES: Input should be greater than or equal to 0"),
        ("PLTF_MAX_CONCURRENT_RUNS", "0", "PLTF_MAX_CONCURRENT_RUNS: Input should be greater than or equal to 1"),
    ],
)
def test_a_setting_out_of_range_is_one_line_naming_its_variable(variable: str, value: str, reason: str) -> None:
    result = pltf("config", env={variable: value})
    assert result.returncode == 2
    assert result.stderr == f"pltf: error: invalid setting {reason}\n"
    assert "Traceback" not in result.stdout + result.stderr
