"""Forges: where `repo:create` makes repositories. See `base.Forge` for the interface.

- `embedded`: bare repositories served by this server at /git/ (the default);
- `github`, `gitlab`, `gitea`: the providers' REST APIs, with tokens from configuration.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import httpx

from ..config import Settings
from ..errors import FieldError, PltfError
from ..redact import Redactor
from .base import CreatedRepository, Forge, GitAuthor, RepositorySpec
from .embedded import EmbeddedForge
from .gitea import GiteaForge
from .github import GitHubForge
from .gitlab import GitLabForge

__all__ = [
    "PROVIDERS",
    "CreatedRepository",
    "Forge",
    "ForgeRegistry",
    "GitAuthor",
    "RepositorySpec",
    "forge_for",
]

PROVIDERS = ("embedded", "github", "gitlab", "gitea")


def _not_configured(provider: str, variable: str) -> PltfError:
    return PltfError(
        f"the {provider} forge is not configured on this server (set {variable})",
        422,
        "forge_not_configured",
        [FieldError("provider", f"{provider} is not configured")],
    )


def forge_for(
    provider: str, settings: Settings, redactor: Redactor, transport: httpx.BaseTransport | None = None
) -> Forge:
    """A forge for `provider`, from the settings; raises a 422 when it is unknown or lacks a token."""
    timeout = settings.git_timeout_seconds
    if provider == "embedded":
        return EmbeddedForge(settings, redactor)
    if provider == "github":
        if settings.github_token is None:
            raise _not_configured(provider, "PLTF_GITHUB_TOKEN")
        return GitHubForge(settings.github_url, settings.github_token.get_secret_value(), redactor, timeout, transport)
    if provider == "gitlab":
        if settings.gitlab_token is None:
            raise _not_configured(provider, "PLTF_GITLAB_TOKEN")
        api = settings.gitlab_url.rstrip("/") + "/api/v4"
        return GitLabForge(api, settings.gitlab_token.get_secret_value(), redactor, timeout, transport)
    if provider == "gitea":
        if settings.gitea_token is None or settings.gitea_url is None:
            raise _not_configured(provider, "PLTF_GITEA_URL and PLTF_GITEA_TOKEN")
        api = settings.gitea_url.rstrip("/") + "/api/v1"
        return GiteaForge(api, settings.gitea_token.get_secret_value(), redactor, timeout, transport)
    raise PltfError(
        f"unknown forge provider {provider!r}; known: {', '.join(PROVIDERS)}",
        422,
        "invalid_input",
        [FieldError("provider", "unknown provider")],
    )


class ForgeRegistry:
    """The forges of one process, built on first use and shared by runs (their clients are thread-safe)."""

    def __init__(self, settings: Settings, redactor: Redactor, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.redactor = redactor
        self.transport = transport
        self._forges: dict[str, Forge] = {}
        self._lock = threading.Lock()
        redactor.add(
            token.get_secret_value()
            for token in (settings.github_token, settings.gitlab_token, settings.gitea_token)
            if token is not None
        )

    def get(self, provider: str) -> Forge:
        with self._lock:
            forge = self._forges.get(provider)
            if forge is None:
                forge = self._forges[provider] = forge_for(provider, self.settings, self.redactor, self.transport)
            return forge

    def use(self, provider: str, forge: Forge) -> None:
        """Puts a given forge in place of the configured one (tests, in-process fakes)."""
        with self._lock:
            self._forges[provider] = forge

    def provider_for_host(self, host: str) -> str | None:
        """The provider a RepoUrlPicker host means: configured hosts, then the well-known and configured URLs."""
        host = host.lower()
        if host in self.settings.forge_hosts:
            return self.settings.forge_hosts[host]
        public = urlsplit(self.settings.base_url)
        known = {
            (public.hostname or "").lower(): "embedded",
            public.netloc.lower(): "embedded",
            "github.com": "github",
            "gitlab.com": "gitlab",
        }
        github_api = urlsplit(self.settings.github_url).netloc.lower()
        known[github_api.removeprefix("api.")] = "github"
        known[github_api] = "github"
        known[urlsplit(self.settings.gitlab_url).netloc.lower()] = "gitlab"
        if self.settings.gitea_url:
            known[urlsplit(self.settings.gitea_url).netloc.lower()] = "gitea"
        return known.get(host)

    def close(self) -> None:
        with self._lock:
            for forge in self._forges.values():
                forge.close()
            self._forges.clear()
