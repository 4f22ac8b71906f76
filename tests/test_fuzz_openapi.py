"""Schemathesis fuzzes every operation of the server's own OpenAPI document.

No input makes a 5xx, every status code an operation answers is one it documents,
and every answer has the documented schema (the Error body for 4xx included).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import TOKEN, ServerProcess


def test_no_generated_request_causes_a_server_error(tmp_path: Path, server_env: dict[str, str]) -> None:
    server = ServerProcess({**server_env, "PLTF_LOG_LEVEL": "warning"}, tmp_path / "server.log").start()
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance",
                "--max-examples",
                "20",
                "--seed",
                "20261127",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--no-color",
            ],
            cwd=tmp_path,  # schemathesis keeps its state in ./.schemathesis
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Selected: " in result.stdout and " passed" in result.stdout
