"""Which repositories were made from a template, on which of its versions, with which update requests.

Read from the repositories themselves (each default branch's `.cruft.json` and the forge's change
requests), so it is never out of date; the portal's drift pages and `pltf update --all` both ask here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..auth import Caller
from ..catalog import Catalog
from ..config import Settings
from ..errors import PltfError
from ..events import EventBus
from ..forges.changes import list_changes
from ..forges.embedded import git_root, read_metadata, repository_dir, repository_dirs
from ..forges.gitpush import git
from ..forges.permissions import may_read
from ..templates.catalog import TEMPLATE_NAME, TemplateCatalog
from .history import CRUFT_FILE, LOCAL_PREFIX, TemplateHistory


@dataclass
class Service:
    repository: str
    template: str
    version: str
    commit: str | None
    updates: list[dict[str, Any]] = field(default_factory=list)
    """The template-update change requests: number, state, toVersion, status."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def template_name(source: str) -> str:
    """`cookiecutters/python-service` and `https://…/python-service.git` are both `python-service`."""
    if source.startswith(LOCAL_PREFIX):
        return source.removeprefix(LOCAL_PREFIX)
    return source.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]


def services_made_from(settings: Settings, template: str | None, caller: Caller | None) -> list[Service]:
    found = []
    for owner, name, repo in repository_dirs(git_root(settings)):
        metadata = read_metadata(repo)
        if not may_read(caller, metadata, settings):
            continue
        branch = str(metadata.get("defaultBranch", "main"))
        shown = git(["show", f"refs/heads/{branch}:{CRUFT_FILE}"], git_dir=repo, timeout=30)
        if shown.returncode != 0:
            continue
        try:
            recorded = json.loads(shown.stdout)
        except ValueError:
            continue
        if not isinstance(recorded, dict):
            continue
        made_from = template_name(str(recorded.get("template") or ""))
        if template is not None and made_from != template:
            continue
        updates = [
            {key: change.get(key) for key in ("number", "state", "toVersion", "status")}
            for change in list_changes(repo)
            if change.get("kind") == "template-update"
        ]
        commit = recorded.get("commit")
        found.append(
            Service(
                repository=f"{owner}/{name}",
                template=made_from,
                version=str(recorded.get("template_version") or "unknown"),
                commit=commit if isinstance(commit, str) else None,
                updates=updates,
            )
        )
    return found


def drift(services: list[Service], versions: list[str]) -> dict[str, Any]:
    """Per version (oldest first, as given): how many services are on it; and the update requests by state."""
    on = Counter(service.version for service in services)
    states = Counter(update["state"] for service in services for update in service.updates)
    return {
        "versions": [{"version": version, "services": on.get(version, 0)} for version in versions]
        + [{"version": version, "services": count} for version, count in on.items() if version not in versions],
        "updateRequests": dict(states),
    }


def after_merge(
    settings: Settings,
    catalog: Catalog,
    events: EventBus,
    owner: str,
    name: str,
    change: dict[str, Any],
    caller: Caller,
) -> list[str]:
    """What a merged change request tells the platform: the push (DORA), and the catalog entities read again
    from the repository, so that their `pltf.dev/template-version` is the merged one. Returns those refs."""
    repo = repository_dir(git_root(settings), owner, name)
    span = f"{change['mergedFrom']}..{change['mergedSha']}"
    listed = git(["log", "--format=%H %cI", "--max-count=500", span], git_dir=repo, timeout=30) if repo else None
    commits = [
        {"sha": sha, "timestamp": when}
        for sha, _, when in (line.partition(" ") for line in (listed.stdout.decode() if listed else "").splitlines())
    ]
    events.publish(
        "forge.push",
        {
            "name": name,
            "owner": owner,
            "ref": f"refs/heads/{change['target']}",
            "after": change["mergedSha"],
            "commits": commits,
            "deliveryId": f"push:{owner}/{name}:refs/heads/{change['target']}:{change['mergedSha']}",
        },
    )
    prefix = f"{settings.server.base_url}/git/{owner}/{name}/raw/"
    refreshed = []
    for location in catalog.locations():
        target = str(location.get("target", ""))
        if not target.startswith(prefix):
            continue
        for entity in catalog.entities_at(target, caller):
            metadata = entity.get("metadata") or {}
            ref = f"{entity.get('kind', '').lower()}:{metadata.get('namespace', 'default')}/{metadata.get('name')}"
            catalog.refresh(ref, caller)
            refreshed.append(ref)
    return refreshed


def template_versions(settings: Settings, templates: TemplateCatalog) -> Callable[[str], list[str]]:
    """A template's versions, oldest first: those pltf rendered (its history) and its current one."""
    history = TemplateHistory(settings)
    known: dict[str, list[str]] = {}

    def versions(name: str) -> list[str]:
        if name not in known:
            found = history.versions(name) if TEMPLATE_NAME.match(name) else []
            try:
                latest = templates.get(name).version
            except PltfError:
                latest = None
            known[name] = found + ([latest] if latest is not None and latest not in found else [])
        return known[name]

    return versions
