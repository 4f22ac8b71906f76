"""`service:create` and the portal at scale, through real servers (issue 16's figures, in one run).

1. The bare baseline, measured in this process: a cookiecutter render of the
   same template, `git init/add/commit` and a push to a bare repository.
2. Sequential `service:create` p50/p95 and its ratio to the baseline.
3. A burst of concurrent runs with distinct names: errors, p50/p95, runs/s.
4. With 200 services registered: the portal home and a service page p50/p95,
   then 200 mixed GETs (/, /catalog, the catalog API, /healthz) at concurrency 50.
5. The same burst spread over two replicas sharing PostgreSQL and a data dir.
6. The first server's peak RSS (from /proc), after the burst and at the end.

Previews are off here (benchmarks/preview.py times those). `--code DIR` runs
the servers from another checkout, e.g. main's, for before/after figures.

    .venv/bin/python benchmarks/scaffold.py [--runs 20] [--concurrent 50] [--services 200]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchmark-token-0123456789"
POSTGRES_ADMIN_URL = os.environ.get("PLTF_BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
TEMPLATE = "python-service"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p50_p95(samples: list[float]) -> str:
    return f"p50 {percentile(samples, 0.5):.0f} ms, p95 {percentile(samples, 0.95):.0f} ms"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_peak_rss_mib(pid: int) -> float:
    """The peak RSS of the server's child processes still running (render workers): part of one replica too."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                total += peak_rss_mib(int(entry.name))
        except OSError:  # it ended meanwhile
            continue
    return total


def body(name: str) -> dict[str, object]:
    return {"input": {"name": name, "owner": "group:default/bench", "preview": False}}


def start_server(
    code: Path, data_dir: Path, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PLTF_PORT": str(port),
        "PLTF_DATA_DIR": str(data_dir),
        "PLTF_API_TOKEN": TOKEN,
        "PLTF_LOG_LEVEL": "warning",
        "PLTF_URL": "",
        **(extra or {}),
    }
    server = subprocess.Popen([sys.executable, "-m", "actions_server.cli", "serve"], env=env, cwd=code)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("server did not start")
        time.sleep(0.05)


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        # Still busy with requests the load left behind: its scratch directory is about to go.
        server.kill()
        server.wait(timeout=30)


def bare_baseline(code: Path, scratch: Path, runs: int) -> list[float]:
    """Render + git init/add/commit + push to a bare repository: what `service:create` wraps."""
    template = code / "cookiecutters" / TEMPLATE
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "init.defaultBranch=main"]
    samples = []
    for n in range(runs + 1):
        started = time.perf_counter()
        out = scratch / f"baseline-{n}"
        remote = scratch / f"baseline-{n}.git"
        project = Path(
            cookiecutter(
                str(template),
                no_input=True,
                extra_context={"name": f"base-{n}", "owner": "group:default/bench"},
                output_dir=str(out),
            )
        )
        subprocess.run([*git, "init", "-q", "--bare", str(remote)], check=True)
        subprocess.run([*git, "init", "-q"], cwd=project, check=True)
        subprocess.run([*git, "add", "-A"], cwd=project, check=True)
        subprocess.run([*git, "commit", "-q", "-m", "Initial commit"], cwd=project, check=True)
        subprocess.run([*git, "push", "-q", str(remote), "HEAD:refs/heads/main"], cwd=project, check=True)
        if n:  # the first is a warm-up: imports, caches
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def sequential_creates(url: str, prefix: str, runs: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
        for n in range(runs):
            started = time.perf_counter()
            response = client.post("/v1/actions/service:create/runs", json=body(f"{prefix}-{n}"))
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"run failed: {response.text[:300]}")
    return samples


async def burst(urls: list[str], count: int, prefix: str, concurrency: int | None = None) -> tuple[list[float], int]:
    """`count` creates, at most `concurrency` at once, spread round-robin over `urls`."""
    gate = asyncio.Semaphore(concurrency or count)
    limits = httpx.Limits(max_connections=count)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=headers, timeout=300, limits=limits) as client:

        async def one(n: int, url: str) -> tuple[float, bool]:
            async with gate:
                started = time.perf_counter()
                response = await client.post(f"{url}/v1/actions/service:create/runs", json=body(f"{prefix}-{n}"))
                return (time.perf_counter() - started) * 1000, response.status_code == 200

        results = await asyncio.gather(*(one(n, url) for n, url in zip(range(count), itertools.cycle(urls))))
    return [ms for ms, _ in results], sum(1 for _, ok in results if not ok)


def report_burst(label: str, urls: list[str], count: int, prefix: str) -> None:
    started = time.perf_counter()
    times, errors = asyncio.run(burst(urls, count, prefix))
    wall = time.perf_counter() - started
    print(f"{label}: {errors} errors, {p50_p95(times)}, wall {wall:.1f} s ({count / wall:.1f} runs/s)")


