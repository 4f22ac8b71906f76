"""The README's configuration table is the settings' own reference, so neither drifts."""

from __future__ import annotations

import re

from actions_server.cli import settings_table
from actions_server.config import PROJECT_ROOT


def test_readme_documents_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings:begin[^>]*-->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert match is not None, "README.md lost its settings markers"
    assert match.group(1) == settings_table(), "README is stale: run `pltf config --reference` and paste the table"
