"""Templates of our own for the differential suite, one per cookiecutter feature pltf must match.

Each template is a mapping of relative path to content (text, bytes, or (content, mode)); each case names
a template, the values a caller sends, and what the comparison must show:

- "identical": cookiecutter and pltf generate the same tree, bytes and modes;
- "refused": both refuse (cookiecutter raises, pltf answers 4xx with a message that says why);
- "values-as-data": they differ, by design, only where a value contains template syntax
  (README, "Differences from cookiecutter").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082"
)

Content = str | bytes | tuple[str | bytes, int]


def _json(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


TEMPLATES: dict[str, dict[str, Content]] = {
    # Hooks as cookiecutter-pypackage and cookiecutter-django write them: rendered with Jinja, a pre-gen
    # check that exits 1 on a bad name, a post-gen clean-up, a shell hook without its executable bit,
    # and a pre_prompt hook that changes cookiecutter.json before anything is asked.
    "hooks": {
        "cookiecutter.json": _json(
            {
                "project_name": "Hooked Project",
                "project_slug": "{{ cookiecutter.project_name.lower().replace(' ', '_') }}",
                "open_source_license": ["MIT", "BSD-3-Clause", "Not open source"],
            }
        ),
        "hooks/pre_prompt.py": (
            "import json\n"
            "from pathlib import Path\n\n"
            "config = json.loads(Path('cookiecutter.json').read_text())\n"
            "config['added_by_pre_prompt'] = 'pre-prompt ran in ' + Path.cwd().name\n"
            "Path('cookiecutter.json').write_text(json.dumps(config))\n"
        ),
        "hooks/pre_gen_project.py": (
            "import os\nimport re\nimport sys\n\n"
            "MODULE_REGEX = r'^[_a-zA-Z][_a-zA-Z0-9]+$'\n"
            "module_name = '{{ cookiecutter.project_slug }}'\n"
            "if not re.match(MODULE_REGEX, module_name):\n"
            "    print('ERROR: The project slug (%s) is not a valid Python module name.' % module_name)\n"
            "    sys.exit(1)\n"
            "# Inside the project directory, before its files exist.\n"
            "with open('pre_gen_cwd.txt', 'w') as out:\n"
            "    out.write(os.path.basename(os.getcwd()) + ' ' + repr(sorted(os.listdir('.'))) + '\\n')\n"
        ),
        "hooks/post_gen_project.py": (
            "import os\n\n"
            "if '{{ cookiecutter.open_source_license }}' == 'Not open source':\n"
            "    os.remove('LICENSE')\n"
            "with open('post_gen.txt', 'w') as out:\n"
            "    out.write('{{ cookiecutter.added_by_pre_prompt }}\\n')\n"
        ),
        "hooks/post_gen_project.sh": (
            "#!/bin/sh\necho 'shell hook for {{ cookiecutter.project_name }}' > from_shell_hook.txt\n",
            0o644,
        ),
        "{{cookiecutter.project_slug}}/README.md": "# {{ cookiecutter.project_name }}\n",
        "{{cookiecutter.project_slug}}/LICENSE": "{{ cookiecutter.open_source_license }}\n",
        "{{cookiecutter.project_slug}}/{{cookiecutter.project_slug}}/__init__.py": '"""{{ cookiecutter.project_name }}."""\n',
    },
    "failing-post-hook": {
        "cookiecutter.json": _json({"name": "doomed"}),
        "hooks/post_gen_project.py": "import sys\n\nprint('cannot reach the schema registry for {{ cookiecutter.name }}')\nsys.exit(3)\n",
        "{{cookiecutter.name}}/README.md": "{{ cookiecutter.name }}\n",
    },
    # `_extensions` naming a module of the template itself: cookiecutter puts the template on sys.path.
    "local-extensions": {
        "cookiecutter.json": _json(
            {"name": "World", "_extensions": ["local_extensions.HelloExtension", "local_extensions.shout"]}
        ),
        "local_extensions.py": (
            "from cookiecutter.utils import simple_filter\n"
            "from jinja2.ext import Extension\n\n\n"
            "@simple_filter\n"
            "def shout(value):\n"
            "    return value.upper() + '!'\n\n\n"
            "class HelloExtension(Extension):\n"
            "    def __init__(self, environment):\n"
            "        super().__init__(environment)\n"
            "        environment.globals['hello'] = lambda name: 'Hello ' + name\n"
        ),
        "hooks/pre_gen_project.py": "assert '{{ hello(cookiecutter.name) }}' == 'Hello World'\n",
        "{{cookiecutter.name | shout}}/greeting.txt": "{{ hello(cookiecutter.name) }}, {{ cookiecutter.name | shout }}\n",
    },
    # A partial dict override is merged into the default; defaults render in cookiecutter's order.
    "dicts-and-order": {
        "cookiecutter.json": _json(
            {
                "name": "Orders",
                "__slug": "{{ cookiecutter.name | lower }}",
                "package": "{{ cookiecutter.__slug }}_pkg",
                "settings": {"module": "{{ cookiecutter.later }}", "{{ cookiecutter.__slug }}_key": 1},
                "db": {"engine": "postgres", "port": 5432, "options": {"ssl": True, "pool": [1, 2]}},
                "later": "x-{{ cookiecutter.package }}",
                "port": 8000,
                "double": "{{ cookiecutter.port * 2 }}",
                "ratio": 1.5,
                "enabled": True,
                "nothing": None,
                "_raw": "{{ stays as written }}",
            }
        ),
        "{{cookiecutter.package}}/values.txt": (
            "package={{ cookiecutter.package }}\n"
            "settings={{ cookiecutter.settings | jsonify }}\n"
            "db={{ cookiecutter.db | jsonify }}\n"
            "later={{ cookiecutter.later }}\n"
            "port={{ cookiecutter.port }} {{ cookiecutter.port is string }}\n"
            "double={{ cookiecutter.double }}\n"
            "ratio={{ cookiecutter.ratio }} enabled={{ cookiecutter.enabled }} nothing={{ cookiecutter.nothing }}\n"
            "raw={{ cookiecutter._raw }}\n"
            "given={{ _cookiecutter.db | jsonify }} {{ _cookiecutter.port }}\n"
        ),
    },
    # `_jinja2_env_vars`: other delimiters (the project directory is found by them), trim_blocks.
    "delimiters": {
        "cookiecutter.json": _json(
            {
                "name": "custom",
                "greeting": "hi [[ cookiecutter.name ]]",
                "_jinja2_env_vars": {
                    "variable_start_string": "[[",
                    "variable_end_string": "]]",
                    "block_start_string": "[%",
                    "block_end_string": "%]",
                    "trim_blocks": True,
                },
            }
        ),
        "[[cookiecutter.name]]/[[cookiecutter.name]].txt": (
            "[[ cookiecutter.greeting ]] {{ left alone }}\n[% if true %]\ntrimmed\n[% endif %]\n"
        ),
    },
    # A template of templates (`templates`): without prompts, cookiecutter takes the first.
    "nested": {
        "cookiecutter.json": _json(
            {
                "templates": {
                    "service": {"path": "./service", "title": "Service", "description": "A service"},
                    "library": {"path": "./library", "title": "Library", "description": "A library"},
                }
            }
        ),
        "service/cookiecutter.json": _json({"name": "nested-service"}),
        "service/{{cookiecutter.name}}/README.md": "service {{ cookiecutter.name }}\n",
        "library/cookiecutter.json": _json({"name": "nested-library"}),
        "library/{{cookiecutter.name}}/README.md": "library {{ cookiecutter.name }}\n",
    },
    # `_copy_without_render`: a directory of templates copied as it is, names included.
    "copy-only": {
        "cookiecutter.json": _json({"name": "tot", "_copy_without_render": ["*.tmpl", "inner-templates", "*-assets"]}),
        "{{cookiecutter.name}}/raw.tmpl": "{{ cookiecutter.not_defined }}\n",
        "{{cookiecutter.name}}/inner-templates/cookiecutter.json": '{"project_slug": "x"}\n',
        "{{cookiecutter.name}}/inner-templates/{{cookiecutter.project_slug}}/README.md": "{{ cookiecutter.project_slug }}\n",
        "{{cookiecutter.name}}/{{cookiecutter.name}}-assets/{{ other }}.txt": "{% raw %}\n",
        "{{cookiecutter.name}}/rendered.txt": "{{ cookiecutter.name }}\n",
    },
    # Choices whose options are templates themselves; the chosen option is rendered.
    "choices": {
        "cookiecutter.json": _json(
            {"name": "c", "flavour": ["{{ cookiecutter.name }}-vanilla", "chocolate", 3], "size": [1, 2]}
        ),
        "{{cookiecutter.name}}/choice.txt": "{{ cookiecutter.flavour }} {{ cookiecutter.size }}\n",
    },
    # `_new_lines`, and a template file's own line endings kept when it is not set.
    "newlines": {
        "cookiecutter.json": _json({"name": "nl", "_new_lines": "\r\n"}),
        "{{cookiecutter.name}}/unix.txt": "a\nb {{ cookiecutter.name }}\n",
    },
    "crlf": {
        "cookiecutter.json": _json({"name": "crlf"}),
        "{{cookiecutter.name}}/windows.txt": b"a\r\nb {{ cookiecutter.name }}\r\n",
        "{{cookiecutter.name}}/mixed.txt": b"a\nb\r\n",
    },
    # What cookiecutter adds to the context: `_output_dir`, `_repo_dir`, `_checkout`, `_template`.
    "context-extras": {
        "cookiecutter.json": _json({"name": "ctx", "_private": "{{ raw }}", "later": "{{ cookiecutter.name }}-2"}),
        "{{cookiecutter.name}}/context.txt": (
            "checkout={{ cookiecutter._checkout }}\n"
            "output_dir absolute={{ cookiecutter._output_dir.startswith('/') }}\n"
            "repo_dir absolute={{ cookiecutter._repo_dir.startswith('/') }}\n"
            "template={{ cookiecutter._template is string }}\n"
            "private={{ cookiecutter._private }}\n"
            "public={{ _cookiecutter | jsonify }}\n"
            "keys={{ cookiecutter.keys() | join(',') }}\n"
        ),
    },
    # Modes, binaries, a file whose name renders empty (skipped), an empty directory.
    "files": {
        "cookiecutter.json": _json({"name": "files", "with_docs": False, "with_ci": True}),
        "{{cookiecutter.name}}/run.sh": ("#!/bin/sh\necho {{ cookiecutter.name }}\n", 0o755),
        "{{cookiecutter.name}}/secret.env": ("TOKEN=\n", 0o600),
        "{{cookiecutter.name}}/logo.png": PNG,
        "{{cookiecutter.name}}/{% if cookiecutter.with_docs %}docs.md{% endif %}": "docs\n",
        "{{cookiecutter.name}}/{% if cookiecutter.with_ci %}ci.yml{% endif %}": "ci: {{ cookiecutter.name }}\n",
        "{{cookiecutter.name}}/empty/.keep": "",
        "{{cookiecutter.name}}/no-newline.txt": "{{ cookiecutter.name }}",
    },
    # A value with template syntax: cookiecutter evaluates it, pltf writes it as it was sent.
    "values": {
        "cookiecutter.json": _json({"name": "data", "motto": "plain", "derived": "{{ cookiecutter.motto }}!"}),
        "{{cookiecutter.name}}/motto.txt": "{{ cookiecutter.motto }}\n{{ cookiecutter.derived }}\n",
        "{{cookiecutter.name}}/same.txt": "{{ cookiecutter.name }}\n",
    },
    # Errors cookiecutter refuses too: pltf must say which file and what.
    "undefined-in-file": {
        "cookiecutter.json": _json({"name": "broken"}),
        "{{cookiecutter.name}}/bad.txt": "{{ cookiecutter.missing }}\n",
    },
    "syntax-error": {
        "cookiecutter.json": _json({"name": "broken"}),
        "{{cookiecutter.name}}/bad.txt": "{% if %}\n",
    },
    "python-error-in-file": {
        "cookiecutter.json": _json({"name": "broken"}),
        "{{cookiecutter.name}}/bad.txt": "line one\n{{ 1 / 0 }}\n",
    },
    "python-error-in-default": {
        "cookiecutter.json": _json({"name": "broken", "ratio": "{{ 1 / 0 }}"}),
        "{{cookiecutter.name}}/README.md": "x\n",
    },
    "undefined-in-hook": {
        "cookiecutter.json": _json({"name": "broken"}),
        "hooks/pre_gen_project.py": "print('{{ cookiecutter.missing }}')\n",
        "{{cookiecutter.name}}/README.md": "x\n",
    },
    "undefined-in-default": {
        "cookiecutter.json": _json({"name": "{{ cookiecutter.missing }}"}),
        "{{cookiecutter.name}}/README.md": "x\n",
    },
}


@dataclass
class Case:
    name: str
    template: str
    values: dict[str, Any] = field(default_factory=dict)
    expect: str = "identical"
    # For "refused": what pltf's error message must contain.
    message: str = ""
    # For "values-as-data": the files that differ (test_compat checks how).
    differs: tuple[str, ...] = ()


CASES = [
    Case("hooks", "hooks"),
    Case("hooks, another license", "hooks", {"open_source_license": "Not open source"}),
    Case(
        "hooks, a name the pre-gen hook rejects",
        "hooks",
        {"project_name": "Bad Name!"},
        "refused",
        "is not a valid Python module name",
    ),
    Case("failing post-gen hook", "failing-post-hook", {}, "refused", "cannot reach the schema registry for doomed"),
    Case("local extensions", "local-extensions"),
    Case("local extensions, a value", "local-extensions", {"name": "Cookie"}, "refused", "pre_gen_project"),
    Case("dicts and order", "dicts-and-order"),
    Case("partial dict override", "dicts-and-order", {"db": {"engine": "mysql"}}),
    Case("new key deep in a dict", "dicts-and-order", {"db": {"options": {"timeout": 5}}, "settings": {"x": "y"}}),
    Case("numbers are strings", "dicts-and-order", {"port": 9000, "name": "Shop"}),
    Case("custom delimiters", "delimiters"),
    Case("nested templates", "nested"),
    Case("copy without render", "copy-only"),
    Case("choices render", "choices"),
    Case("a choice by value", "choices", {"flavour": "chocolate"}),
    Case("a templated choice by value", "choices", {"flavour": "{{ cookiecutter.name }}-vanilla"}),
    Case("_new_lines", "newlines"),
    Case("line endings kept", "crlf"),
    Case("context extras", "context-extras"),
    Case("modes, binaries, skipped files", "files"),
    Case("modes, a skipped file included", "files", {"with_docs": True, "with_ci": False}),
    Case("plain values", "values", {"motto": "carpe diem", "name": "other"}),
    Case("a value with template syntax", "values", {"motto": "{{ 7 * 7 }}"}, "values-as-data", differs=("motto.txt",)),
    Case("undefined variable in a file", "undefined-in-file", {}, "refused", "bad.txt"),
    Case("syntax error in a file", "syntax-error", {}, "refused", "bad.txt"),
    Case("undefined variable in a default", "undefined-in-default", {}, "refused", "cookiecutter.json"),
    Case("Python error in a file", "python-error-in-file", {}, "refused", "bad.txt, line 2"),
    Case("Python error in a default", "python-error-in-default", {}, "refused", "ZeroDivisionError"),
    Case("undefined variable in a hook", "undefined-in-hook", {}, "refused", "hooks/pre_gen_project.py"),
]
