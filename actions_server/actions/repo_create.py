"""`repo:create`: a rendered workspace becomes a repository with a first commit.

Called as a step of a composite action:

    out = ctx.run_step("publish", "repo:create", {"workspaceId": ws, "owner": "platform-team", "name": "users-api"})
    out["remoteUrl"], out["repoContentsUrl"], out["commitHash"], out["rawUrlBase"] + "/catalog-info.yaml"

Ownership (embedded forge): the repository belongs to a team, a catalog group
ref: the calling token's team, or for an admin token (every action, no team)
the `team` input, if given. That team's tokens and admin tokens may push to it
and, when it is private, read it (see `forges.permissions`). A repository made
by a token without a team, and no `team`, belongs to the admins alone.

Safety: names are checked by the provider's rules before any call (422, and
no run starts); an existing repository is a 409 that names it and is never
touched; a failure after the repository was created deletes it, and the log
says so (or says it could not, and what to delete by hand).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..action import Action, Example, RunCancelled, RunContext
from ..config import Settings
from ..errors import FieldError, PltfError, invalid_input
from ..events import EventBus
from ..forges import PROVIDERS, CreatedRepository, Forge, ForgeRegistry, GitAuthor, RepositorySpec
from ..forges.base import check_spec_fields
from ..forges.permissions import is_gitops_repository, namespace_refusal, team_ref
from ..names import ENTITY_REF
from ..workspaces import WorkspaceStore

DEFAULT_AUTHOR = GitAuthor("pltf", "pltf@localhost")


class Author(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^<>\n\r]+$")
    email: str = Field(min_length=3, max_length=200, pattern=r"^[^<>\s@]+@[^<>\s@]+$")


class RepoCreateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspaceId: str = Field(
        min_length=1, max_length=64, description="A workspace made by cookiecutter:render (its workspaceId output)."
    )
    repoUrl: str | None = Field(
        None,
        max_length=500,
        description="Backstage RepoUrlPicker form: host?owner=o&repo=r. Or give provider, owner and name.",
        examples=["github.com?owner=platform-team&repo=users-api"],
    )
    provider: str | None = Field(
        None,
        description=f"{', '.join(PROVIDERS)}; default: from repoUrl's host, else PLTF_FORGE.",
        json_schema_extra={"enum": list(PROVIDERS)},
    )
    owner: str | None = Field(None, max_length=255, description="Org, user or group (GitLab: group/subgroup).")
    name: str | None = Field(None, max_length=100, description="Repository name.")
    description: str = Field("", max_length=350)
    visibility: Literal["public", "private", "internal"] | None = Field(
        None,
        description="Default: public on the embedded forge (so a catalog can read it), private elsewhere. "
        "Embedded private and internal repositories need a token to read.",
    )
    defaultBranch: str = Field("main", max_length=100)
    topics: list[str] = Field(default_factory=list, max_length=20)
    commitMessage: str = Field("Initial commit", min_length=1, max_length=2000)
    author: Author | None = Field(None, description="Commit author; default pltf <pltf@localhost>.")
    protectDefaultBranch: bool | None = Field(
        None,
        description="Protect the default branch: no force-push, no deletion (on the embedded forge: for anyone); "
        "default PLTF_PROTECT_DEFAULT_BRANCH.",
    )
    team: str | None = Field(
        None,
        max_length=253,
        description="Embedded forge: the owner team (catalog group ref, e.g. group:default/team-a), whose tokens "
        "may push. Default: the calling token's team. Only an admin token may name another team.",
        examples=["group:default/platform-team"],
    )

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, provider: str | None) -> str | None:
        if provider is not None and provider not in PROVIDERS:
            raise ValueError(f"must be one of {', '.join(PROVIDERS)}")
        return provider

    @field_validator("team")
    @classmethod
    def _team_is_entity_ref(cls, team: str | None) -> str | None:
        if team is not None and not ENTITY_REF.match(team):
            raise ValueError("must be a catalog group ref such as group:default/platform-team")
        return team

    @model_validator(mode="after")
    def _one_target(self) -> RepoCreateInput:
        if self.repoUrl is not None and (self.owner is not None or self.name is not None):
            raise ValueError("give either repoUrl, or owner and name, not both")
        if self.repoUrl is None and (self.owner is None or self.name is None):
            raise ValueError("give repoUrl (host?owner=o&repo=r), or owner and name")
        return self


class RepoCreateOutput(BaseModel):
    remoteUrl: str = Field(description="Clone URL (no credentials).")
    repoContentsUrl: str = Field(description="Browsable page of the default branch's files.")
    commitHash: str | None = Field(None, description="The first commit; absent on a dry run.")
    rawUrlBase: str = Field(description="{rawUrlBase}/{path} fetches a file, e.g. catalog-info.yaml.")
    webUrl: str
    provider: str
    owner: str
    name: str
    defaultBranch: str
    visibility: str
    team: str | None = Field(None, description="The owner team (embedded forge); absent: admins only.")
    warnings: list[str] = Field(default_factory=list)
    dryRun: bool = False
    files: int | None = Field(None, description="On a dry run, how many files would be committed.")


class Target(BaseModel):
    provider: str
    owner: str
    name: str
    owner_field: str
    name_field: str


def resolve_target(params: RepoCreateInput, forges: ForgeRegistry, settings: Settings) -> Target:
    """Where the repository goes, from repoUrl or the explicit fields; 422 with field errors if unclear."""
    if params.repoUrl is None:
        assert params.owner is not None and params.name is not None  # the model's own check
        return Target(
            provider=params.provider or settings.forges.forge,
            owner=params.owner,
            name=params.name,
            owner_field="owner",
            name_field="name",
        )
    host, _, query = params.repoUrl.partition("?")
    values = parse_qs(query, keep_blank_values=True)
    owner, name = values.get("owner", [""])[0], values.get("repo", [""])[0]
    errors = []
    if not host:
        errors.append(FieldError("input.repoUrl", "needs a host: host?owner=o&repo=r"))
    if not owner:
        errors.append(FieldError("input.repoUrl", "needs owner=: host?owner=o&repo=r"))
    if not name:
        errors.append(FieldError("input.repoUrl", "needs repo=: host?owner=o&repo=r"))
    found = params.provider or forges.provider_for_host(host)
    if host and found is None:
        errors.append(
            FieldError("input.repoUrl", f"no forge is configured for the host {host!r} (see PLTF_FORGE_HOSTS)")
        )
    if errors:
        raise invalid_input(f"repoUrl {params.repoUrl!r} is not usable", errors)
    assert found is not None
    return Target(provider=found, owner=owner, name=name, owner_field="repoUrl", name_field="repoUrl")


def _spec(params: RepoCreateInput, target: Target, settings: Settings) -> RepositorySpec:
    default_visibility: Literal["public", "private"] = "public" if target.provider == "embedded" else "private"
    protect = params.protectDefaultBranch
    return RepositorySpec(
        owner=target.owner,
        name=target.name,
        description=params.description,
        visibility=params.visibility or default_visibility,
        default_branch=params.defaultBranch,
        topics=tuple(params.topics),
        protect_default_branch=settings.forges.protect_default_branch if protect is None else protect,
    )


def _prepare(params: RepoCreateInput, forges: ForgeRegistry, settings: Settings) -> tuple[Forge, RepositorySpec]:
    target = resolve_target(params, forges, settings)
    if target.provider not in PROVIDERS:
        raise invalid_input(f"unknown provider {target.provider!r}", [FieldError("input.provider", "unknown")])
    try:
        forge = forges.get(target.provider)
    except PltfError as exc:
        exc.fields = [FieldError(f"input.{f.field}", f.message) for f in exc.fields]
        raise
    spec = _spec(params, target, settings)
    renamed = {"owner": target.owner_field, "name": target.name_field}
    errors = [
        FieldError(f"input.{renamed.get(e.field, e.field)}", e.message)
        for e in forge.validate_name(spec.owner, spec.name) + check_spec_fields(spec)
    ]
    if errors:
        raise invalid_input(f"{spec.owner}/{spec.name} cannot be created on {forge.title}", errors)
    if target.provider == "embedded" and is_gitops_repository(spec.owner, spec.name, settings):
        # Made by pltf on its first apply: a repository created here first would hand Argo CD its content.
        raise PltfError(
            f"{spec.owner}/{spec.name} is the GitOps repository: only pltf creates and writes it",
            403,
            "forbidden",
            [FieldError(f"input.{target.name_field}", "the GitOps repository's name")],
        )
    return forge, spec


def planned_repository(target: dict[str, Any], forges: ForgeRegistry, settings: Settings) -> CreatedRepository:
    """Where `repo:create` with these inputs would put the repository, creating nothing: a template
    rendered before the repository exists can then link to it."""
    forge, spec = _prepare(RepoCreateInput.model_validate({"workspaceId": "planned", **target}), forges, settings)
    return forge.planned(spec)


def check_repo_create(
    params: RepoCreateInput, forges: ForgeRegistry, settings: Settings, workspaces: WorkspaceStore
) -> None:
    """Names and workspace, before a run starts. Never whether the repository exists: a replay of a
    finished request must reach the run engine, which answers with the first result."""
    _prepare(params, forges, settings)
    try:
        workspaces.info(params.workspaceId)
    except PltfError:
        raise invalid_input(
            f"no workspace {params.workspaceId!r}", [FieldError("input.workspaceId", "no such workspace")]
        ) from None


def owner_team(ctx: RunContext, params: RepoCreateInput) -> str | None:
    """The team the repository will belong to; 403 when the caller names a team it may not give it to."""
    caller = ctx.caller
    if params.team is None:
        return team_ref(caller.team) if caller.team else None
    if caller.is_admin or (caller.team is not None and team_ref(caller.team) == team_ref(params.team)):
        return team_ref(params.team)
    raise PltfError(
        f"only an admin token may create a repository for another team than its own ({caller.team or 'none'})",
        403,
        "forbidden",
        [FieldError("input.team", "not this token's team")],
    )


def _output(repository: CreatedRepository, spec: RepositorySpec, **extra: object) -> RepoCreateOutput:
    return RepoCreateOutput.model_validate(
        {
            "remoteUrl": repository.remote_url,
            "repoContentsUrl": repository.contents_url,
            "rawUrlBase": repository.raw_url_base,
            "webUrl": repository.web_url,
            "provider": repository.provider,
            "owner": repository.owner,
            "name": repository.name,
            "defaultBranch": repository.default_branch,
            "visibility": spec.visibility,
            "team": spec.team if repository.provider == "embedded" else None,
            **extra,
        }
    )


def _clean_up(ctx: RunContext, forge: Forge, repository: CreatedRepository, where: str, cause: BaseException) -> None:
    """Deletes the repository a later step failed in, and leaves a trace either way."""
    # A cancelled run still gets its cleanup logged: lift the cancel while we write.
    was_cancelled = ctx.cancelled.is_set() or isinstance(cause, RunCancelled)
    ctx.cancelled.clear()
    try:
        reason = "the run was cancelled" if isinstance(cause, RunCancelled) else str(cause)
        ctx.logger.error(f"failed after creating {where}: {reason}; deleting the repository")
        try:
            forge.delete_repository(repository)
        except Exception as exc:  # noqa: BLE001 - the first failure is what the user must see
            ctx.logger.error(
                f"could not delete {where} ({exc}); it is left without a commit: delete it by hand before retrying",
                remoteUrl=repository.remote_url,
            )
            if isinstance(cause, PltfError):
                cause.message += f" (and {where} could not be deleted; delete it before retrying)"
        else:
            ctx.logger.info(f"deleted {where}; retrying the request is safe")
            if isinstance(cause, PltfError):
                cause.message += f" ({where} was deleted again)"
    finally:
        if was_cancelled:
            ctx.cancelled.set()


EXAMPLE_WORKSPACE = "${{ steps['cookiecutter:render'].output.workspaceId }}"


def _publish_creation(events: EventBus, owner: str, name: str, branch: str, sha: str) -> None:
    """The new repository and its first commit, as platform events (the portal's lead time starts at that commit)."""
    from datetime import UTC, datetime

    events.publish("repo.created", {"name": name, "owner": owner, "deliveryId": f"repo:{owner}/{name}"})
    now = datetime.now(UTC).isoformat()
    events.publish(
        "forge.push",
        {
            "name": name,
            "owner": owner,
            "ref": f"refs/heads/{branch}",
            "after": sha,
            "commits": [{"sha": sha, "timestamp": now}],
            "deliveryId": f"push:{owner}/{name}:{branch}:{sha}",
        },
    )


def create_repo_create_action(
    *, forges: ForgeRegistry, workspaces: WorkspaceStore, events: EventBus, settings: Settings
) -> Action[RepoCreateInput, RepoCreateOutput]:
    def handler(ctx: RunContext, params: RepoCreateInput) -> RepoCreateOutput:
        forge, spec = _prepare(params, forges, settings)
        spec = replace(spec, team=owner_team(ctx, params))
        if forge.provider == "embedded":
            refusal = namespace_refusal(ctx.caller, spec.owner)
            if refusal is not None:
                field = "repoUrl" if params.repoUrl is not None else "owner"
                raise PltfError(refusal, 403, "forbidden", [FieldError(f"input.{field}", refusal)])
        where = forge.describe(spec.owner, spec.name)
        source_root = ctx.workspace / "source"
        source_root.mkdir(parents=True, exist_ok=True)
        project = workspaces.checkout(params.workspaceId, source_root, ctx.run_id, ctx.caller)
        files = sum(1 for path in project.rglob("*") if path.is_file())
        if ctx.dry_run:
            ctx.logger.info(
                f"dry run: would create {where} ({spec.visibility}) and push {files} files; nothing created"
            )
            return _output(forge.planned(spec), spec, dryRun=True, files=files)

        ctx.logger.info(f"creating {where} ({spec.visibility})")
        repository = forge.create_repository(spec)
        ctx.logger.info(f"created {where}", remoteUrl=repository.remote_url)
        try:
            ctx.logger.info(f"pushing {files} files to {repository.default_branch}")
            author = GitAuthor(params.author.name, params.author.email) if params.author else DEFAULT_AUTHOR
            sha = forge.push(repository, project, params.commitMessage, author)
            ctx.logger.info(f"pushed commit {sha[:12]} to {repository.default_branch}", commitHash=sha)
            warnings = forge.finish(repository, spec)
            for warning in warnings:
                ctx.logger.warning(warning)
        except BaseException as exc:
            _clean_up(ctx, forge, repository, where, exc)
            raise
        ctx.logger.info(f"repository ready: {repository.contents_url}")
        _publish_creation(events, spec.owner, spec.name, repository.default_branch, sha)
        return _output(repository, spec, commitHash=sha, warnings=warnings)

    return Action(
        id="repo:create",
        description=(
            "Creates a repository (embedded forge, GitHub, GitLab or Gitea) from a rendered workspace and pushes "
            "the first commit. Outputs remoteUrl, repoContentsUrl and commitHash like Backstage's publish:* actions."
        ),
        handler=handler,
        check=lambda params: check_repo_create(params, forges, settings, workspaces),
        examples=[
            Example(
                "Publish a rendered workspace to the embedded forge",
                {
                    "workspaceId": EXAMPLE_WORKSPACE,
                    "owner": "platform-team",
                    "name": "users-api",
                    "description": "Users API",
                    "topics": ["python", "golden-path"],
                },
            ),
            Example(
                "Check where a RepoUrlPicker value would go, creating nothing",
                {
                    "workspaceId": EXAMPLE_WORKSPACE,
                    "repoUrl": "127.0.0.1?owner=platform-team&repo=orders-api",
                    "provider": "embedded",
                    "commitMessage": "Scaffolded by pltf",
                    "author": {"name": "Platform Team", "email": "platform@example.com"},
                },
                dry_run=True,
            ),
        ],
    )
