"""`service:create` on the embedded defaults: render, repository and first push, through a real server.

Sequential runs give p50 and p95; then a burst of concurrent runs with distinct
names gives the error count and p95; the server's peak RSS is read from
/proc. Previews are off here (benchmarks/preview.py times those).

    .venv/bin/python benchmarks/scaffold.py [--runs 20] [--concurrent 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchmark-token-0123456789"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body(name: str) -> dict[str, object]:
    return {"input": {"name": name, "owner": "group:default/bench", "preview": False}}


async def burst(url: str, count: int, prefix: str) -> tuple[list[float], int]:
    limits = httpx.Limits(max_connections=count)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:

        async def one(n: int) -> tuple[float, bool]:
            started = time.perf_counter()
            response = await client.post("/v1/actions/service:create/runs", json=body(f"{prefix}-{n}"))
            return (time.perf_counter() - started) * 1000, response.status_code == 200

        results = await asyncio.gather(*(one(n) for n in range(count)))
    return [ms for ms, _ in results], sum(1 for _, ok in results if not ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        env = {
            **os.environ,
            "PLTF_PORT": str(port),
            "PLTF_DATA_DIR": str(Path(scratch) / "data"),
            "PLTF_API_TOKEN": TOKEN,
            "PLTF_LOG_LEVEL": "warning",
            "PLTF_URL": "",
        }
        server = subprocess.Popen([sys.executable, "-m", "actions_server.cli", "serve"], env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.05)
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
            client.post("/v1/actions/service:create/runs", json=body("warm-up")).raise_for_status()
            sequential = []
            for n in range(args.runs):
                started = time.perf_counter()
                response = client.post("/v1/actions/service:create/runs", json=body(f"seq-{n}"))
                sequential.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"run failed: {response.text[:300]}")
            print(
                f"sequential service:create x{args.runs}: p50 {percentile(sequential, 0.5):.0f} ms, "
                f"p95 {percentile(sequential, 0.95):.0f} ms"
            )
            started = time.perf_counter()
            times, errors = asyncio.run(burst(url, args.concurrent, "burst"))
            wall = time.perf_counter() - started
            print(
                f"{args.concurrent} concurrent: {errors} errors, p50 {percentile(times, 0.5):.0f} ms, "
                f"p95 {percentile(times, 0.95):.0f} ms, wall {wall:.1f} s ({args.concurrent / wall:.1f} runs/s)"
            )
            print(f"server peak RSS: {peak_rss_mib(server.pid):.0f} MiB")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
