"""Template updates across a fleet: the time per repository of `template:update` (p50/p95), and the
wall time of `pltf update --all` over the same fleet with bounded parallelism.

A real server (its own process), a local template at version 1, a fleet of services made from it (every
fifth with an edit that conflicts with version 2), then version 2 with changed lines, a new file, a
removed file and a renamed one (the fleet of tests/test_template_update.py).

    .venv/bin/python benchmarks/template_update.py [--fleet 50] [--parallel 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # this checkout's actions_server, not an installed one

from test_template_update import V1, V2, make_service, push_edit, replace_in, run, write_template  # noqa: E402

from conftest import TOKEN, ServerProcess  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        templates = tmp / "templates"
        write_template(templates, "1", V1)
        env = {
            "PLTF_DATA_DIR": str(tmp / "data"),
            "PLTF_TEMPLATES_DIR": str(templates),
            "PLTF_API_TOKEN": TOKEN,
        }
        server = ServerProcess(env, tmp / "server.log").start()
        try:
            names = [f"svc-{n:03d}" for n in range(args.fleet)]
            with server.client() as client:
                for n, name in enumerate(names):
                    remote = make_service(client, name)
                    if n % 5 == 0:
                        push_edit(remote, tmp / "edits" / name, replace_in("app.py", "VERSION = 1", "VERSION = 7"))
                write_template(templates, "2", V2)
                seconds = []
                statuses: dict[str, int] = {}
                for name in names[: args.fleet // 2]:
                    started = time.perf_counter()
                    answer = run(client, "template:update", {"repository": f"team-a/{name}"})
                    seconds.append(time.perf_counter() - started)
                    status = answer.json()["output"]["status"]
                    statuses[status] = statuses.get(status, 0) + 1
            started = time.perf_counter()
            fleet = subprocess.run(
                [sys.executable, "-m", "actions_server.cli", "update", "--all", "--template", "svc", "--json"]
                + ["--parallel", str(args.parallel)],
                env={**os.environ, "PLTF_URL": server.url, "PLTF_API_TOKEN": TOKEN},
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - started
            rows = json.loads(fleet.stdout)
        finally:
            server.stop()
    print(f"fleet of {args.fleet}: template:update one at a time over {len(seconds)} repositories")
    print(
        f"  per repository: p50 {percentile(seconds, 0.5) * 1000:.0f} ms, p95 {percentile(seconds, 0.95) * 1000:.0f} ms"
    )
    print(f"  statuses: {statuses}")
    print(
        f"pltf update --all --parallel {args.parallel}: {len(rows)} repositories in {wall:.1f} s "
        f"({wall / len(rows) * 1000:.0f} ms per repository; the first half answered from their open change requests)"
    )


if __name__ == "__main__":
    main()
