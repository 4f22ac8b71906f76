"""The README's examples run as written: its shell blocks, in order, against a real server, and its specs plan.

Only what cannot run inside a test is changed: the port (a free one for 8787),
`.venv/bin/pltf` (this checkout's CLI), and `open` (fetches each page instead of
starting a browser). `curl` fails on an HTTP error, so a dead link fails the test.
The set-up block (`make run`, `make test`) is the one block not run: it is what
starts the server and runs these tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from actions_server.config import PROJECT_ROOT
from conftest import ServerProcess

BLOCK = re.compile(r"^```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
PRELUDE = """set -euo pipefail
pltf() { "$PLTF_PYTHON" -m actions_server.cli "$@"; }
open() { for url in "$@"; do command curl -fsS -o /dev/null "$url"; done; }
curl() { command curl -fsS "$@"; }
"""


def readme_blocks(lang: str) -> list[str]:
    text = (PROJECT_ROOT / "README.md").read_text()
    return [m["body"] for m in BLOCK.finditer(text) if m["lang"] == lang]


def is_set_up(block: str) -> bool:
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    return all(line.startswith("make ") for line in commands)


def as_run_here(block: str, port: int) -> str:
    block = block.replace("127.0.0.1:8787", f"127.0.0.1:{port}").replace("localhost:8787", f"localhost:{port}")
    return block.replace(".venv/bin/pltf", "pltf")


def test_every_readme_example_runs_as_written(tmp_path: Path, server_env: dict[str, str]) -> None:
    env = {
        **server_env,
        "PLTF_TEMPLATES_DIR": str(PROJECT_ROOT / "cookiecutters"),
        "PLTF_REGISTER_PLATFORM_ENTITIES": "true",
        "PLTF_RUN_WAIT_SECONDS": "120",
    }
    del env["PLTF_API_TOKEN"]  # as `make run`: the server writes a token the CLI finds in the data dir
    server = ServerProcess(env, tmp_path / "server.log")
    work = tmp_path / "work"
    work.mkdir()
    shell_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PLTF_")},
        "PLTF_DATA_DIR": env["PLTF_DATA_DIR"],
        "PLTF_PYTHON": sys.executable,
        "PYTHONPATH": str(PROJECT_ROOT),
        "GIT_TERMINAL_PROMPT": "0",
    }
    blocks = [b for b in readme_blocks("sh") if not is_set_up(b)]
    assert len(blocks) >= 3  # the golden path, registering, previews
    server.start()
    try:
        # One terminal, as a reader's: what a block exports (PLTF_URL) holds for the blocks after it.
        marks = [f"echo '=== README block {n}'\n{as_run_here(b, server.port)}" for n, b in enumerate(blocks)]
        done = subprocess.run(
            ["bash", "-c", PRELUDE + "\n".join(marks)],
            cwd=work,
            env=shell_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        outputs = done.stdout.split("=== README block ")[1:]
        assert len(outputs) == len(blocks)
        golden = outputs[0]
        assert '"status":"ok"' in golden.replace(" ", "")  # the preview answered
        assert '"name":"users-api"' in golden.replace(" ", "")  # the catalog has it
        assert (work / "users-api" / "catalog-info.yaml").is_file()  # the clone

        specs = [b for b in readme_blocks("yaml") if b.startswith("kind: service")]
        specs += [b for b in readme_blocks("hcl") if "app/platform/service" in b]
        assert len(specs) == 2
        for n, spec in enumerate(specs):
            path = work / ("spec.yaml" if spec.startswith("kind:") else "spec.tf")
            path.write_text(spec)
            done = subprocess.run(
                ["bash", "-c", PRELUDE + f"pltf plan {path.name}"],
                cwd=work,
                env={**shell_env, "PLTF_URL": server.url},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"spec {n}\n{spec}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            assert "blocked" not in done.stdout
    finally:
        server.stop()
