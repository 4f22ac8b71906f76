"""Forges: where `repo:create` makes repositories. See `base.Forge` for the interface.

- `embedded`: bare repositories served by this server at /git/ (the default);
- `github`, `gitlab`, `gitea`: the providers' REST APIs, with tokens from configuration;
- `hosts`: which provider serves a URL, its credentials and Argo CD generator, and the registration.
"""

from __future__ import annotations

import threading

import httpx

from ..config import Settings
from ..redact import Redactor
from . import hosts
from .base import CreatedRepository, Forge, GitAuthor, RepositorySpec

__all__ = [
    "PROVIDERS",
    "CreatedRepository",
    "Forge",
    "ForgeRegistry",
    "GitAuthor",
    "RepositorySpec",
    "forge_for",
]

PROVIDERS = tuple(hosts.PROVIDERS)


def forge_for(
    provider: str, settings: Settings, redactor: Redactor, transport: httpx.BaseTransport | None = None
) -> Forge:
    """A forge for `provider`, from the settings; raises a 422 when it is unknown or lacks a token."""
    return hosts.provider(provider).connect(settings, redactor, transport)


class ForgeRegistry:
    """The forges of one process, built on first use and shared by runs (their clients are thread-safe)."""

    def __init__(self, settings: Settings, redactor: Redactor, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.redactor = redactor
        self.transport = transport
        self._forges: dict[str, Forge] = {}
        self._lock = threading.Lock()
        hosts.check_settings(settings)

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
        """The provider a RepoUrlPicker host means (see hosts.provider_for_host)."""
        return hosts.provider_for_host(self.settings, host)

    def close(self) -> None:
        with self._lock:
            for forge in self._forges.values():
                forge.close()
            self._forges.clear()
