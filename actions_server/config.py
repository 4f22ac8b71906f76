"""Configuration: every setting comes from a `PLTF_*` environment variable.

The settings are grouped in sections (`settings.server.port`, `settings.forges.github_token`), each a
`BaseSettings` reading its own variables; the variable names stay flat (`PLTF_PORT`). `Settings(port=…)`
takes the flat names too and routes each into its section. The whole object is frozen once built: a
changed copy comes from `settings.replace(port=…)`, so no part sees settings change under it.

The defaults are the embedded ones (SQLite in the data dir, the templates in
`cookiecutters/`, a generated local token), so `pltf serve` needs nothing else.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .urls import AllowList

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8787

T = TypeVar("T")


def _parts(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _split_commas(value: object) -> object:
    return _parts(value) if isinstance(value, str) else value


# The one comma-separated type: `PLTF_X=a, b,,c` is ("a", "b", "c"); NoDecode keeps pydantic-settings from
# reading the variable as JSON first.
CommaSeparated = Annotated[tuple[T, ...], NoDecode, BeforeValidator(_split_commas)]


def _split_pairs(value: object) -> object:
    if isinstance(value, str):
        pairs = (part.split("=", 1) for part in _parts(value))
        return {host.strip().lower(): provider.strip() for host, provider in pairs}
    return value


# `host=provider,host=provider`: the comma-separated type's items, each split at its `=`.
CommaSeparatedPairs = Annotated[dict[str, str], NoDecode, BeforeValidator(_split_pairs)]


def _allowed_prefixes(value: tuple[str, ...]) -> tuple[str, ...]:
    AllowList(value)  # a prefix that cannot be compared safely fails at start-up, not on the first request
    return value


class Section(BaseSettings):
    """A group of settings, each read from `PLTF_<NAME>`; frozen like the whole."""

    model_config = SettingsConfigDict(env_prefix="PLTF_", extra="ignore", env_ignore_empty=True, frozen=True)
    title: ClassVar[str]

    def _replace(self, changes: dict[str, Any]) -> Self:
        values = {name: getattr(self, name) for name in type(self).model_fields}
        changed = type(self)(**(values | changes))  # given values win over the environment
        # What was set stays told apart from the defaults (the CLI's log level depends on it).
        object.__setattr__(changed, "__pydantic_fields_set__", self.model_fields_set | changes.keys())
        return changed


class ServerSettings(Section):
    """The HTTP server, its identity and its limits on clients."""

    title = "Server"

    host: str = Field("127.0.0.1", description="Address `pltf serve` listens on.")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port `pltf serve` listens on.")
    public_url: str | None = Field(
        None,
        description="Base of every URL the server returns (clone URLs, pages, previews); default "
        "`http://127.0.0.1:<port>`. Set it to the address users reach behind a proxy or ingress.",
    )
    api_token: SecretStr | None = Field(None, description="One full-access token, for simple setups and CI.")
    url: str | None = Field(
        None, description="The action server the CLI talks to (sending PLTF_API_TOKEN); unset: it works in-process."
    )
    token_file: Path | None = Field(
        None, description="YAML file of named tokens (hashed) and the actions each may run; see Tokens."
    )
    replica_id: str | None = Field(
        None,
        description="Stable name of this replica, so a restart recognises its own interrupted runs; "
        "default `<hostname>:<port>`.",
    )
    log_level: str = Field(
        "info", description="JSON log level (the in-process CLI uses `error` and shows the run log instead)."
    )
    max_body_bytes: int = Field(1024 * 1024, description="Larger request bodies get 413.")
    header_timeout_seconds: float = Field(
        30.0, gt=0, description="A client whose request headers are not complete by then gets 408 and is disconnected."
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, description="A client that sends no part of its request body for this long gets 408."
    )
    min_body_bytes_per_second: int = Field(
        10 * 1024,
        gt=0,
        description="A request body (but git's) must arrive within the body timeout plus the largest body "
        "at this rate, or get 408: a trickle of bytes is cut off too.",
    )

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        # A wildcard bind address is not somewhere a client can connect to.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def replica(self) -> str:
        # Stable across restarts of the same server, so a restart can tell which
        # runs it left behind; other replicas' runs are judged by their heartbeat.
        return self.replica_id or f"{socket.gethostname()}:{self.port}"


class StorageSettings(Section):
    """Where pltf keeps its data: the data dir, the database, workspace archives."""

    title = "Storage"

    data_dir: Path = Field(
        Path(".pltf"), validate_default=True, description="Where the embedded defaults keep their data."
    )
    database_url: str | None = Field(
        None,
        description="Database URL; default: SQLite in the data dir. `postgresql://user@host:5432/db` (with "
        "`pip install 'pltf[postgres]'`) lets several replicas share runs, idempotency keys and workspaces.",
    )
    workspace_dir: Path | None = Field(
        None, description="Shared directory for workspace archives; default: stored in the database."
    )

    @field_validator("data_dir", "workspace_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # cookiecutter changes the working directory while rendering, so every path we keep must be absolute.
        return None if value is None else value.resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Users write the libpq form; SQLAlchemy needs the driver spelled out.
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{self.data_dir / 'pltf.db'}"

    @property
    def generated_token_path(self) -> Path:
        return self.data_dir / "api-token"


MEMORY_SCRATCH = Path("/dev/shm")  # noqa: S108 - runs take private 0700 directories in it (mkdtemp)
MEMORY_SCRATCH_MIN_FREE = 2 * 1024**3


def _roomy_memory_file_system(path: Path, min_free: int) -> bool:
    """`path` is a writable tmpfs mount that allows executables, with `min_free` bytes free (a container's
    64 MiB /dev/shm is not), in a process without a cgroup memory limit (where tmpfs pages would count
    against the limit, and a large checkout could get the server killed)."""
    try:
        mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
        stats = os.statvfs(path)
    except OSError:
        return False
    options = next((fields[3].split(",") for fields in mounts if fields[1:3] == [str(path), "tmpfs"]), None)
    return (
        options is not None
        and "noexec" not in options  # template migrations run scripts from the checkout
        and os.access(path, os.W_OK)
        and stats.f_bavail * stats.f_frsize >= min_free
        and not _memory_limited()
    )


def _memory_limited() -> bool:
    """Whether this process's cgroup (v2, or v1's memory controller) caps its memory."""
    candidates = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                candidates.append(f"/sys/fs/cgroup{path.rstrip('/')}/memory.max")
            elif "memory" in controllers.split(","):
                candidates.append(f"/sys/fs/cgroup/memory{path.rstrip('/')}/memory.limit_in_bytes")
    except (OSError, ValueError):
        pass
    # In a container with its own cgroup namespace, its cgroup is the root of the mount.
    candidates += ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    for limit_file in candidates:
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        # v1 writes "no limit" as a page-rounded 2**63 - 1.
        return limit != "max" and int(limit) < 1 << 62
    return False


class RunSettings(Section):
    """The run engine: how long a request waits, how many runs execute, how replicas watch each other."""

    title = "Runs"

    run_wait_seconds: float = Field(
        50.0, description="How long `POST …/runs` waits before answering 202 (fits Backstage's 60 s HTTP step)."
    )
    max_concurrent_runs: int = Field(
        16,
        ge=1,
        description="Runs executing at once per replica; the rest queue. A run mostly waits on git, the disk and "
        "the database, so this is above the CPU count.",
    )
    max_working_runs: int | None = Field(
        None,
        ge=1,
        description="Of those, how many render, push or register at once (a preview getting ready does not "
        "count); default: twice the CPUs with the embedded forge, else PLTF_MAX_CONCURRENT_RUNS. More threads "
        "working at once only share the interpreter lock.",
    )
    render_processes: int | None = Field(
        None,
        ge=0,
        description="Worker processes that take renders when several run at once (local templates without "
        "hooks); default: one fewer than the machine's CPUs; 0 renders in the server's threads only.",
    )
    heartbeat_seconds: float = Field(5.0, description="How often a replica marks its runs alive.")
    stale_run_seconds: float = Field(30.0, description="A run whose replica has not beaten for this long is failed.")
    scratch_dir: Path | None = Field(
        None,
        description="Where a run renders and checks out (removed when it ends). Default: the system's temp "
        "directory (`TMPDIR`); with `TMPDIR` unset and no cgroup memory limit, /dev/shm when it is a tmpfs with "
        "2 GiB free. On disk, each Create makes and removes about a hundred files, which on some file systems "
        "costs more CPU than the render itself.",
    )

    @field_validator("scratch_dir")
    @classmethod
    def _absolute_scratch(cls, value: Path | None) -> Path | None:
        return None if value is None else value.resolve()

    def working_runs(self, forge: str) -> int:
        """PLTF_MAX_WORKING_RUNS, or its default for `forge`: with the embedded forge a run's steps work the
        CPU and the disk; with a remote one they mostly wait on its API, and turns would only hold them up."""
        if self.max_working_runs is not None:
            return self.max_working_runs
        return 2 * (os.cpu_count() or 1) if forge == "embedded" else self.max_concurrent_runs

    @property
    def scratch_root(self) -> Path | None:
        """Where runs' scratch directories go; None: the system's temp directory."""
        if self.scratch_dir is not None:
            return self.scratch_dir
        if os.environ.get("TMPDIR"):
            return None  # the operator chose where temporary files go
        return MEMORY_SCRATCH if _roomy_memory_file_system(MEMORY_SCRATCH, MEMORY_SCRATCH_MIN_FREE) else None


class TemplateSettings(Section):
    """The templates: where they come from, which may run hooks, how their values are bounded."""

    title = "Templates"

    templates_dir: Path = Field(
        PROJECT_ROOT / "cookiecutters",
        validate_default=True,
        description="The local templates, all trusted; default `./cookiecutters`.",
    )
    template_sources: CommaSeparated[str] = Field(
        (), description="Comma-separated git URL prefixes templates may be cloned from."
    )
    trusted_template_sources: CommaSeparated[str] = Field(
        (), description="Comma-separated git URL prefixes whose templates may also run hooks."
    )
    hook_timeout_seconds: float = Field(60.0, description="A template hook is killed after this.")
    max_value_length: int = Field(1000, description="Longest template value, unless the template says otherwise.")

    @field_validator("templates_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # cookiecutter changes the working directory while rendering, so every path we keep must be absolute.
        return value.resolve()

    _comparable_prefixes = field_validator("template_sources", "trusted_template_sources")(_allowed_prefixes)


class IsolationSettings(Section):
    """The sandbox of template hooks, preview installs and preview services (actions_server/sandbox.py)."""

    title = "Sandbox"

    sandbox: Literal["auto", "bwrap", "unshare", "off"] = Field(
        "auto",
        description="Isolation of code pltf did not write: auto (bwrap, else unshare), bwrap, unshare, or off "
        "(UNSAFE: hooks and previews see the host's files). With none available, hooks and previews are refused.",
    )
    sandbox_uid: int = Field(
        65534, ge=1, description="When the server runs as root, sandboxed code runs as this uid and gid (nobody)."
    )
    sandbox_memory_mb: int = Field(4096, ge=64, description="Address space of each sandboxed process (RLIMIT_AS).")
    sandbox_cpu_seconds: int = Field(
        600, ge=1, description="CPU time of each hook or dependency install process (previews end with their TTL)."
    )
    sandbox_max_processes: int = Field(
        1024, ge=8, description="Processes and threads of the sandbox uid, all sandboxes together (RLIMIT_NPROC)."
    )
    sandbox_max_file_mb: int = Field(2048, ge=1, description="Largest file sandboxed code may write (RLIMIT_FSIZE).")
    sandbox_max_open_files: int = Field(4096, ge=16, description="Open files per sandboxed process (RLIMIT_NOFILE).")


class ForgeSettings(Section):
    """The forges repo:create pushes to: the embedded one, GitHub, GitLab, Gitea."""

    title = "Forges"

    # Provider names are checked against forges/hosts.py's registry when the forges are built.
    forge: str = Field(
        "embedded", description="Provider used when repo:create names none (and no repoUrl host maps to one)."
    )
    git_dir: Path | None = Field(
        None,
        description="Bare repositories of the embedded forge; default <data_dir>/git. "
        "Several replicas must share it (a shared volume), or each serves its own repositories.",
    )
    git_public_reads: bool = Field(
        True, description="Clone, raw files and browse pages of public embedded repositories need no token."
    )
    git_timeout_seconds: float = Field(120.0, description="Bound on each git command a push runs.")
    github_url: str = Field("https://api.github.com", description="GitHub REST v3 base; GHE: https://HOST/api/v3.")
    github_token: SecretStr | None = None
    gitlab_url: str = Field("https://gitlab.com", description="GitLab base URL (the API is under /api/v4).")
    gitlab_token: SecretStr | None = None
    gitea_url: str | None = Field(None, description="Gitea base URL (the API is under /api/v1).")
    gitea_token: SecretStr | None = None
    forge_hosts: CommaSeparatedPairs = Field(
        default_factory=dict,
        description="RepoUrlPicker hosts to providers, as host=provider,host=provider; "
        "github.com, gitlab.com and the hosts of the URLs above are known already.",
    )
    protect_default_branch: bool = Field(True, description="Protect the default branch of repositories we create.")


class GitOpsSettings(Section):
    """Service specs (service:provision, pltf plan/apply) and the shared GitOps repository."""

    title = "GitOps and service specs"

    gitops_url: str | None = Field(
        None,
        description="Remote of the GitOps repository (HTTPS URL without credentials, or a path); "
        "default: the embedded forge's PLTF_GITOPS_REPOSITORY, created on first use.",
    )
    gitops_repository: str = Field("platform/gitops", description="owner/name of the embedded GitOps repository.")
    gitops_branch: str = Field("main", description="Branch Argo CD follows.")
    gitops_username: str = Field("x-access-token", description="User name sent with PLTF_GITOPS_TOKEN.")
    gitops_token: SecretStr | None = Field(
        None, description="Token for PLTF_GITOPS_URL; passed to git in the environment only."
    )
    spec_policy_file: Path | None = Field(
        None,
        description="The org's policy file for service specs; it overrides and extends "
        "actions_server/specs/policies/default.yaml (rules by id, settings, team limits).",
    )


class PreviewSettings(Section):
    """Previews (preview:create, preview:destroy; see actions_server/previews/)."""

    title = "Previews"

    preview_provider: Literal["local", "kubernetes"] = Field(
        "local", description="local: the service runs on this host; kubernetes: manifests in a GitOps repo."
    )
    preview_domain: str = Field(
        "preview.localhost",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Previews answer at http://<service>[-pr-<n>].<domain>:<port>/ (*.localhost needs no DNS).",
    )
    preview_dir: Path | None = Field(
        None, description="Checkouts, environments and caches; default <data_dir>/previews."
    )
    preview_sources: CommaSeparated[str] = Field(
        (), description="Repository URL prefixes previews may clone and run, besides the embedded forge's /git/."
    )
    preview_database_url: SecretStr | None = Field(
        None,
        description="A PostgreSQL server (admin URL: a role that may create databases and roles) where previews of "
        'services that ask for a database ([tool.pltf.preview] database = "postgres") each get an empty database '
        "and a login role of their own.",
    )
    preview_ttl_seconds: int = Field(4 * 3600, ge=60, description="TTL of a preview when the request names none.")
    preview_max_ttl_seconds: int = Field(7 * 24 * 3600, ge=60, description="Longest TTL a request may ask for.")
    preview_max_active: int = Field(10, ge=1, description="Concurrent previews; past it preview:create answers 429.")
    preview_ready_timeout_seconds: float = Field(
        120.0, gt=0, description="A preview whose /readyz has not answered 200 by then is failed and stopped."
    )
    preview_reap_seconds: float = Field(5.0, gt=0, description="How often the reaper checks TTLs and processes.")
    preview_installer: Literal["auto", "uv", "pip"] = Field("auto", description="auto: uv when installed, else pip.")
    preview_install_timeout_seconds: float = Field(600.0, gt=0)
    preview_kubeconfig: Path | None = Field(
        None, description="(kubernetes) kubeconfig: readiness from the Application, namespaces deleted on destroy."
    )
    preview_kube_context: str | None = None
    preview_argocd_namespace: str = "argocd"
    preview_argocd_project: str = "default"
    preview_ingress_namespace: str = Field("ingress-nginx", description="(kubernetes) allowed in by the NetworkPolicy.")
    preview_quota_cpu: str = "2"
    preview_quota_memory: str = "2Gi"
    preview_pr_generator: str = Field(
        "auto", description="(kubernetes) ApplicationSet pull-request generator; auto picks by the repository's host."
    )
    preview_pr_labels: CommaSeparated[str] = Field(
        (), description="(kubernetes) only pull requests with these labels get a preview."
    )
    preview_scm_secret: str = Field(
        "pltf-scm-token", description="(kubernetes) Secret the PR generator reads its token from."
    )

    _comparable_prefixes = field_validator("preview_sources")(_allowed_prefixes)


class CatalogSettings(Section):
    """The software catalog: the embedded one or a Backstage backend."""

    title = "Catalog"

    catalog_file_roots: CommaSeparated[Path] = Field(
        (PROJECT_ROOT / "catalog-info", PROJECT_ROOT / "backstage-templates"),
        description="Directories whose files may be registered as file: locations (never the data dir).",
    )
    catalog_read_hosts: CommaSeparated[str] = Field(
        ("github.com", "raw.githubusercontent.com", "gitlab.com"),
        description="Hosts the catalog may read catalog files from over http(s), besides this server's forge.",
    )
    register_platform_entities: bool = Field(
        True,
        description="At start-up, register catalog-info/ (the platform's team, systems, API and templates) "
        "unless it is registered already, so the golden path's references resolve.",
    )
    catalog_public_reads: bool = Field(True, description="The read API and the /catalog pages need no token.")
    catalog_read_timeout_seconds: float = 10.0
    catalog_max_file_bytes: int = 5 * 1024 * 1024
    catalog_argocd_url: str | None = Field(None, description="Argo CD UI base, for argocd/app-name links.")
    backstage_url: str | None = Field(None, description="A Backstage backend; when set, it is the catalog.")
    backstage_token: SecretStr | None = Field(None, description="Static token for Backstage's externalAccess.")
    backstage_auth_url: str | None = Field(
        None,
        description="Backstage whose plugin tokens pltf accepts (its actions registry calls); default "
        "`PLTF_BACKSTAGE_URL`. Keys are read from its JWKS endpoints.",
    )
    backstage_actions: CommaSeparated[str] = Field(
        ("service:*", "cookiecutter:*"), description="Comma-separated action patterns a Backstage plugin token may run."
    )


class PortalSettings(Section):
    """The portal: health, DORA, scorecards, cost (see actions_server/portal/ and docs/dora.md)."""

    title = "Portal"

    github_webhook_secret: SecretStr | None = Field(
        None, description="Secret of GitHub webhooks (X-Hub-Signature-256); unset refuses them."
    )
    gitlab_webhook_token: SecretStr | None = Field(
        None, description="X-Gitlab-Token of GitLab webhooks; unset refuses them."
    )
    argocd_webhook_token: SecretStr | None = Field(
        None, description="Bearer token of Argo CD notifications; unset: any valid API token."
    )
    alertmanager_webhook_token: SecretStr | None = Field(
        None, description="Bearer token of Alertmanager's webhook; unset: any valid API token."
    )
    deploy_workflow_pattern: str = Field(
        "deploy", description="A completed GitHub workflow_run whose name matches (regex, any case) is a deployment."
    )
    dora_levels: str | None = Field(None, description="Version of the DORA levels (portal/data/dora_levels.yaml).")
    probe_interval_seconds: float = Field(60.0, ge=0, description="How often health URLs are probed; 0 stops probing.")
    prometheus_url: str | None = Field(None, description="Uptime and SLOs from this Prometheus instead of the probes.")
    opencost_url: str | None = Field(None, description="Cost from OpenCost's allocation API instead of requests.")
    price_sheet: str | None = Field(None, description="YAML price sheet; default portal/data/prices.yaml.")
    scorecard_file: str | None = Field(None, description="YAML scorecard rules; default portal/data/scorecard.yaml.")
    portal_refresh_seconds: float = Field(
        30.0,
        ge=0,
        description="A portal view ending now is recomputed after this even if no event, probe or push came.",
    )
    portal_cache_seconds: int = Field(5, ge=0, description="Cache-Control max-age of the portal's pages and JSON.")


class Settings(BaseModel):
    """Every setting, by section; built once at start-up and frozen."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    server: ServerSettings
    storage: StorageSettings
    runs: RunSettings
    templates: TemplateSettings
    isolation: IsolationSettings
    forges: ForgeSettings
    gitops: GitOpsSettings
    previews: PreviewSettings
    catalog: CatalogSettings
    portal: PortalSettings

    def __init__(self, **values: Any) -> None:
        """Sections, or the flat names (`Settings(port=8080, forge="github")`); the environment fills the rest."""
        super().__init__(**values)

    @model_validator(mode="before")
    @classmethod
    def _sections_from_flat_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section_name, section_type in SECTIONS.items():
            flat = {name: data.pop(name) for name in section_type.model_fields if name in data}
            given = data.get(section_name)
            if isinstance(given, section_type):
                data[section_name] = given._replace(flat) if flat else given
            else:
                # A section not given reads the environment; names not given fall back to it too.
                data[section_name] = section_type(**(dict(given or {}) | flat))
        return data  # what is left is no setting's name and is ignored, as the environment's other variables

    def sections(self) -> Iterator[Section]:
        for name in SECTIONS:
            yield getattr(self, name)

    def replace(self, **changes: Any) -> Settings:
        """A copy with these settings (flat names: `replace(port=8080)`) changed, validated like the original."""
        unknown = sorted(changes.keys() - SECTION_OF.keys())
        if unknown:
            raise TypeError(f"no such setting: {', '.join(unknown)}")
        return Settings(**{name: getattr(self, name) for name in SECTIONS}, **changes)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (`PLTF_<NAME>` without the prefix), in the sections' order."""
        return {name: getattr(section, name) for section in self.sections() for name in type(section).model_fields}

    def secret_values(self) -> list[str]:
        """The value of every `SecretStr` setting that is set: the redactor learns them all at start-up."""
        return [value.get_secret_value() for value in self.flat().values() if isinstance(value, SecretStr)]


