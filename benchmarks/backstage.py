"""The same "Create" three ways, through a real Backstage backend, in one run.

- builtin: a Template that uses only Backstage's built-in actions for what
  Backstage can do here: `fetch:template` renders the same file tree (see
  builtin_template: Backstage cannot render the cookiecutter's Jinja as it
  is), then `catalog:register` reads a catalog-info.yaml over HTTP. No publish
  action can reach a forge from this machine, so this path creates no
  repository: it does less work than pltf's.
- pltf module: backstage-templates/<template>.yaml, one `pltf:service:create`
  step of pltf's scaffolder module (installed from its packed tarball): the run
  is started at once and its log streamed into the task (render, repository and
  push on the embedded forge, pltf's catalog; a preview only with --preview),
  then Backstage's `catalog:register`.
- pltf Roadie: the same template generated with `--roadie`, calling
  `service:create` through the proxy with `http:backstage:request`, which holds
  the request until the run ends, then `catalog:register`.

Prints the p50 and p95 of sequential tasks (POST /v2/tasks to the completion
event), and tasks per second for a burst of concurrent tasks.

    tests/e2e/backstage/install.sh   # once; cached
    .venv/bin/python benchmarks/backstage.py [--runs 10] [--burst 30]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT))  # this checkout's actions_server, not an installed one

from backstage_harness import TEMPLATES_DIR, Backstage, install, install_module  # noqa: E402

from actions_server.templates.backstage import TemplateOptions, load_cookiecutter, render  # noqa: E402
from conftest import TOKEN, ServerProcess  # noqa: E402

OWNER = "group:default/platform-team"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class CatalogInfoServer:
    """Serves /catalog/<name>.yaml: a Component for any name, for the built-in path's catalog:register."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                name = self.path.rsplit("/", 1)[-1].removesuffix(".yaml")
                body = yaml.safe_dump(
                    {
                        "apiVersion": "backstage.io/v1alpha1",
                        "kind": "Component",
                        "metadata": {"name": name},
                        "spec": {"type": "service", "lifecycle": "experimental", "owner": OWNER},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/yaml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


PLACEHOLDER = "qqbenchskeletonqq"


def builtin_template(workdir: Path, pltf: ServerProcess, template: str, catalog_host: str) -> Path:
    """A built-in-actions-only Template next to a Nunjucks version of the same skeleton.

    fetch:template cannot render the cookiecutter's Jinja itself (it has no `tojson`, treats
    `{% raw %}` and Python string methods differently), so the skeleton is the cookiecutter's
    own output for a placeholder name, with that name made a `${{ values.name }}` expression
    and everything else kept literal. The file tree is the same; the templating is lighter.
    """
    with pltf.client() as client:
        response = client.post(
            "/v1/actions/cookiecutter:render/runs",
            json={"input": {"template": template, "values": {"name": PLACEHOLDER}}, "dryRun": True},
        )
    response.raise_for_status()
    files = response.json()["output"]["directoryContents"]
    expression = "${{ values.name }}"
    skeleton = workdir / "skeleton"
    for entry in files:
        relative = entry["path"].split("/", 1)[1] if entry["path"].startswith(PLACEHOLDER + "/") else entry["path"]
        data = base64.b64decode(entry["base64Content"])
        target = skeleton / relative.replace(PLACEHOLDER, expression)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            target.write_bytes(data)
        else:
            parts = ["{% raw %}" + part + "{% endraw %}" if part else "" for part in text.split(PLACEHOLDER)]
            target = target.with_name(target.name + ".njk")
            target.write_text(expression.join(parts), encoding="utf-8")
        if entry.get("executable"):
            target.chmod(0o755)
    document = {
        "apiVersion": "scaffolder.backstage.io/v1beta3",
        "kind": "Template",
        "metadata": {"name": f"{template}-builtin", "title": f"{template} with built-in actions only"},
        "spec": {
            "owner": OWNER,
            "type": "service",
            "parameters": [{"required": ["name"], "properties": {"name": {"type": "string"}}}],
            "steps": [
                {
                    "id": "fetch",
                    "name": "Render the skeleton",
                    "action": "fetch:template",
                    "input": {
                        "url": "./skeleton",
                        "templateFileExtension": True,
                        "values": {"name": "${{ parameters.name }}"},
                    },
                },
                {
                    "id": "register",
                    "name": "Register",
                    "action": "catalog:register",
                    "input": {"catalogInfoUrl": f"http://{catalog_host}/catalog/" + "${{ parameters.name }}.yaml"},
                },
            ],
        },
    }
    path = workdir / "builtin.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def builtin_values(name: str) -> dict[str, Any]:
    return {"name": name}


def pltf_values(forge_host: str, name: str, preview: bool) -> dict[str, Any]:
    return {
        "name": name,
        "owner": OWNER,
        "repoUrl": f"{forge_host}?owner=platform-team&repo={name}",
        "preview": preview,
    }


def run_sequential(
    backstage: Backstage, template: str, values_for: Callable[[str], dict[str, Any]], runs: int, prefix: str
) -> list[float]:
    samples = []
    with backstage.client() as api:
        for n in range(runs + 1):  # the first is a warm-up
            name = f"{prefix}{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            task_id = backstage.create_task(template, values_for(name), api)
            result = backstage.follow(task_id, timeout=180, api=api, poll=0.02)
            elapsed = (time.perf_counter() - started) * 1000
            if result.status != "completed":
                raise SystemExit(f"{template}: task {result.status}:\n{result.log[-3000:]}")
            if n:
                samples.append(elapsed)
    return samples


def run_burst(
    backstage: Backstage, template: str, values_for: Callable[[str], dict[str, Any]], count: int
) -> tuple[float, int]:
    """Starts `count` tasks at once; returns tasks/second until the last finished, and the failures."""
    names = [f"burst-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(count, 16)) as pool:
        ids = list(pool.map(lambda name: backstage.create_task(template, values_for(name)), names))
    pending = set(ids)
    failed = 0
    deadline = time.monotonic() + 600
    with backstage.client() as api:
        while pending and time.monotonic() < deadline:
            tasks = api.get("/scaffolder/v2/tasks", params={"limit": 1000}).json()["tasks"]
            for task in tasks:
                if task["id"] in pending and task["status"] in ("completed", "failed", "cancelled"):
                    pending.discard(task["id"])
                    failed += task["status"] != "completed"
            if pending:
                time.sleep(0.05)
    if pending:
        raise SystemExit(f"{template}: {len(pending)} tasks did not finish")
    return count / (time.perf_counter() - started), failed


def pltf_run_p50(pltf: ServerProcess, prefix: str) -> float:
    """The p50 of service:create's own duration (startedAt to finishedAt) for the services named prefix*."""
    from datetime import datetime

    with pltf.client() as client:
        runs = client.get("/v1/runs", params={"action": "service:create", "limit": 500}).json()["runs"]
    samples = [
        (datetime.fromisoformat(run["finishedAt"]) - datetime.fromisoformat(run["startedAt"])).total_seconds() * 1000
        for run in runs
        if run.get("finishedAt") and str((run.get("input") or {}).get("name", "")).startswith(prefix)
    ]
    return percentile(samples, 0.5) if samples else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", default="python-service")
    parser.add_argument("--runs", type=int, default=10, help="sequential tasks per path")
    parser.add_argument("--burst", type=int, default=30, help="concurrent tasks per path")
    parser.add_argument("--only", choices=["builtin", "module", "roadie"], help="time one path only")
    parser.add_argument(
        "--preview", action="store_true", help="let pltf start a preview per service (a process each; off by default)"
    )
    args = parser.parse_args()

    print(install().splitlines()[-1])
    work = Path(tempfile.mkdtemp(prefix="pltf-bench-backstage-"))
    catalog = CatalogInfoServer()
    pltf = ServerProcess(
        {
            "PLTF_DATA_DIR": str(work / "data"),
            "PLTF_TEMPLATES_DIR": str(ROOT / "cookiecutters"),
            "PLTF_API_TOKEN": TOKEN,
            "PLTF_LOG_LEVEL": "warning",
        },
        work / "pltf.log",
    )
    backstage = Backstage(
        "",
        TOKEN,
        work / "backstage",
        [],
        reading_hosts=[catalog.host],
    )
    try:
        pltf.start()
        backstage.pltf_url = pltf.url
        roadie = work / f"{args.template}-roadie.yaml"
        roadie.write_text(
            render(
                load_cookiecutter(ROOT / "cookiecutters" / args.template),
                TemplateOptions(name=f"{args.template}-roadie", roadie=True),
            )
        )
        backstage.template_files = [
            TEMPLATES_DIR / f"{args.template}.yaml",
            roadie,
            builtin_template(work, pltf, args.template, catalog.host),
        ]
        backstage.modules = [install_module(work / "module")]
        backstage.start()
        for name in (args.template, f"{args.template}-roadie", f"{args.template}-builtin"):
            backstage.wait_for_entity("template", name)
        forge = urlsplit(pltf.url).netloc
        paths: list[tuple[str, str, str, Callable[[str], dict[str, Any]]]] = [
            ("builtin", "builtin (fetch:template + catalog:register)", f"{args.template}-builtin", builtin_values),
            (
                "module",
                "pltf module (pltf:service:create + catalog:register)",
                args.template,
                lambda n: pltf_values(forge, n, args.preview),
            ),
            (
                "roadie",
                "pltf Roadie (http:backstage:request + catalog:register)",
                f"{args.template}-roadie",
                lambda n: pltf_values(forge, n, args.preview),
            ),
        ]
        print(
            f"Backstage {backstage.url}, pltf {pltf.url}; {args.runs} sequential tasks and a burst of {args.burst} each"
        )
        for key, label, template, values_for in paths:
            if args.only and key != args.only:
                continue
            prefix = f"seq{key[0]}-"
            samples = run_sequential(backstage, template, values_for, args.runs, prefix)
            rate, failed = run_burst(backstage, template, values_for, args.burst)
            print(
                f"{label:<56} p50 {percentile(samples, 0.5):7.0f} ms   p95 {percentile(samples, 0.95):7.0f} ms"
                f"   mean {statistics.fmean(samples):7.0f} ms   burst of {args.burst}: {rate:5.2f} tasks/s, {failed} failed"
            )
            if key != "builtin":
                own = pltf_run_p50(pltf, prefix)
                print(f"{'':<56} of which service:create itself: p50 {own:7.0f} ms (sequential)")
    finally:
        backstage.stop()
        pltf.stop()
        catalog.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
