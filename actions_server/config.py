"""Configuration: every setting comes from a `PLTF_*` environment variable.

The defaults are the embedded ones (SQLite in the data dir, the templates in
`cookiecutters/`, a generated local token), so `pltf serve` needs nothing else.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8787


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLTF_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    data_dir: Path = Path(".pltf")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite in the data dir. postgresql://… lets replicas share state."
    )
    public_url: str | None = Field(None, description="Base of every URL the server returns.")
    api_token: SecretStr | None = Field(None, description="One full-access token, for simple setups and CI.")
    token_file: Path | None = Field(None, description="YAML file of named, hashed tokens and the actions each may run.")
    templates_dir: Path = PROJECT_ROOT / "cookiecutters"
    template_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Git URL prefixes that templates may be cloned from."
    )
    trusted_template_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Git URL prefixes whose templates may run hooks."
    )
    hook_timeout_seconds: float = 60.0
    workspace_dir: Path | None = Field(
        None, description="Shared directory for workspaces; default: stored in the database."
    )
    max_body_bytes: int = 1024 * 1024
    max_value_length: int = 1000
    run_wait_seconds: float = Field(50.0, description="How long POST …/runs waits before answering 202.")
    max_concurrent_runs: int = 8
    heartbeat_seconds: float = 5.0
    stale_run_seconds: float = 30.0
    replica_id: str | None = None
    log_level: str = "info"
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

    @field_validator("template_sources", "trusted_template_sources", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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
