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

from ..forges.embedded import git_root, read_metadata, repository_dir, repository_dirs
from ..forges.gitpush import git
from ..forges.permissions import owner_team
from ..logs import get_logger
from .model import service_name
from .normalize import _team
from .store import event_services, service_rows

if TYPE_CHECKING:
    from .parts import PortalParts

HEALTH_ANNOTATION = "pltf.dev/health-url"
MAX_FILE_BYTES = 1024 * 1024
GIT_TIMEOUT = 10.0
MAX_CATALOG_PAGE = 500
MAX_CATALOG_PAGES = 20


# libyaml when PyYAML was built with it: ten times faster on the charts and specs of hundreds of services.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What `git rev-parse HEAD` reads. Git replaces each of them by renaming a new
# file into place, so any change shows in its inode, mtime or size.
HEAD_INPUTS = ("HEAD", "packed-refs", "reftable/tables.list")


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


class RepoFiles:
    """Read-only view of a bare repository's HEAD."""

    _cache: dict[tuple[str, str], dict[Any, Any]] = {}
    _heads: dict[str, tuple[Any, str | None]] = {}
    _lock = threading.Lock()

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.head = self._resolve_head()

    def _refs_state(self) -> Any:
        try:
            head = (self.git_dir / "HEAD").read_text(errors="replace")
        except OSError:
            return None
        branch = head[len("ref: ") :].strip() if head.startswith("ref: ") else None
        named = [_stat_key(self.git_dir / branch)] if branch else []
        return head, *named, *(_stat_key(self.git_dir / part) for part in HEAD_INPUTS)

    def _resolve_head(self) -> str | None:
        """HEAD's commit; a `git rev-parse` only when the refs changed since the last one (a subprocess per
        repository per page view was most of the portal's time with hundreds of services)."""
        state = self._refs_state()
        key = str(self.git_dir)
        with self._lock:
            known = self._heads.get(key)
        if state is not None and known is not None and known[0] == state:
            return known[1]
        head = self._git("rev-parse", "--verify", "-q", "HEAD").strip() or None
        with self._lock:
            if len(self._heads) > 5000:
                self._heads.clear()
            self._heads[key] = (state, head)
        return head

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

    def documents(self, path: str) -> list[Any] | None:
        """The YAML documents of a file at HEAD, parsed once per commit; None when there is no such file.

        Raises yaml.YAMLError when it is not YAML. The result is shared between callers: read it, never change it.
        """
        text = self.read(path)
        if text is None:
            return None
        memo = self._memo()
        if ("yaml", path) not in memo:
            try:
                memo[("yaml", path)] = list(yaml.load_all(text, Loader=YAML_LOADER))
            except yaml.YAMLError as exc:
                memo[("yaml", path)] = exc
        found = memo[("yaml", path)]
        if isinstance(found, yaml.YAMLError):
            raise found
        return list(found)

    def dicts(self, path: str) -> list[dict[str, Any]]:
        """The mapping documents of a YAML file at HEAD; none when it is missing or not YAML."""
        try:
            return [d for d in self.documents(path) or [] if isinstance(d, dict)]
        except yaml.YAMLError:
            return []

    def yaml(self, path: str) -> Any:
        """The single YAML document of a file at HEAD (None when empty), as `yaml.safe_load` reads it.

        Raises FileNotFoundError when there is no such file, yaml.YAMLError when it is not one YAML document.
        """
        found = self.documents(path)
        if found is None:
            raise FileNotFoundError(path)
        if len(found) > 1:
            raise yaml.YAMLError(f"{path} holds {len(found)} documents, not one")
        return found[0] if found else None


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


def embedded_repositories(services: PortalParts) -> list[tuple[str, str, Path]]:
    return repository_dirs(git_root(services.settings))


def _catalog_entities(services: PortalParts) -> list[dict[str, Any]]:
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


def service_owners(services: PortalParts, names: set[str]) -> dict[str, str | None]:
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


def gitops_repo(services: PortalParts) -> RepoFiles | None:
    """The embedded GitOps repository (PLTF_GITOPS_REPOSITORY), when there is one."""
    owner, _, name = services.settings.gitops.gitops_repository.partition("/")
    found = repository_dir(git_root(services.settings), owner, name)
    return RepoFiles(found) if found is not None and found.is_dir() else None


def _gitops_services(services: PortalParts) -> list[tuple[str, str | None]]:
    """(service, owner) of every `envs/<env>/<service>/` in the GitOps repository, from its Namespace labels."""
    repo = gitops_repo(services)
    if repo is None:
        return []
    found: dict[str, str | None] = {}
    for path in repo.glob("envs/*/*/*"):
        name = service_name(path.split("/")[2])
        if name is None:
            continue
        found.setdefault(name, None)
        if found[name] is None and path.endswith((".yaml", ".yml")) and "amespace" in path:
            for doc in repo.dicts(path):
                if doc.get("kind") == "Namespace":
                    found[name] = _team(((doc.get("metadata") or {}).get("labels") or {}).get("pltf.io/owner"))
    return sorted(found.items())


def directory(services: PortalParts) -> dict[str, ServiceView]:
    found: dict[str, ServiceView] = {}
    for entity in _catalog_entities(services):
        name = service_name((entity.get("metadata") or {}).get("name"))
        if name:
            found[name] = ServiceView(name, entity=entity)
    gitops = services.settings.gitops.gitops_repository
    for owner, repo_name, repo_dir in embedded_repositories(services):
        if f"{owner}/{repo_name}" == gitops or read_metadata(repo_dir).get("visibility", "public") != "public":
            continue
        repo = RepoFiles(repo_dir)
        paired: list[tuple[dict[str, Any] | None, str | None]] = [
            (e, service_name((e.get("metadata") or {}).get("name")))
            for e in repo.dicts("catalog-info.yaml")
            if e.get("kind") == "Component"
        ] or [(None, service_name(repo_name))]
        for repo_entity, repo_service in paired:
            if repo_service is None:
                continue
            view = found.setdefault(repo_service, ServiceView(repo_service))
            view.repo = view.repo or repo
            view.entity = view.entity or repo_entity
    for spec_service, owner_label in _gitops_services(services):
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
