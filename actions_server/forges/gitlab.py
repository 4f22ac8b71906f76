"""GitLab (gitlab.com or self-hosted), through the REST API v4.

Set `PLTF_GITLAB_TOKEN` (a token with the `api` scope) and, when self-hosted,
`PLTF_GITLAB_URL=https://gitlab.example.com`. The owner is a group or user
namespace path, nested groups included (`platform/services`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ..errors import FieldError
from .base import CreatedRepository, RepositorySpec
from .rest import RestForge

# GitLab's path rule: letters, digits, '_', '-' and '.'; not starting with '-'
# or '.', not ending in '.git' or '.atom'.
SEGMENT = re.compile(r"^(?![-.])(?!.*\.(?:git|atom)$)[A-Za-z0-9_.-]{1,255}$")
SEGMENT_RULE = "GitLab paths are letters, digits, '_', '-' and '.', not starting with '-' nor ending in .git or .atom"
MAINTAINER_ACCESS = 40
DEVELOPER_ACCESS = 30


class GitLabForge(RestForge):
    provider = "gitlab"
    title = "GitLab"
    git_username = "oauth2"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"PRIVATE-TOKEN": token}

    def validate_name(self, owner: str, name: str) -> list[FieldError]:
        errors = []
        if not owner or not all(SEGMENT.match(part) for part in owner.split("/")):
            errors.append(FieldError("owner", f"{owner!r}: {SEGMENT_RULE} (groups separated by '/')"))
        if not SEGMENT.match(name):
            errors.append(FieldError("name", f"{name!r}: {SEGMENT_RULE}"))
        return errors

    @property
    def web_url_base(self) -> str:
        return self.api_url.removesuffix("/api/v4")

    def _urls(self, spec: RepositorySpec, web_url: str, clone_url: str, project_id: str | None) -> CreatedRepository:
        return CreatedRepository(
            provider=self.provider,
            owner=spec.owner,
            name=spec.name,
            default_branch=spec.default_branch,
            remote_url=clone_url,
            contents_url=f"{web_url}/-/tree/{spec.default_branch}",
            raw_url_base=f"{web_url}/-/raw/{spec.default_branch}",
            web_url=web_url,
            provider_id=project_id,
        )

    def planned(self, spec: RepositorySpec) -> CreatedRepository:
        web_url = f"{self.web_url_base}/{spec.owner}/{spec.name}"
        return self._urls(spec, web_url, f"{web_url}.git", None)

    def create_repository(self, spec: RepositorySpec) -> CreatedRepository:
        found = self.owner_or_422(f"/namespaces/{quote(spec.owner, safe='')}", spec.owner, "group or user namespace")
        body: dict[str, Any] = {
            "name": spec.name,
            "path": spec.name,
            "namespace_id": found.json()["id"],
            "description": spec.description,
            "visibility": spec.visibility,
            "default_branch": spec.default_branch,
            "initialize_with_readme": False,
        }
        if spec.topics:
            body["topics"] = list(spec.topics)
        data = self.create_at("/projects", body, spec)
        return self._urls(spec, str(data["web_url"]), str(data["http_url_to_repo"]), str(data["id"]))

    def _project(self, repository: CreatedRepository) -> str:
        if repository.provider_id is not None:
            return repository.provider_id
        return quote(f"{repository.owner}/{repository.name}", safe="")

    def finish(self, repository: CreatedRepository, spec: RepositorySpec) -> list[str]:
        project = f"/projects/{self._project(repository)}"
        self.expect(
            "PUT", project, "setting the default branch", (200,), json={"default_branch": repository.default_branch}
        )
        if not spec.protect_default_branch:
            return []
        rule = {
            "name": repository.default_branch,
            "push_access_level": MAINTAINER_ACCESS,
            "merge_access_level": DEVELOPER_ACCESS,
            # Explicit, so the default branch's history stays unrewritable whatever GitLab's default becomes.
            "allow_force_push": False,
        }
        # GitLab protects the default branch of a new project on the first push,
        # in which case this answers 409 "already exists": that is what we wanted.
        return self.protect("POST", f"{project}/protected_branches", rule, ok=(201, 409), warn=(403,))

    def delete_repository(self, repository: CreatedRepository) -> None:
        self.expect(
            "DELETE",
            f"/projects/{self._project(repository)}",
            f"deleting {repository.owner}/{repository.name}",
            (202, 204, 404),
        )
