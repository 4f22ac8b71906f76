"""The import graph of actions_server: no circle, and the layers import downwards (docs/architecture.md).

Read from the source with `ast`, so imports inside functions and under
TYPE_CHECKING count too: they hide a dependency without removing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "actions_server"


def import_graph() -> dict[str, set[str]]:
    """Each module of actions_server and the modules of actions_server it imports."""
    modules: dict[str, tuple[Path, bool]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
                module = ".".join(part for part in (base, node.module or "") if part)
                # `from package import module` imports the module as well as the package.
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name].update(t for t in map(known, targets) if t is not None and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_relative_lazy_and_type_checking_imports() -> None:
    graph = import_graph()
    assert "actions_server.services" in graph["actions_server.app"]  # from .services import … at the top
    assert "actions_server.auth" in graph["actions_server.action"]  # under TYPE_CHECKING
    assert "actions_server.app" in graph["actions_server.cli"]  # inside a function


def test_no_module_of_actions_server_imports_itself_in_a_circle() -> None:
    assert cycles(import_graph()) == []


def test_only_the_composition_root_and_the_portals_routes_import_the_portal() -> None:
    """The forge, the actions and the specs publish events (events.py); the portal subscribes at start-up.
    Above it, only its own HTTP edge (api/portal.py, api/webhooks.py, and api/deps.py for their parts) reads it."""
    importers = {
        module
        for module, imported in import_graph().items()
        if not module.startswith("actions_server.portal")
        and any(target.startswith("actions_server.portal") for target in imported)
    }
    assert importers <= {
        "actions_server.app",
        "actions_server.services",
        "actions_server.api.portal",
        "actions_server.api.webhooks",
        "actions_server.api.deps",  # PortalPartsDep: what the portal routes hand the figures
    }


# docs/architecture.md's table: each module's layer, by its longest listed prefix.
LAYERS: dict[str, int] = {
    # 1. foundation
    "actions_server": 1,
    "actions_server.config": 1,
    "actions_server.errors": 1,
    "actions_server.events": 1,
    "actions_server.auth": 1,
    "actions_server.logs": 1,
    "actions_server.redact": 1,
    "actions_server.metrics": 1,
    "actions_server.db": 1,
    "actions_server.migrations": 1,
    "actions_server.sandbox": 1,
    "actions_server.snapshots": 1,
    "actions_server.names": 1,
    "actions_server.urls": 1,
    "actions_server.visibility": 1,
    "actions_server.storage": 1,
    "actions_server.http_timeouts": 1,
    "actions_server.http_cache": 1,
    "actions_server.cursors": 1,
    # 2. parts
    "actions_server.templates": 2,
    "actions_server.template_filters": 2,
    "actions_server.updates": 2,
    "actions_server.forges": 2,
    "actions_server.catalog": 2,
    "actions_server.previews": 2,
    "actions_server.specs": 2,
    "actions_server.gitops": 2,
    "actions_server.workspaces": 2,
    "actions_server.workspace_archive": 2,
    "actions_server.portal": 2,
    "actions_server.slo": 2,
    # 3. actions and runs
    "actions_server.action": 3,
    "actions_server.actions": 3,
    "actions_server.runs": 3,
    "actions_server.run_log_writer": 3,
    # 4. composition
    "actions_server.services": 4,
    # 5. edges
    "actions_server.app": 5,
    "actions_server.api": 5,
    "actions_server.previews.commands": 5,
    "actions_server.forges.git_http": 5,
    "actions_server.cli": 5,
    "actions_server.client": 5,
}


def layer(module: str) -> int:
    name = module
    while name not in LAYERS:
        name = name.rpartition(".")[0]
        assert name, f"{module} has no layer: add it to LAYERS and to docs/architecture.md's table"
    return LAYERS[name]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({layer(module)}) -> {target} ({layer(target)})"
        for module, imported in graph.items()
        for target in imported
        if layer(target) > layer(module)
    )


def test_the_layer_map_places_modules_by_their_longest_prefix() -> None:
    assert layer("actions_server.api.catalog_pages") == 5
    assert layer("actions_server.catalog.pages") == 2
    assert layer("actions_server.catalog.reader") == 2
    assert layer("actions_server.migrations.versions.0001_previous_release") == 1
    assert upward_imports({"actions_server.config": {"actions_server.services"}, "actions_server.services": set()}) == [
        "actions_server.config (1) -> actions_server.services (4)"
    ]


def test_at_most_two_imports_run_up_a_layer() -> None:
    """A lower layer that imports a higher one hides who depends on whom (issue 13: at most two)."""
    found = upward_imports(import_graph())
    assert len(found) <= 2, "imports that run up a layer:\n" + "\n".join(found)
