"""Which services exist, who owns them, and what their repositories hold.

Sources, merged by service name:
1. the catalog's Components (`services.catalog.query(kind=component)`, when the
   catalog is installed; embedded or Backstage);
2. `catalog-info.yaml` at HEAD of each public embedded-forge repository (the
   portal is public: a private repository's files are its team's to publish);
3. `envs/<env>/<service>/` in the GitOps repository (the team from the Namespace's `pltf.io/owner`);
4. the services named by events (a team from `repo.created`/`spec.applied`).
"""

from __future__ import annotations

import fnmatch
import importlib
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..forges.embedded import git_root, read_metadata, repository_dirs
from ..forges.gitpush import git
from ..forges.permissions import owner_team
from ..logs import get_logger
from .model import service_name
from .normalize import _team
from .store import event_services, service_rows

if TYPE_CHECKING:
    from ..services import Services

HEALTH_ANNOTATION = "pltf.dev/health-url"
MAX_FILE_BYTES = 1024 * 1024
GIT_TIMEOUT = 10.0
MAX_CATALOG_PAGE = 500
MAX_CATALOG_PAGES = 20


class RepoFiles:
    """Read-only view of a bare repository's HEAD."""

    _cache: dict[tuple[str, str], dict[Any, Any]] = {}
    _lock = threading.Lock()

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.head = self._git("rev-parse", "--verify", "-q", "HEAD").strip() or None

    def _git(self, *args: str) -> str:
        try:
            done = git(args, git_dir=self.git_dir, timeout=GIT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout[:MAX_FILE_BYTES].decode("utf-8", "replace") if done.returncode == 0 else ""

    def _memo(self) -> dict[Any, Any]:
        key = (str(self.git_dir), self.head or "")
        with self._lock:
            if len(self._cache) > 500:
                self._cache.clear()
            return self._cache.setdefault(key, {})

    def names(self) -> list[str]:
        if self.head is None:
            return []
        memo = self._memo()
        if "names" not in memo:
            memo["names"] = [n for n in self._git("ls-tree", "-r", "--name-only", "HEAD").splitlines() if n]
        return list(memo["names"])

    def read(self, path: str) -> str | None:
        if self.head is None or path not in self.names():
            return None
        memo = self._memo()
        if ("file", path) not in memo:
            memo[("file", path)] = self._git("show", f"HEAD:{path}")
        return str(memo[("file", path)])

    def glob(self, pattern: str) -> list[str]:
        return [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]


@dataclass
class ServiceView:
    name: str
    team: str | None = None
    entity: dict[str, Any] | None = None
    repo: RepoFiles | None = None
    preview_url: str | None = None
    specs: dict[str, Any] = field(default_factory=dict)
    gitops_team: str | None = None

    @property
    def annotations(self) -> dict[str, Any]:
        found = ((self.entity or {}).get("metadata") or {}).get("annotations") or {}
        return found if isinstance(found, dict) else {}

    @property
    def health_url(self) -> str | None:
        url = self.annotations.get(HEALTH_ANNOTATION)
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return url
        if self.preview_url and self.preview_url.startswith(("http://", "https://")):
            return self.preview_url.rstrip("/") + "/healthz"
        return None


def embedded_repositories(services: Services) -> list[tuple[str, str, Path]]:
    return repository_dirs(git_root(services.settings))


def components(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return []
    return [d for d in documents if isinstance(d, dict) and d.get("kind") == "Component"]


def _catalog_entities(services: Services) -> list[dict[str, Any]]:
    """Components from the catalog (`services.catalog`, when the catalog is installed)."""
    catalog = getattr(services, "catalog", None)
    if catalog is None:
        return []
    try:
        query_type = importlib.import_module("actions_server.catalog.base").Query
        found: list[dict[str, Any]] = []
        page = catalog.query(query_type(filters=["kind=component"], limit=MAX_CATALOG_PAGE))
        for _ in range(MAX_CATALOG_PAGES):
            found.extend(e for e in page.get("items") or [] if isinstance(e, dict))
            cursor = (page.get("pageInfo") or {}).get("nextCursor")
            if not cursor:
                break
            page = catalog.query(query_type(cursor=cursor, limit=MAX_CATALOG_PAGE))
        return found
    except Exception as exc:  # noqa: BLE001 - the portal must work without a healthy catalog
        get_logger().warning("portal: the catalog could not list components", error=str(exc)[:300])
        return []


def service_owners(services: Services, names: set[str]) -> dict[str, str | None]:
    """Each named service's owning team (its bare name, lowercase), or None when nobody owns it yet.

    Who decides, first that says: the catalog Component's `spec.owner`, the team of an embedded
    repository of that name (private ones too: ownership is not their content), the team the portal
    recorded for it. Used to authorize `POST /v1/events`, so a catalog that cannot answer is an error,
    not "no owner".
    """
    catalog = getattr(services, "catalog", None)
    query_type = importlib.import_module("actions_server.catalog.base").Query
    repositories: dict[str, str] = {}
    for _, repo_name, repo_dir in embedded_repositories(services):
        team = owner_team(read_metadata(repo_dir))
        if team and repo_name in names:
            repositories.setdefault(repo_name, team)
    rows = service_rows(services.engine)
    owners: dict[str, str | None] = {}
    for name in names:
        owner = None
        if catalog is not None:
            page = catalog.query(query_type(filters=[f"kind=component,metadata.name={name}"], limit=1))
            for entity in page.get("items") or []:
                owner = _team(((entity.get("spec") or {}) if isinstance(entity, dict) else {}).get("owner"))
        owner = owner or _team(repositories.get(name)) or _team(rows.get(name, {}).get("team"))
        owners[name] = owner.lower() if owner else None
    return owners


def _gitops_services(services: Services, gitops: str) -> list[tuple[str, str | None]]:
    """(service, owner) of every `envs/<env>/<service>/` in the GitOps repository, from its Namespace labels."""
    repo_dir = next((d for o, n, d in embedded_repositories(services) if f"{o}/{n}" == gitops), None)
    if repo_dir is None:
        return []
    repo = RepoFiles(repo_dir)
    found: dict[str, str | None] = {}
    for path in repo.glob("envs/*/*/*"):
        name = service_name(path.split("/")[2])
        if name is None:
            continue
        found.setdefault(name, None)
        if found[name] is None and path.endswith((".yaml", ".yml")) and "amespace" in path:
            for doc in _documents(repo.read(path)):
                if doc.get("kind") == "Namespace":
                    found[name] = _team(((doc.get("metadata") or {}).get("labels") or {}).get("pltf.io/owner"))
    return sorted(found.items())


def _documents(text: str | None) -> list[dict[str, Any]]:
    try:
        return [d for d in yaml.safe_load_all(text or "") if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


def directory(services: Services) -> dict[str, ServiceView]:
    found: dict[str, ServiceView] = {}
    for entity in _catalog_entities(services):
        name = service_name((entity.get("metadata") or {}).get("name"))
        if name:
            found[name] = ServiceView(name, entity=entity)
    gitops = getattr(services.settings, "gitops_repository", "platform/gitops")
    for owner, repo_name, repo_dir in embedded_repositories(services):
        if f"{owner}/{repo_name}" == gitops or read_metadata(repo_dir).get("visibility", "public") != "public":
            continue
        repo = RepoFiles(repo_dir)
        paired: list[tuple[dict[str, Any] | None, str | None]] = [
            (e, service_name((e.get("metadata") or {}).get("name"))) for e in components(repo.read("catalog-info.yaml"))
        ] or [(None, service_name(repo_name))]
        for repo_entity, repo_service in paired:
            if repo_service is None:
                continue
            view = found.setdefault(repo_service, ServiceView(repo_service))
            view.repo = view.repo or repo
            view.entity = view.entity or repo_entity
    for spec_service, owner_label in _gitops_services(services, gitops):
        view = found.setdefault(spec_service, ServiceView(spec_service))
        view.gitops_team = view.gitops_team or owner_label
    rows = service_rows(services.engine)
    for named in event_services(services.engine):
        found.setdefault(named, ServiceView(named))
    for view in found.values():
        row = rows.get(view.name, {})
        owner_ref = ((view.entity or {}).get("spec") or {}).get("owner")
        team = _team(owner_ref) or row.get("team") or view.gitops_team
        view.team = str(team) if team else None
        view.preview_url = row.get("preview_url")
        view.specs = row.get("specs") or {}
    return dict(sorted(found.items()))
