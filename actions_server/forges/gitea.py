"""Gitea (and Forgejo), through the REST API v1.

Set `PLTF_GITEA_URL=https://gitea.example.com` and `PLTF_GITEA_TOKEN` (a token
with the repository and organization write scopes).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ..errors import FieldError, PltfError
from .base import CreatedRepository, RepositorySpec, name_rule
from .rest import RestForge

# Gitea's rules: user and org names are alphanumerics with inner '-', '_' and
# '.'; repository names are alphanumerics, '-', '_' and '.', without the
# reserved names and suffixes.
OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,38}[A-Za-z0-9])?$")
NAME = re.compile(
    r"^(?!\.{1,2}$)(?!-$)(?!(?:assets|api|avatar|user|org|explore|repo|admin)$)(?!.*\.(?:git|wiki|rss|atom)$)[A-Za-z0-9._-]{1,100}$"
)


class GiteaForge(RestForge):
    provider = "gitea"
    title = "Gitea"
    # Gitea takes an access token as the basic-auth password, whatever the user name.
    git_username = "pltf"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"token {token}"}

    def validate_name(self, owner: str, name: str) -> list[FieldError]:
        return name_rule(
            "owner", owner, OWNER, "Gitea owners are letters and digits with inner '-', '_' or '.', at most 40"
        ) + name_rule("name", name, NAME, "Gitea repository names are letters, digits, '-', '_' and '.', not reserved")

    @property
    def web_url_base(self) -> str:
        return self.api_url.removesuffix("/api/v1")

    def _urls(self, spec: RepositorySpec, html_url: str, clone_url: str, data: dict[str, Any]) -> CreatedRepository:
        return CreatedRepository(
            provider=self.provider,
            owner=str((data.get("owner") or {}).get("login") or spec.owner),
            name=str(data.get("name") or spec.name),
            default_branch=spec.default_branch,
            remote_url=clone_url,
            contents_url=f"{html_url}/src/branch/{spec.default_branch}",
            raw_url_base=f"{html_url}/raw/branch/{spec.default_branch}",
            web_url=html_url,
            provider_id=str(data["id"]) if "id" in data else None,
        )

    def planned(self, spec: RepositorySpec) -> CreatedRepository:
        html_url = f"{self.web_url_base}/{spec.owner}/{spec.name}"
        return self._urls(spec, html_url, f"{html_url}.git", {})

    def create_repository(self, spec: RepositorySpec) -> CreatedRepository:
        if spec.visibility == "internal":
            raise PltfError(
                "Gitea repositories are public or private",
                422,
                "invalid_input",
                [FieldError("visibility", "Gitea has no internal visibility")],
            )
        org = self.call("GET", f"/orgs/{quote(spec.owner)}", f"looking up {spec.owner}")
        if org.status_code == 200:
            path = f"/orgs/{quote(spec.owner)}/repos"
        elif org.status_code == 404:
            login = self.token_login()
            if login.lower() != spec.owner.lower():
                raise PltfError(
                    f"Gitea has no organization {spec.owner!r}, and the configured token belongs to {login!r}",
                    422,
                    "invalid_input",
                    [FieldError("owner", "not an organization nor the token's user")],
                )
            path = "/user/repos"
        else:
            raise self.failure(org, f"looking up {spec.owner}")
        body = {
            "name": spec.name,
            "description": spec.description,
            "private": spec.visibility != "public",
            "default_branch": spec.default_branch,
            "auto_init": False,
        }
        data = self.create_at(path, body, spec)
        return self._urls(spec, str(data["html_url"]), str(data["clone_url"]), data)

    def finish(self, repository: CreatedRepository, spec: RepositorySpec) -> list[str]:
        repo_path = f"/repos/{quote(repository.owner)}/{quote(repository.name)}"
        if spec.topics:
            self.expect("PUT", f"{repo_path}/topics", "setting topics", (204,), json={"topics": list(spec.topics)})
        self.expect(
            "PATCH", repo_path, "setting the default branch", (200,), json={"default_branch": repository.default_branch}
        )
        if not spec.protect_default_branch:
            return []
        rule = {"rule_name": repository.default_branch, "branch_name": repository.default_branch, "enable_push": False}
        return self.protect("POST", f"{repo_path}/branch_protections", rule, ok=(201,), warn=(403, 404))

    def delete_repository(self, repository: CreatedRepository) -> None:
        path = f"/repos/{quote(repository.owner)}/{quote(repository.name)}"
        self.expect("DELETE", path, f"deleting {repository.owner}/{repository.name}", (204, 404))
