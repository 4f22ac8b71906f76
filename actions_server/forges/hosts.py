"""Which forge provider serves a URL, how to authenticate to it, and which pull-request generator Argo CD needs.

The one place that knows the providers' hosts. `repo:create` asks it what a
RepoUrlPicker host means, previews ask it which token may read a repository
(sent in git's environment, never in the URL) and which ApplicationSet
generator watches its pull requests, and the forge registry asks it to build a
provider's client and which secrets to redact.

Adding a provider (say Bitbucket): its client module (a `Forge`, see base.py),
a `ForgeHost` entry here, and its name in `PROVIDERS`. docs/architecture.md
walks through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

import httpx
from pydantic import SecretStr

from ..config import Settings
from ..errors import FieldError, PltfError
from ..redact import Redactor
from .embedded import EmbeddedForge
from .gitea import GiteaForge
from .github import GitHubForge
from .gitlab import GitLabForge

if TYPE_CHECKING:
    from .base import Forge

Transport = httpx.BaseTransport | None


@dataclass(frozen=True)
class PullRequests:
    """A repository whose pull requests get previews, as Argo CD's generators name it."""

    url: SplitResult
    owner: str
    repo: str
    token_ref: dict[str, str]
    labels: list[str]


@dataclass(frozen=True)
class ForgeHost:
    provider: str
    # Base URLs from the settings; their hosts are this provider's, and only they receive its token.
    configured_urls: Callable[[Settings], list[str]]
    # Hosts that mean this provider with no configuration (never sent a token unless configured too).
    well_known: tuple[str, ...]
    # The token for its API and for git over HTTPS, and the user name git sends with it.
    token: Callable[[Settings], SecretStr | None]
    git_username: str
    connect: Callable[[Settings, Redactor, Transport], Forge]
    # The ApplicationSet pull-request generator (`spec.generators[].pullRequest`) for one repository.
    pr_generator: Callable[[PullRequests, Settings], dict[str, Any]]


def _not_configured(provider: str, variable: str) -> PltfError:
    return PltfError(
        f"the {provider} forge is not configured on this server (set {variable})",
        422,
        "forge_not_configured",
        [FieldError("provider", f"{provider} is not configured")],
    )


# -- GitHub -----------------------------------------------------------------------


def _github_urls(settings: Settings) -> list[str]:
    # The API host (api.github.com, or a GHE server's) and the web host git clones from.
    api = urlsplit(settings.forges.github_url)
    return [settings.forges.github_url, f"{api.scheme}://{api.netloc.removeprefix('api.')}"]


def _connect_github(settings: Settings, redactor: Redactor, transport: Transport) -> Forge:
    if settings.forges.github_token is None:
        raise _not_configured("github", "PLTF_GITHUB_TOKEN")
    token = settings.forges.github_token.get_secret_value()
    return GitHubForge(settings.forges.github_url, token, redactor, settings.forges.git_timeout_seconds, transport)


def _github_generator(source: PullRequests, settings: Settings) -> dict[str, Any]:
    github: dict[str, Any] = {"owner": source.owner, "repo": source.repo, "tokenRef": source.token_ref}
    if settings.forges.github_url != "https://api.github.com":
        github["api"] = settings.forges.github_url
    if source.labels:
        github["labels"] = source.labels
    return {"github": github}


# -- GitLab -----------------------------------------------------------------------


def _connect_gitlab(settings: Settings, redactor: Redactor, transport: Transport) -> Forge:
    if settings.forges.gitlab_token is None:
        raise _not_configured("gitlab", "PLTF_GITLAB_TOKEN")
    api = settings.forges.gitlab_url.rstrip("/") + "/api/v4"
    return GitLabForge(
        api, settings.forges.gitlab_token.get_secret_value(), redactor, settings.forges.git_timeout_seconds, transport
    )


def _gitlab_generator(source: PullRequests, settings: Settings) -> dict[str, Any]:
    url = source.url
    gitlab: dict[str, Any] = {
        "project": f"{source.owner}/{source.repo}",
        "api": f"{url.scheme}://{url.netloc}/"
        if (url.hostname or "").lower() != "gitlab.com"
        else "https://gitlab.com/",
        "tokenRef": source.token_ref,
        # Only open merge requests; GitLab's generator has no draft flag, so drafts are
        # left out by label: require a label (PLTF_PREVIEW_PR_LABELS) for opt-in previews.
        "pullRequestState": "opened",
    }
    if source.labels:
        gitlab["labels"] = source.labels
    return {"gitlab": gitlab}


# -- Gitea (and Forgejo) ----------------------------------------------------------


def _connect_gitea(settings: Settings, redactor: Redactor, transport: Transport) -> Forge:
    if settings.forges.gitea_token is None or settings.forges.gitea_url is None:
        raise _not_configured("gitea", "PLTF_GITEA_URL and PLTF_GITEA_TOKEN")
    api = settings.forges.gitea_url.rstrip("/") + "/api/v1"
    return GiteaForge(
        api, settings.forges.gitea_token.get_secret_value(), redactor, settings.forges.git_timeout_seconds, transport
    )


def _gitea_generator(source: PullRequests, settings: Settings) -> dict[str, Any]:
    api = settings.forges.gitea_url or f"{source.url.scheme}://{source.url.netloc}"
    return {"gitea": {"owner": source.owner, "repo": source.repo, "api": api, "tokenRef": source.token_ref}}


