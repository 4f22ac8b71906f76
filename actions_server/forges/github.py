"""GitHub and GitHub Enterprise, through the REST API v3.

Set `PLTF_GITHUB_TOKEN` (a fine-grained or classic token that may create
repositories) and, for GitHub Enterprise Server, `PLTF_GITHUB_URL=https://HOST/api/v3`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import FieldError, PltfError
from .base import CreatedRepository, RepositorySpec, name_rule
from .rest import RestForge

# GitHub's rules: a login is alphanumeric with single inner hyphens, at most 39
# characters; a repository name is letters, digits, '.', '_' and '-' (GitHub
# would silently turn anything else into '-', so we refuse it instead).
OWNER = re.compile(r"^(?!-)(?!.*--)[A-Za-z0-9-]{1,39}(?<!-)$")
NAME = re.compile(r"^(?!\.{1,2}$)(?!.*\.git$)[A-Za-z0-9._-]{1,100}$")
API_VERSION = "2022-11-28"


def web_base(api_url: str) -> str:
    """https://api.github.com -> https://github.com; https://HOST/api/v3 -> https://HOST."""
    parts = urlsplit(api_url)
    if parts.netloc == "api.github.com":
        return "https://github.com"
    return f"{parts.scheme}://{parts.netloc}"


class GitHubForge(RestForge):
    provider = "github"
    title = "GitHub"
    git_username = "x-access-token"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }

    def validate_name(self, owner: str, name: str) -> list[FieldError]:
        return name_rule(
            "owner", owner, OWNER, "GitHub logins are letters, digits and single inner hyphens, at most 39"
        ) + name_rule("name", name, NAME, "GitHub repository names are letters, digits, '.', '_' and '-', at most 100")

    def _urls(self, spec: RepositorySpec, html_url: str, clone_url: str, data: dict[str, Any]) -> CreatedRepository:
        owner = str((data.get("owner") or {}).get("login") or spec.owner)
        return CreatedRepository(
            provider=self.provider,
            owner=owner,
            name=str(data.get("name") or spec.name),
            default_branch=spec.default_branch,
            remote_url=clone_url,
            contents_url=f"{html_url}/tree/{spec.default_branch}",
            raw_url_base=f"{html_url}/raw/{spec.default_branch}",
            web_url=html_url,
            provider_id=str(data["id"]) if "id" in data else None,
        )

    def planned(self, spec: RepositorySpec) -> CreatedRepository:
        html_url = f"{web_base(self.api_url)}/{spec.owner}/{spec.name}"
        return self._urls(spec, html_url, f"{html_url}.git", {})

    def create_repository(self, spec: RepositorySpec) -> CreatedRepository:
        found = self.owner_or_422(f"/users/{quote(spec.owner)}", spec.owner, "user or organization")
        is_org = found.json().get("type") == "Organization"
        body: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description,
            "private": spec.visibility != "public",
            "auto_init": False,
        }
        if is_org:
            body["visibility"] = spec.visibility
            path = f"/orgs/{quote(spec.owner)}/repos"
        else:
            if spec.visibility == "internal":
                raise PltfError(
                    "internal repositories exist only in GitHub organizations",
                    422,
                    "invalid_input",
                    [FieldError("visibility", "internal needs an organization owner")],
                )
            login = self.token_login()
            if login.lower() != spec.owner.lower():
                raise PltfError(
                    f"the configured GitHub token belongs to {login!r}; it cannot create repositories "
                    f"for the user {spec.owner!r}",
                    422,
                    "invalid_input",
                    [FieldError("owner", "not the token's user nor an organization")],
                )
            path = "/user/repos"
        data = self.create_at(path, body, spec)
        return self._urls(spec, str(data["html_url"]), str(data["clone_url"]), data)

    def finish(self, repository: CreatedRepository, spec: RepositorySpec) -> list[str]:
        repo_path = f"/repos/{quote(repository.owner)}/{quote(repository.name)}"
        if spec.topics:
            self.expect("PUT", f"{repo_path}/topics", "setting topics", (200,), json={"names": list(spec.topics)})
        # An empty repository has no branch to make the default; now it has one.
        self.expect(
            "PATCH", repo_path, "setting the default branch", (200,), json={"default_branch": repository.default_branch}
        )
        if not spec.protect_default_branch:
            return []
        protection = {
            "required_status_checks": None,
            "enforce_admins": False,
            "required_pull_request_reviews": {"required_approving_review_count": 1},
            "restrictions": None,
        }
        branch = f"{repo_path}/branches/{quote(repository.default_branch, safe='')}/protection"
        # Free plans cannot protect private repositories (403); the repository is still good.
        return self.protect("PUT", branch, protection, ok=(200,), warn=(403, 404))

    def delete_repository(self, repository: CreatedRepository) -> None:
        path = f"/repos/{quote(repository.owner)}/{quote(repository.name)}"
        self.expect("DELETE", path, f"deleting {repository.owner}/{repository.name}", (204, 404))
