"""Time from `preview:create` to ready, cold and warm, for the golden template (python-service).

A real `pltf serve` subprocess on a scratch data dir; the template is rendered through the
API, committed to a bare git repository, and previewed from it:

- cold: the first preview of that dependency lock (the environment cache is empty);
  with --empty-uv-cache also with an empty uv download cache, as on a fresh machine;
- warm: later previews of the same lock (cache hit: nothing installed), destroyed in between.

It also checks the clean URL answers /healthz with 200 each time, and prints p50/p95.

    .venv/bin/python benchmarks/preview.py [--runs 5] [--empty-uv-cache]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchmark-token-0123456789"
GOAL_WARM_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com"}
    env.update(GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com", GIT_CONFIG_GLOBAL=os.devnull)
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="warm previews to time")
    parser.add_argument("--empty-uv-cache", action="store_true", help="cold with an empty uv cache (downloads)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="pltf-bench-preview-"))
    port = free_port()
    env = {
        **os.environ,
        "PLTF_DATA_DIR": str(scratch / "data"),
        "PLTF_PORT": str(port),
        "PLTF_API_TOKEN": TOKEN,
        "PLTF_LOG_LEVEL": "warning",
        "PLTF_PREVIEW_SOURCES": f"file://{scratch}/",
        "PLTF_RUN_WAIT_SECONDS": "300",
    }
    if args.empty_uv_cache:
        env["UV_CACHE_DIR"] = str(scratch / "uv-cache")
    server = subprocess.Popen(
        [sys.executable, "-m", "actions_server.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=(scratch / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"server did not start: {(scratch / 'server.log').read_text()[-2000:]}")
            time.sleep(0.05)

        rendered = client.post(
            "/v1/actions/cookiecutter:render/runs",
            json={"input": {"template": "python-service", "values": {"name": "users-api"}}},
        ).json()
        archive = client.get(f"/v1/workspaces/{rendered['output']['workspaceId']}/archive").content
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(scratch / "rendered", filter="data")
        project = scratch / "rendered" / rendered["output"]["directory"]
        git(project, "init", "-q", "-b", "main")
        git(project, "add", ".")
        git(project, "commit", "-qm", "initial")
        bare = scratch / "users-api.git"
        git(scratch, "clone", "-q", "--bare", str(project), str(bare))

        def preview() -> float:
            started = time.perf_counter()
            run = client.post(
                "/v1/actions/preview:create/runs",
                json={"input": {"repoUrl": f"file://{bare}", "service": "users-api"}},
            ).json()
            seconds = time.perf_counter() - started
            if run["status"] != "succeeded" or run["output"]["status"] != "ready":
                raise SystemExit(f"preview failed: {run.get('error') or run['output']}")
            health = client.get("/healthz", headers={"Host": f"users-api.preview.localhost:{port}"})
            assert health.status_code == 200, health.text
            client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": run["output"]["previewId"]}})
            return seconds

        cold = preview()
        label = "cold (empty uv cache)" if args.empty_uv_cache else "cold (new lock; uv cache as found)"
        print(f"{label:<36} {cold:6.2f} s")
        warm = [preview() for _ in range(args.runs)]
        print(
            f"{'warm (lock cache hit)':<36} p50 {statistics.median(warm):6.2f} s   p95 {percentile(warm, 0.95):6.2f} s"
            f"   (goal < {GOAL_WARM_SECONDS:g} s: {'met' if percentile(warm, 0.95) < GOAL_WARM_SECONDS else 'MISSED'})"
        )
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(scratch)], check=False)


if __name__ == "__main__":
    main()
