"""Hooks get their values rendered into their source, as in cookiecutter: a value that breaks out of the
hook's quotes changes what the hook does, but only inside the sandbox, and the server evaluates nothing."""

from __future__ import annotations

import json
from pathlib import Path

from compat_harness import archive_tree, write_template
from fastapi.testclient import TestClient

from actions_server.app import create_app
from conftest import TOKEN, make_settings

RENDER = "/v1/actions/cookiecutter:render/runs"
# A hook as cookiecutter-pypackage's first versions wrote it: the value inside a Python string literal.
TEMPLATE = {
    "cookiecutter.json": json.dumps({"name": "svc", "slug": "svc"}),
    "hooks/post_gen_project.py": "slug = '{{ cookiecutter.slug }}'\nopen('slug.txt', 'w').write(slug)\n",
    "{{cookiecutter.name}}/README.md": "{{ cookiecutter.slug }}\n",
}
BREAKOUT = (
    "x'\nimport json, os\n"
    "open('seen.json', 'w').write(json.dumps({'env': sorted(os.environ), 'uid': os.getuid(), "
    "'data': os.path.exists(os.environ['DATA'])}))\n#"
)


def test_a_value_breaking_out_of_a_hook_runs_only_in_the_sandbox(tmp_path: Path) -> None:
    write_template(tmp_path / "templates" / "quoting", TEMPLATE)
    settings = make_settings(tmp_path, templates_dir=tmp_path / "templates")
    slug = BREAKOUT.replace("os.environ['DATA']", repr(str(settings.storage.data_dir)))
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        response = client.post(RENDER, json={"input": {"template": "quoting", "values": {"slug": slug}}})
        assert response.status_code == 200, response.text
        archive = client.get(f"/v1/workspaces/{response.json()['output']['workspaceId']}/archive")
    _, tree = archive_tree(archive.content)
    # The files the server rendered hold the value as sent; the hook ran what the value made of it.
    assert tree["README.md"][2] == f"{slug}\n".encode()
    seen = json.loads(tree["seen.json"][2])
    assert not any(name.startswith("PLTF_") and name != "PLTF_CONTEXT_FILE" for name in seen["env"])
    assert seen["data"] is False
    assert seen["uid"] != 0
