"""Renders cases with cookiecutter's own Python API: the reference the differential suite compares pltf with.

Run as a script (`python compat_reference.py cases.json results.json`), in a process of its own: cookiecutter
changes the working directory and imports a template's local extensions into sys.modules for good.
Each case is {"id", "template", "values", "output_dir", "checkout", "directory"}; each result is
{"project": path} or {"error": "ExceptionName: message"}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Where installed modules come from; anything else a case imported came from its template.
INSTALLED = tuple({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})


def main(cases_file: str, results_file: str, config_file: str) -> None:
    from cookiecutter.main import cookiecutter

    results: dict[str, dict[str, str]] = {}
    home = os.getcwd()
    for case in json.loads(Path(cases_file).read_text()):
        before = set(sys.modules)
        try:
            project = cookiecutter(
                case["template"],
                checkout=case.get("checkout"),
                no_input=True,
                extra_context=case["values"] or None,
                output_dir=case["output_dir"],
                config_file=config_file,
                directory=case.get("directory"),
                accept_hooks=True,
            )
            results[case["id"]] = {"project": project}
        except BaseException as exc:  # noqa: BLE001 - every way cookiecutter refuses is a result to compare
            results[case["id"]] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            os.chdir(home)
            # A template's `local_extensions` must not answer for the next template's.
            for name in set(sys.modules) - before:
                origin = os.path.realpath(getattr(sys.modules[name], "__file__", None) or sys.prefix)
                if not origin.startswith(INSTALLED):
                    del sys.modules[name]
    Path(results_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:4])
