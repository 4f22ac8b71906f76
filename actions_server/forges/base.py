"""The one interface every forge (git hosting provider) implements.

Like httpx's transports: the `repo:create` action talks to `Forge`, and each
provider is a small class behind it. A forge checks names by its own rules
before any call, creates a repository (never overwriting one), pushes a
directory as the first commit, finishes the settings that need a branch to
exist (default branch, protection), and deletes what it created when a later
step fails:

    forge = forge_for("embedded", settings, redactor)
    spec = RepositorySpec(owner="platform-team", name="users-api", description="Users API")
    errors = forge.validate_name(spec.owner, spec.name)       # [] when the names are fine
    repository = forge.create_repository(spec)                 # PltfError 409 if it exists
    try:
        sha = forge.push(repository, project_dir, "Initial commit", GitAuthor("pltf", "pltf@example.com"))
        forge.finish(repository, spec)
    except Exception:
        forge.delete_repository(repository)
        raise
    print(repository.remote_url, repository.contents_url, repository.raw_url("catalog-info.yaml"))

Credentials never appear in a URL a forge returns, logs or raises: the push
passes them to git per command through the environment (see `gitpush`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from ..errors import FieldError

Visibility = Literal["public", "private", "internal"]

# git's own rules (git check-ref-format --branch), minus the rare characters
# that would need quoting in a URL.
_BRANCH = re.compile(r"^(?![-./])(?!.*\.\.)(?!.*//)(?!.*@\{)(?!.*\.lock$)(?!.*[./]$)[A-Za-z0-9._/-]{1,100}$")
_TOPIC = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")


@dataclass(frozen=True)
class GitAuthor:
    name: str
    email: str


@dataclass(frozen=True)
class RepositorySpec:
    """What to create. `owner` is an org, user or group (GitLab: a group path, maybe nested).

    `team` (a catalog group ref, spelled as `permissions.team_ref` does) is the
    owner team the embedded forge lets push (see `permissions`); other forges
    have permissions of their own and ignore it.
    """

    owner: str
    name: str
    description: str = ""
    visibility: Visibility = "private"
    default_branch: str = "main"
    topics: tuple[str, ...] = ()
    protect_default_branch: bool = True
    team: str | None = None


@dataclass(frozen=True)
class CreatedRepository:
    """A repository that exists; every URL here is safe to log and return (no credentials)."""

    provider: str
    owner: str
    name: str
    default_branch: str
    remote_url: str
    """Clone URL (HTTPS), Backstage's `remoteUrl`."""
    contents_url: str
    """Browsable page of the default branch's tree, Backstage's `repoContentsUrl`."""
    raw_url_base: str
    """`{raw_url_base}/{path}` fetches a file of the default branch."""
    web_url: str
    provider_id: str | None = None
    """The provider's own id (GitLab's project id), for later calls."""
    extra: dict[str, str] = field(default_factory=dict)

    def raw_url(self, path: str) -> str:
        return f"{self.raw_url_base}/{path.lstrip('/')}"


class Forge(ABC):
    """A git hosting provider. Methods block (call them from a worker thread) and raise `PltfError`."""

    provider: ClassVar[str]
    # The name a person would recognise in a message ("GitHub", "the embedded forge").
    title: ClassVar[str]

    @abstractmethod
    def validate_name(self, owner: str, name: str) -> list[FieldError]:
        """The provider's naming rules; the field errors name `owner` and `name`. Makes no call."""

    @abstractmethod
    def planned(self, spec: RepositorySpec) -> CreatedRepository:
        """The repository `create_repository` would make, with its URLs; for dry runs. Makes no call."""

    @abstractmethod
    def create_repository(self, spec: RepositorySpec) -> CreatedRepository:
        """Creates an empty repository. Raises a 409 `PltfError` naming it when it exists already."""

    @abstractmethod
    def push(self, repository: CreatedRepository, source_dir: Path, message: str, author: GitAuthor) -> str:
        """Commits `source_dir` as the first commit of the default branch and pushes it; returns the sha."""

    def finish(self, repository: CreatedRepository, spec: RepositorySpec) -> list[str]:
        """Settings that need the branch to exist (default branch, protection); returns warnings."""
        return []

    @abstractmethod
    def delete_repository(self, repository: CreatedRepository) -> None:
        """Deletes a repository this forge created (cleanup after a failed step)."""

    def close(self) -> None:  # noqa: B027 - most forges hold nothing to release
        """Releases connections."""

    def describe(self, owner: str, name: str) -> str:
        return f"{owner}/{name} on {self.title}"


def check_spec_fields(spec: RepositorySpec) -> list[FieldError]:
    """Rules that hold for every provider: branch names and topics."""
    errors = []
    if not _BRANCH.match(spec.default_branch):
        errors.append(FieldError("defaultBranch", f"{spec.default_branch!r} is not a valid branch name"))
    for n, topic in enumerate(spec.topics):
        if not _TOPIC.match(topic):
            errors.append(
                FieldError(f"topics.{n}", "topics are lowercase letters, digits and hyphens, at most 50 characters")
            )
    return errors


def name_rule(field_name: str, value: str, pattern: re.Pattern[str], rule: str) -> list[FieldError]:
    return [] if pattern.match(value) else [FieldError(field_name, f"{value!r}: {rule}")]
