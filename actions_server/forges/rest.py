"""What the external forges (GitHub, GitLab, Gitea) share: an httpx client, error mapping, the push."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import FieldError, PltfError, conflict
from ..redact import Redactor
from .base import CreatedRepository, Forge, GitAuthor, RepositorySpec
from .gitpush import basic_authorization, commit_and_push

HTTP_TIMEOUT_SECONDS = 30.0
MAX_DETAIL = 300
# Fields of error bodies that are not words for a person.
_NOT_MESSAGES = {"documentation_url", "status", "url", "resource", "code", "field"}


def without_credentials(url: str) -> str:
    """The URL minus any `user:password@`; a provider's clone URL has none, but we never pass one on."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def response_detail(response: httpx.Response) -> str:
    """The provider's own error message, flattened (GitLab nests it by field)."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:MAX_DETAIL]
    parts: list[str] = []

    def collect(value: Any, prefix: str = "") -> None:
        if isinstance(value, str):
            parts.append(f"{prefix}{value}")
        elif isinstance(value, list):
            for item in value:
                collect(item, prefix)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key in _NOT_MESSAGES:
                    continue
                collect(item, prefix if key in ("message", "errors", "error") else f"{prefix}{key} ")

    collect(body)
    return "; ".join(dict.fromkeys(parts))[:MAX_DETAIL]


class RestForge(Forge):
    """A forge reached over HTTPS with a token from configuration."""

    # The HTTP basic user name git pushes with; the token is the password.
    git_username: ClassVar[str]

    def __init__(
        self,
        api_url: str,
        token: str,
        redactor: Redactor,
        git_timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.redactor = redactor
        self.git_timeout = git_timeout
        self._token = token
        redactor.add([token])
        self.client = httpx.Client(
            base_url=self.api_url,
            headers=self.auth_headers(token),
            timeout=HTTP_TIMEOUT_SECONDS,
            transport=transport,
            follow_redirects=False,
        )

    def auth_headers(self, token: str) -> dict[str, str]:
        raise NotImplementedError

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PltfError(
                self.redactor(f"{self.title} could not be reached while {what}: {type(exc).__name__}: {exc}"),
                502,
                "forge_unreachable",
            ) from None

    def expect(self, method: str, path: str, what: str, ok: tuple[int, ...], **kwargs: Any) -> httpx.Response:
        """`call`, then a PltfError unless the status is one of `ok`."""
        response = self.call(method, path, what, **kwargs)
        if response.status_code not in ok:
            raise self.failure(response, what)
        return response

    def failure(self, response: httpx.Response, what: str) -> PltfError:
        detail = self.redactor(response_detail(response))
        status = response.status_code
        message = f"{self.title} answered {status} while {what}" + (f": {detail}" if detail else "")
        if status == 401:
            return PltfError(message + " (check the configured token)", 502, "forge_unauthorized")
        if status == 403:
            return PltfError(message + " (the token lacks a permission)", 502, "forge_forbidden")
        if status == 429:
            return PltfError(message, 503, "forge_rate_limited")
        return PltfError(message, 502, "forge_error")

    def owner_or_422(self, path: str, owner: str, kind: str) -> httpx.Response:
        """GETs the owner's namespace; a 422 naming the owner when the provider has none."""
        return self.existing_or_422(path, name=owner, described=f"{kind} {owner!r}", field="owner")

    def existing_or_422(self, path: str, *, name: str, described: str, field: str) -> httpx.Response:
        """GETs what the caller named (an owner, a repository); a 422 on input `field` when the provider has none
        ("{title} has no {described}"), since that is the caller's mistake, not the forge's failure."""
        found = self.call("GET", path, f"looking up {name}")
        if found.status_code == 404:
            raise PltfError(
                f"{self.title} has no {described}",
                422,
                "invalid_input",
                [FieldError(field, f"not found on {self.title}")],
            )
        if found.status_code != 200:
            raise self.failure(found, f"looking up {name}")
        return found

    def token_login(self) -> str:
        """The login of the configured token's user (GET /user, on GitHub and Gitea)."""
        return str(self.expect("GET", "/user", "finding the token's user", (200,)).json().get("login", ""))

    def create_at(self, path: str, body: dict[str, Any], spec: RepositorySpec) -> dict[str, Any]:
        """POSTs a new repository and returns the provider's JSON for it; a 409 when it exists already."""
        created = self.call("POST", path, f"creating {spec.owner}/{spec.name}", json=body)
        if already_exists(created):
            raise conflict(f"repository {spec.owner}/{spec.name} already exists on {self.title}; it was not changed")
        if created.status_code != 201:
            raise self.failure(created, f"creating {spec.owner}/{spec.name}")
        return dict(created.json())

    def protect(
        self, method: str, path: str, body: dict[str, Any], ok: tuple[int, ...], warn: tuple[int, ...]
    ) -> list[str]:
        """Protects the default branch; the statuses in `warn` (a plan or permission that does not allow it)
        leave a good repository and become a warning."""
        protected = self.call(method, path, "protecting the default branch", json=body)
        if protected.status_code in ok:
            return []
        if protected.status_code in warn:
            return [str(self.failure(protected, "protecting the default branch"))]
        raise self.failure(protected, "protecting the default branch")

    def git_authorization(self) -> str:
        """The Authorization header git sends to this forge's remotes (the token as the password)."""
        return basic_authorization(self.git_username, self._token)

    def push(self, repository: CreatedRepository, source_dir: Path, message: str, author: GitAuthor) -> str:
        return commit_and_push(
            source_dir,
            without_credentials(repository.remote_url),
            repository.default_branch,
            message,
            author,
            self.redactor,
            self.git_timeout,
            authorization=self.git_authorization(),
        )

    def close(self) -> None:
        self.client.close()


def already_exists(response: httpx.Response) -> bool:
    """GitHub says 422 "name already exists", GitLab 400 "has already been taken", Gitea 409."""
    if response.status_code == 409:
        return True
    if response.status_code not in (400, 422):
        return False
    detail = response_detail(response).lower()
    return "already exists" in detail or "already been taken" in detail
