"""Render time of a template: through the action server's HTTP API, cookiecutter's Python API and its CLI.

The server and the Python API run in this process: the server on a real
uvicorn socket in a background thread, cookiecutter called directly. The CLI
is a subprocess per render, as a user would run it. Prints p50 and p95 of
each and the ratios against cookiecutter's Python API.

    .venv/bin/python benchmarks/render.py [--template python-service] [--runs 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actions_server.app import create_app  # noqa: E402
from actions_server.config import Settings  # noqa: E402

TOKEN = "benchmark-token-0123456789"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(label: str, runs: int, once: Callable[[int], None]) -> list[float]:
    once(-1)  # warm-up: imports, caches, first connection
    samples = []
    for n in range(runs):
        started = time.perf_counter()
        once(n)
        samples.append((time.perf_counter() - started) * 1000)
    print(f"{label:<28} p50 {percentile(samples, 0.5):7.1f} ms   p95 {percentile(samples, 0.95):7.1f} ms")
    return samples


def start_server(settings: Settings) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.server.port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("server did not start")
        time.sleep(0.01)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", default="python-service")
    parser.add_argument("--templates-dir", type=Path, default=ROOT / "cookiecutters")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--port", type=int, default=18799)
    args = parser.parse_args()
    template_dir = args.templates_dir / args.template

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            port=args.port,
            data_dir=Path(scratch) / "data",
            templates_dir=args.templates_dir,
            api_token=TOKEN,
            log_level="warning",
        )
        server = start_server(settings)
        client = httpx.Client(
            base_url=settings.server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )

        def through_server(n: int) -> None:
            body = {"input": {"template": args.template, "values": {"name": f"bench-{n + 1}"}}}
            response = client.post("/v1/actions/cookiecutter:render/runs", json=body)
            if response.status_code != 200:
                raise SystemExit(f"render failed: {response.status_code} {response.text[:300]}")

        def through_cookiecutter(n: int) -> None:
            out = Path(scratch) / f"cc-{n + 1}"
            cookiecutter(
                str(template_dir), no_input=True, extra_context={"name": f"bench-{n + 1}"}, output_dir=str(out)
            )

        cookiecutter_cli = shutil.which("cookiecutter") or str(Path(sys.executable).parent / "cookiecutter")

        def through_cookiecutter_cli(n: int) -> None:
            out = Path(scratch) / f"cli-{n + 1}"
            subprocess.run(
                [cookiecutter_cli, "--no-input", "-o", str(out), str(template_dir), f"name=bench-{n + 1}"],
                check=True,
                capture_output=True,
            )

        print(f"template {args.template}, {args.runs} runs each")
        server_ms = measure("action server (HTTP)", args.runs, through_server)
        library_ms = measure("cookiecutter Python API", args.runs, through_cookiecutter)
        cli_ms = measure("cookiecutter CLI", args.runs, through_cookiecutter_cli)
        baseline = statistics.median(library_ms)
        print(f"ratio server/python-api    p50 {statistics.median(server_ms) / baseline:.2f}x")
        print(f"ratio cli/python-api       p50 {statistics.median(cli_ms) / baseline:.2f}x")
        client.close()
        server.should_exit = True


if __name__ == "__main__":
    main()