# Root field name -> its section's type; the order is the README's.
SECTIONS: dict[str, type[Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
}


def _section_of() -> dict[str, str]:
    # Flat names route to one place only: one variable cannot feed two sections, nor shadow a section.
    owner: dict[str, str] = {}
    for section_name, section_type in SECTIONS.items():
        for name in section_type.model_fields:
            if name in owner or name in SECTIONS:
                raise TypeError(f"setting {name!r} of {section_name} is also {owner.get(name, 'a section')}")
            owner[name] = section_name
    return owner


# Flat setting name (a variable without PLTF_) -> the root field of its section.
SECTION_OF = _section_of()


def settings_reference() -> list[tuple[str, str, str, str]]:
    """(section, variable, default, meaning) for every setting: the README's configuration table is generated from it."""

    def shown(value: object) -> str:
        # Paths inside the checkout are shown relative to it, so the table is the same in every clone.
        if isinstance(value, Path):
            return str(value.relative_to(PROJECT_ROOT) if value.is_relative_to(PROJECT_ROOT) else value)
        if isinstance(value, list | tuple):
            return ",".join(shown(item) for item in value)
        if isinstance(value, dict):
            return ",".join(f"{key}={shown(item)}" for key, item in value.items())
        return str(value)

    rows = []
    for section_type in SECTIONS.values():
        for name, field in section_type.model_fields.items():
            default = field.get_default(call_default_factory=True)
            text = shown(default) if default is not None else ""
            meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
            rows.append((section_type.title, f"PLTF_{name.upper()}", f"`{text}`" if text else "", meaning))
    return rows