def page_times(url: str, path: str, runs: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=url, timeout=120) as client:
        client.get(path).raise_for_status()
        for _ in range(runs):
            started = time.perf_counter()
            client.get(path).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def mixed_gets(url: str, count: int, concurrency: int, service: str) -> tuple[list[float], int, int]:
    """`count` GETs over the public pages, the catalog API and /healthz: times, 5xx and timeouts."""
    paths = ["/", "/catalog", f"/api/catalog/entities/by-name/component/default/{service}", "/healthz"]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(path: str) -> tuple[float, int]:
            async with gate:
                started = time.perf_counter()
                try:
                    status = (await client.get(path)).status_code
                except httpx.TimeoutException:
                    status = 0
                return (time.perf_counter() - started) * 1000, status

        results = await asyncio.gather(*(one(p) for p, _ in zip(itertools.cycle(paths), range(count))))
    return (
        [ms for ms, _ in results],
        sum(1 for _, status in results if status >= 500),
        sum(1 for _, status in results if status == 0),
    )


def fill_services(url: str, have: int, want: int) -> None:
    """Creates services until `want` exist, a few at a time (no timing: this is setup)."""
    missing = want - have
    if missing > 0:
        _, errors = asyncio.run(burst([url], missing, "fill", concurrency=8))
        if errors:
            raise SystemExit(f"{errors} of {missing} setup creates failed")


def two_replicas_on_postgresql(code: Path, scratch: Path, count: int) -> None:
    import psycopg

    name = f"pltf_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        print(f"two replicas on PostgreSQL: skipped, {POSTGRES_ADMIN_URL} is not reachable ({exc})")
        return
    database = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    replicas = []
    try:
        shared = scratch / "shared"
        for n in range(2):
            replicas.append(
                start_server(code, shared, {"PLTF_DATABASE_URL": database, "PLTF_REPLICA_ID": f"bench-{n}"})
            )
        urls = [url for _, url in replicas]
        for url in urls:
            sequential_creates(url, f"warm-{url.rsplit(':', 1)[1]}", 1)
        report_burst(f"{count} concurrent over 2 replicas on PostgreSQL", urls, count, "pg")
    finally:
        for server, _ in replicas:
            stop(server)
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--services", type=int, default=200, help="services registered for the portal figures")
    parser.add_argument("--page-runs", type=int, default=30)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose server is measured")
    parser.add_argument("--skip", action="append", default=[], choices=["baseline", "portal", "postgresql"])
    args = parser.parse_args()
    code = args.code.resolve()
    print(f"code: {code}, {os.cpu_count()} CPUs (a shared machine: expect noise)")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        baseline = None
        if "baseline" not in args.skip:
            baseline = bare_baseline(code, scratch, args.runs)
            print(f"bare render + git init/add/commit + push x{args.runs}: {p50_p95(baseline)}")
            shutil.rmtree(scratch / "baseline-0", ignore_errors=True)
        server, url = start_server(code, scratch / "data")
        try:
            sequential_creates(url, "warm-up", 1)
            sequential = sequential_creates(url, "seq", args.runs)
            ratio = f", {percentile(sequential, 0.5) / percentile(baseline, 0.5):.2f}x the bare p50" if baseline else ""
            print(f"sequential service:create x{args.runs}: {p50_p95(sequential)}{ratio}")
            report_burst(f"{args.concurrent} concurrent", [url], args.concurrent, "burst")
            # The goal's figure: one replica's peak under this load (the portal's figures below add their own).
            rss, children = peak_rss_mib(server.pid), children_peak_rss_mib(server.pid)
            print(f"peak RSS after the burst: server {rss:.0f} MiB, its child processes {children:.0f} MiB more")
            if "portal" not in args.skip:
                fill_services(url, 1 + args.runs + args.concurrent, args.services)
                for label, path in (("portal home /", "/"), ("service page", "/services/seq-0")):
                    times = page_times(url, path, args.page_runs)
                    print(f"{label} with {args.services} services x{args.page_runs}: {p50_p95(times)}")
                times, failed, timeouts = asyncio.run(mixed_gets(url, 200, 50, "seq-0"))
                print(f"200 mixed GETs at concurrency 50: {p50_p95(times)}, {failed} 5xx, {timeouts} timeouts")
            rss, children = peak_rss_mib(server.pid), children_peak_rss_mib(server.pid)
            print(f"peak RSS at the end: server {rss:.0f} MiB, its child processes {children:.0f} MiB more")
        finally:
            stop(server)
        if "postgresql" not in args.skip:
            two_replicas_on_postgresql(code, scratch, args.concurrent)


if __name__ == "__main__":
    main()
