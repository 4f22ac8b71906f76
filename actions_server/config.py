"""Configuration: every setting comes from a `PLTF_*` environment variable.

The defaults are the embedded ones (SQLite in the data dir, the templates in
`cookiecutters/`, a generated local token), so `pltf serve` needs nothing else.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .urls import AllowList

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8787


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLTF_", extra="ignore", env_ignore_empty=True)

    host: str = Field("127.0.0.1", description="Address `pltf serve` listens on.")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port `pltf serve` listens on.")
    data_dir: Path = Field(Path(".pltf"), description="Where the embedded defaults keep their data.")
    database_url: str | None = Field(
        None,
        description="Database URL; default: SQLite in the data dir. `postgresql://user@host:5432/db` (with "
        "`pip install 'pltf[postgres]'`) lets several replicas share runs, idempotency keys and workspaces.",
    )
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
    templates_dir: Path = Field(
        PROJECT_ROOT / "cookiecutters", description="The local templates, all trusted; default `./cookiecutters`."
    )
    template_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated git URL prefixes templates may be cloned from."
    )
    trusted_template_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated git URL prefixes whose templates may also run hooks."
    )
    hook_timeout_seconds: float = Field(60.0, description="A template hook is killed after this.")
    workspace_dir: Path | None = Field(
        None, description="Shared directory for workspace archives; default: stored in the database."
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
    max_value_length: int = Field(1000, description="Longest template value, unless the template says otherwise.")
    run_wait_seconds: float = Field(
        50.0, description="How long `POST …/runs` waits before answering 202 (fits Backstage's 60 s HTTP step)."
    )
    max_concurrent_runs: int = Field(
        16,
        description="Runs executing at once per replica; the rest queue. A run mostly waits on git, the disk and "
        "the database, so this is above the CPU count.",
    )
    render_processes: int | None = Field(
        None,
        description="Worker processes that take renders when several run at once (local templates without "
        "hooks); default: one fewer than the machine's CPUs; 0 renders in the server's threads only.",
    )
    heartbeat_seconds: float = Field(5.0, description="How often a replica marks its runs alive.")
    stale_run_seconds: float = Field(30.0, description="A run whose replica has not beaten for this long is failed.")
    replica_id: str | None = Field(
        None,
        description="Stable name of this replica, so a restart recognises its own interrupted runs; "
        "default `<hostname>:<port>`.",
    )
    log_level: str = Field(
        "info", description="JSON log level (the in-process CLI uses `error` and shows the run log instead)."
    )
    # Sandbox of template hooks, preview installs and preview services (actions_server/sandbox.py)
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
    # Forges (repo:create)
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
    forge_hosts: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="RepoUrlPicker hosts to providers, as host=provider,host=provider; "
        "github.com, gitlab.com and the hosts of the URLs above are known already.",
    )
    protect_default_branch: bool = Field(True, description="Protect the default branch of repositories we create.")

    @field_validator("forge_hosts", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = (part.split("=", 1) for part in value.split(",") if part.strip())
            return {host.strip().lower(): provider.strip() for host, provider in pairs}
        return value

    # Service specs (service:provision, pltf plan/apply) and the shared GitOps repository
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
    # Previews (preview:create, preview:destroy; see actions_server/previews/)
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
    preview_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Repository URL prefixes previews may clone and run, besides the embedded forge's /git/.",
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
    preview_pr_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="(kubernetes) only pull requests with these labels get a preview."
    )
    preview_scm_secret: str = Field(
        "pltf-scm-token", description="(kubernetes) Secret the PR generator reads its token from."
    )

    @field_validator("preview_sources", "preview_pr_labels", mode="before")
    @classmethod
    def _split_preview_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("template_sources", "trusted_template_sources", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("template_sources", "trusted_template_sources", "preview_sources")
    @classmethod
    def _comparable_prefixes(cls, value: list[str]) -> list[str]:
        AllowList(value)  # a prefix that cannot be compared safely fails at start-up, not on the first request
        return value

    # Catalog
    catalog_file_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [PROJECT_ROOT / "catalog-info", PROJECT_ROOT / "backstage-templates"],
        description="Directories whose files may be registered as file: locations (never the data dir).",
    )
    catalog_read_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["github.com", "raw.githubusercontent.com", "gitlab.com"],
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
    backstage_actions: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["service:*", "cookiecutter:*"],
        description="Comma-separated action patterns a Backstage plugin token may run.",
    )

    @field_validator("backstage_actions", mode="before")
    @classmethod
    def _split_backstage_actions(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("catalog_file_roots", "catalog_read_hosts", mode="before")
    @classmethod
    def _split_catalog_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # Portal (health, DORA, scorecards, cost; see actions_server/portal/ and docs/dora.md)
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

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        # A wildcard bind address is not somewhere a client can connect to.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Users write the libpq form; SQLAlchemy needs the driver spelled out.
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{(self.data_dir / 'pltf.db').resolve()}"

    @property
    def generated_token_path(self) -> Path:
        return self.data_dir / "api-token"

    @property
    def replica(self) -> str:
        # Stable across restarts of the same server, so a restart can tell which
        # runs it left behind; other replicas' runs are judged by their heartbeat.
        return self.replica_id or f"{socket.gethostname()}:{self.port}"


def settings_reference() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the README's configuration table is generated from it."""

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
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        text = shown(default) if default is not None else ""
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append((f"PLTF_{name.upper()}", f"`{text}`" if text else "", meaning))
    return rows