# -- the providers ----------------------------------------------------------------

EMBEDDED = ForgeHost(
    provider="embedded",
    configured_urls=lambda settings: [settings.server.base_url],
    well_known=(),
    token=lambda settings: None,
    git_username="pltf",
    connect=lambda settings, redactor, transport: EmbeddedForge(settings, redactor),
    # The embedded forge keeps Gitea's layout of pull requests.
    pr_generator=_gitea_generator,
)
GITHUB = ForgeHost(
    provider="github",
    configured_urls=_github_urls,
    well_known=("github.com",),
    token=lambda settings: settings.forges.github_token,
    git_username=GitHubForge.git_username,
    connect=_connect_github,
    pr_generator=_github_generator,
)
GITLAB = ForgeHost(
    provider="gitlab",
    configured_urls=lambda settings: [settings.forges.gitlab_url],
    well_known=("gitlab.com",),
    token=lambda settings: settings.forges.gitlab_token,
    git_username=GitLabForge.git_username,
    connect=_connect_gitlab,
    pr_generator=_gitlab_generator,
)
GITEA = ForgeHost(
    provider="gitea",
    configured_urls=lambda settings: [settings.forges.gitea_url] if settings.forges.gitea_url else [],
    well_known=(),
    token=lambda settings: settings.forges.gitea_token,
    git_username=GiteaForge.git_username,
    connect=_connect_gitea,
    pr_generator=_gitea_generator,
)

# The registration: a provider is known when it is listed here.
PROVIDERS: dict[str, ForgeHost] = {host.provider: host for host in (EMBEDDED, GITHUB, GITLAB, GITEA)}


def provider(name: str) -> ForgeHost:
    """The provider called `name`; a 422 naming the known ones when there is none."""
    found = PROVIDERS.get(name)
    if found is None:
        raise PltfError(
            f"unknown forge provider {name!r}; known: {', '.join(PROVIDERS)}",
            422,
            "invalid_input",
            [FieldError("provider", "unknown provider")],
        )
    return found


def check_settings(settings: Settings) -> None:
    """Refuses, at start-up, settings that name a provider no one registered."""
    if settings.forges.forge not in PROVIDERS:
        raise ValueError(f"PLTF_FORGE: unknown forge provider {settings.forges.forge!r}; known: {', '.join(PROVIDERS)}")
    if settings.previews.preview_pr_generator != "auto" and settings.previews.preview_pr_generator not in PROVIDERS:
        raise ValueError(
            f"PLTF_PREVIEW_PR_GENERATOR: {settings.previews.preview_pr_generator!r} is neither auto nor one of {', '.join(PROVIDERS)}"
        )


def _hosts(url: str) -> set[str]:
    parts = urlsplit(url)
    return {host for host in (parts.netloc.lower(), (parts.hostname or "").lower()) if host}


def provider_for_host(settings: Settings, host: str) -> str | None:
    """The provider a host (`name` or `name:port`) means: PLTF_FORGE_HOSTS, then the configured URLs, then
    the well-known hosts."""
    host = host.lower()
    if host in settings.forges.forge_hosts:
        return settings.forges.forge_hosts[host]
    for forge_host in PROVIDERS.values():
        if any(host in _hosts(url) for url in forge_host.configured_urls(settings)):
            return forge_host.provider
    for forge_host in PROVIDERS.values():
        if host in forge_host.well_known:
            return forge_host.provider
    return None


def provider_for_url(settings: Settings, url: str) -> str | None:
    parts = urlsplit(url)
    for host in (parts.netloc, parts.hostname or ""):
        found = provider_for_host(settings, host) if host else None
        if found is not None:
            return found
    return None


def git_credentials(settings: Settings, url: str) -> tuple[str, str] | None:
    """(user name, token) that reads `url` over HTTPS: only for a host of a provider's configured URL."""
    if not url.startswith(("http://", "https://")):
        return None
    wanted = _hosts(url)
    for forge_host in PROVIDERS.values():
        token = forge_host.token(settings)
        if token is None:
            continue
        if any(wanted & _hosts(base) for base in forge_host.configured_urls(settings)):
            return forge_host.git_username, token.get_secret_value()
    return None


def pr_generator(repo_url: str, settings: Settings) -> dict[str, Any]:
    """The ApplicationSet pull-request generator that watches `repo_url` (PLTF_PREVIEW_PR_GENERATOR, or by host)."""
    url = urlsplit(repo_url)
    owner, _, repo = url.path.strip("/").removesuffix(".git").rpartition("/")
    name = settings.previews.preview_pr_generator
    if name == "auto":
        name = provider_for_url(settings, repo_url) or _named_in_host(url.hostname or "") or GITEA.provider
    source = PullRequests(
        url=url,
        owner=owner,
        repo=repo,
        token_ref={"secretName": settings.previews.preview_scm_secret, "key": "token"},
        labels=list(settings.previews.preview_pr_labels),
    )
    return provider(name).pr_generator(source, settings)


def _named_in_host(hostname: str) -> str | None:
    """A last guess for a host nobody configured: a self-hosted forge is often named after itself
    (gitlab.example.com). Gitea's shape, the most common elsewhere, is the caller's default."""
    labels = hostname.lower().split(".")
    return next((name for name in PROVIDERS if name != EMBEDDED.provider and name in labels), None)
