"""Who may read and who may push which repository of the embedded forge.

One set of rules for git over HTTP, raw files, browse pages and the catalog
(which reads our repositories in-process, so it must ask the same question):

- **Admin** is a token with every action (`*`) and no team: `PLTF_API_TOKEN`,
  the generated local token, or such a token-file entry.
- Every repository has an **owner team** (`team` in its `pltf.json`), set by
  `repo:create` to its caller's team (an admin may name one). A repository
  without a team (made before teams existed, or by an admin naming none)
  belongs to the admins alone.
- **Reading**: public repositories are open while `PLTF_GIT_PUBLIC_READS` is
  true, else need any valid token; internal ones need any valid token (as on
  GitHub: visible to everyone signed in); private ones need an admin token or
  a token of the owner team.
- **Pushing** needs a token that may run `repo:create` and is admin or of the
  owner team. The GitOps repository (`PLTF_GITOPS_REPOSITORY` when
  `PLTF_GITOPS_URL` is unset) takes no push over HTTP at all, from anyone:
  pltf writes it itself, through the filesystem (see `gitops.py`), after its
  spec guardrails.
- **Owner paths** (`<owner>/` in clone URLs): a team's token creates repositories only under its
  own team's name (`group:default/team-a` → `team-a/…`, any case), so no team makes a repository
  that reads as another's. Admins create under any owner path; a token with no team under none.
- A protected default branch refuses force-pushes and deletion from everyone;
  git enforces that with pltf's pre-receive hook (see `git_http.PRE_RECEIVE`).
"""

from __future__ import annotations

from typing import Any

from ..auth import Caller
from ..catalog.model import RefError, parse_ref
from ..config import Settings
from ..names import owner_slug
from .embedded import read_metadata, repository_at

PUSH_PERMISSION = "repo:create"


def team_ref(team: str) -> str:
    """`team-a`, `Group:default/Team-A` → `group:default/team-a`: one spelling to compare and store."""
    try:
        return str(parse_ref(team.strip(), "group"))
    except RefError:
        return team.strip().lower()


def owner_team(metadata: dict[str, Any]) -> str | None:
    team = metadata.get("team")
    return team_ref(team) if isinstance(team, str) and team else None


def in_owner_team(caller: Caller, metadata: dict[str, Any]) -> bool:
    team = owner_team(metadata)
    return caller.is_admin or (team is not None and caller.team is not None and team_ref(caller.team) == team)


def may_read(caller: Caller | None, metadata: dict[str, Any], settings: Settings) -> bool:
    visibility = metadata.get("visibility", "public")
    if visibility == "public" and settings.forges.git_public_reads:
        return True
    if caller is None:
        return False
    return visibility in ("public", "internal") or in_owner_team(caller, metadata)


def is_gitops_repository(owner: str, name: str, settings: Settings) -> bool:
    return settings.gitops.gitops_url is None and settings.gitops.gitops_repository == f"{owner}/{name}"


def namespace_refusal(caller: Caller, owner: str) -> str | None:
    """Why `caller` may not create a repository under the owner path `owner`, or None when it may."""
    if caller.is_admin:
        return None
    if caller.team is None:
        return "a token without a team may not create repositories on this server's forge"
    own = owner_slug(team_ref(caller.team))
    if owner.lower() != own.lower():
        return f"a token of team {team_ref(caller.team)} creates repositories under {own}/ only, not {owner}/"
    return None


def push_refusal(caller: Caller, owner: str, name: str, metadata: dict[str, Any], settings: Settings) -> str | None:
    """Why `caller` may not push to the repository, or None when it may."""
    if is_gitops_repository(owner, name, settings):
        return (
            f"{owner}/{name} is the GitOps repository: only pltf writes it "
            "(pltf apply, service:provision, previews), so that every change passes the spec guardrails"
        )
    if not caller.may_run(PUSH_PERMISSION):
        return f"this token may not push (it may not run {PUSH_PERMISSION})"
    if not in_owner_team(caller, metadata):
        team = owner_team(metadata)
        owners = f"team {team}" if team else "the admins (it has no owner team)"
        return f"{owner}/{name} belongs to {owners}; only its team's tokens and admin tokens may push"
    return None


def may_read_url(caller: Caller, url: str, settings: Settings) -> bool:
    """False when `url` is a clone URL of this server's forge for a repository `caller` may not read.

    For the actions that read our repositories from disk (previews), where no HTTP check stands between.
    """
    path = repository_at(settings, url)
    if path is None or not path.is_dir():
        return True  # not ours, or nothing to protect; the caller's own lookup reports what is missing
    return may_read(caller, read_metadata(path), settings)
