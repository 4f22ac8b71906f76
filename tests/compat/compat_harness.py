"""What the differential tests share: cookiecutter's own test templates, a running pltf, and tree comparison."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat_fixtures import TEMPLATES

PINNED = importlib.metadata.version("cookiecutter")
RENDER = "/v1/actions/cookiecutter:render/runs"
REFERENCE = Path(__file__).with_name("compat_reference.py")

# A file's kind, mode and bytes (a link's target), by path relative to the project directory.
Tree = dict[str, tuple[str, int, bytes]]


def cookiecutter_test_templates(destination: Path) -> dict[str, Path]:
    """The templates cookiecutter's own test suite uses, from the sdist of the pinned version, by path in tests/."""
    download = destination / "download"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        + ["--dest", str(download), f"cookiecutter=={PINNED}"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (sdist,) = download.glob("cookiecutter-*.tar.gz")
    prefix = f"cookiecutter-{PINNED}/tests/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        archive.extractall(destination, members=members, filter="tar")
    tests = destination / prefix
    return {str(config.parent.relative_to(tests)): config.parent for config in sorted(tests.rglob("cookiecutter.json"))}


def template_name(relative: str) -> str:
    """A name pltf accepts for one of cookiecutter's test templates (`test-extensions/default`)."""
    return "cc-" + relative.replace("/", "--").lower()


def write_template(root: Path, files: dict[str, Any]) -> Path:
    for relative, content in files.items():
        data, mode = content if isinstance(content, tuple) else (content, None)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        if mode is not None:
            path.chmod(mode)
    return root


def own_templates(destination: Path) -> dict[str, Path]:
    return {name: write_template(destination / name, files) for name, files in TEMPLATES.items()}


def disk_tree(project: Path) -> Tree:
    tree: Tree = {}
    for path in [project, *sorted(project.rglob("*"))]:
        relative = str(path.relative_to(project))
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            tree[relative] = ("link", 0, os.readlink(path).encode())
        elif stat.S_ISDIR(info.st_mode):
            tree[relative] = ("dir", stat.S_IMODE(info.st_mode), b"")
        else:
            tree[relative] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return tree


def archive_tree(data: bytes) -> tuple[str, Tree]:
    """The project directory's name and tree, read from a workspace archive without extracting it."""
    tree: Tree = {}
    root = ""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            top, _, relative = member.name.partition("/")
            root = root or top
            key = relative or "."
            if member.issym():
                tree[key] = ("link", 0, member.linkname.encode())
            elif member.isdir():
                tree[key] = ("dir", stat.S_IMODE(member.mode), b"")
            else:
                handle = archive.extractfile(member)
                tree[key] = ("file", stat.S_IMODE(member.mode), handle.read() if handle else b"")
    return root, tree


def differences(expected: Tree, actual: Tree) -> list[str]:
    found = []
    for path in sorted(set(expected) | set(actual)):
        if path == ".cruft.json":
            # pltf records what made every render there, with the commit that renders it again (template:update).
            continue
        if path not in actual:
            found.append(f"{path}: missing from pltf's")
        elif path not in expected:
            found.append(f"{path}: only in pltf's")
        elif expected[path][:2] != actual[path][:2]:
            found.append(
                f"{path}: {expected[path][0]} {oct(expected[path][1])} vs {actual[path][0]} {oct(actual[path][1])}"
            )
        elif expected[path][2] != actual[path][2]:
            found.append(f"{path}: content {expected[path][2][:200]!r} vs {actual[path][2][:200]!r}")
    return found


def reference_render(cases: list[dict[str, Any]], workdir: Path) -> dict[str, dict[str, str]]:
    """Runs every case through cookiecutter in one process of its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(
        f"cookiecutters_dir: {workdir / 'cookiecutters'}\nreplay_dir: {workdir / 'replay'}\n"
    )
    (workdir / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run(
        [sys.executable, str(REFERENCE), str(workdir / "cases.json"), str(workdir / "results.json")]
        + [str(workdir / "config.yaml")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, dict[str, str]] = json.loads((workdir / "results.json").read_text())
    return results


@dataclass
class Outcome:
    """What pltf answered: the generated tree, or the error."""

    status: int
    directory: str = ""
    tree: Tree | None = None
    error: dict[str, Any] | None = None
    log: list[str] | None = None


def pltf_render(client: Any, body: dict[str, Any]) -> Outcome:
    response = client.post(RENDER, json={"input": body})
    payload = response.json()
    error = payload.get("error")
    log = [line["message"] for line in payload.get("log", [])]
    if response.status_code != 200:
        return Outcome(response.status_code, error=error, log=log)
    archive = client.get(f"/v1/workspaces/{payload['output']['workspaceId']}/archive")
    directory, tree = archive_tree(archive.content)
    return Outcome(200, directory, tree, log=log)
