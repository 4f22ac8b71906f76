"""Renders in one server proceed at the same time: none waits for another to finish generating."""

from __future__ import annotations

import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from conftest import ServerProcess

RENDER = "/v1/actions/cookiecutter:render/runs"

# A filter that meets its partner halfway through generating a file: it says it has arrived, then waits
# (bounded) for the partner to arrive. Two renders that had to take turns would never meet.
MEETING = """
import time
from pathlib import Path

from cookiecutter.utils import simple_filter


@simple_filter
def meet(name, partner, place):
    Path(place, name).touch()
    deadline = time.monotonic() + 20
    while not Path(place, partner).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} waited for {partner} in vain")
        time.sleep(0.02)
    return f"{name} met {partner}"
"""


def _rendezvous_template(root: Path) -> Path:
    template = root / "rendezvous"
    project = template / "{{cookiecutter.name}}"
    project.mkdir(parents=True)
    (template / "cookiecutter.json").write_text(
        json.dumps({"name": "a", "partner": "b", "place": "", "_extensions": ["local_extensions.meet"]})
    )
    (template / "local_extensions.py").write_text(MEETING)
    (project / "met.txt").write_text("{{ cookiecutter.name | meet(cookiecutter.partner, cookiecutter.place) }}\n")
    return root


def test_two_renders_generate_at_the_same_time(tmp_path: Path, server_env: dict[str, str]) -> None:
    templates = _rendezvous_template(tmp_path / "templates")
    place = tmp_path / "place"
    place.mkdir()
    running = ServerProcess({**server_env, "PLTF_TEMPLATES_DIR": str(templates)}, tmp_path / "server.log").start()
    try:
        with running.client() as client:

            def render(name: str, partner: str) -> httpx.Response:
                values = {"name": name, "partner": partner, "place": str(place)}
                return client.post(RENDER, json={"input": {"template": "rendezvous", "values": values}})

            with ThreadPoolExecutor(2) as pool:
                first, second = pool.map(lambda pair: render(*pair), [("a", "b"), ("b", "a")])
            for response, name, partner in ((first, "a", "b"), (second, "b", "a")):
                assert response.status_code == 200, response.text
                workspace = response.json()["output"]["workspaceId"]
                archive = client.get(f"/v1/workspaces/{workspace}/archive")
                assert archive.status_code == 200
                assert _member(archive.content, f"{name}/met.txt") == f"{name} met {partner}\n"
    finally:
        running.stop()


def _member(archive: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read().decode()
