"""`template:update`: brings a repository made from a template to the template's new version, as a change
request that keeps the service's own edits.

It renders the version the repository recorded in `.cruft.json` with the recorded values (base), the new
version with the updated values (theirs), and merges base→theirs into the default branch (ours) with git's
three-way merge (see `updates/merge.py`). The result goes to a branch `pltf/update-<version>` pushed
without force, and a change request; asking again for the same version returns that change request.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ..action import Action, Example, RunContext
from ..config import Settings
from ..errors import FieldError, PltfError, invalid_input
from ..events import EventBus
from ..forges import ForgeRegistry
from ..forges.base import GitAuthor
from ..forges.change_requests import find_change_request, open_change_request, remote_repository
from ..forges.changes import create_change, open_change_for
from ..forges.embedded import git_root, read_metadata, repository_at, repository_dir
from ..forges.gitpush import git, git_environment
from ..forges.hosts import provider_for_url
from ..forges.permissions import push_refusal
from ..forges.rest import RestForge
from ..redact import Redactor
from ..sandbox import Sandbox
from ..templates.catalog import Template, TemplateCatalog
from ..templates.render import build_context, render
from ..updates.history import (
    CRUFT_FILE,
    LOCAL_PREFIX,
    TemplateHistory,
    read_cruft,
    recorded_values,
    template_at,
    write_cruft,
)
from ..updates.merge import GitRepo, Migration, three_way
from ..updates.migrations import pending, run_steps

AUTHOR = GitAuthor("pltf", "pltf@localhost")


class UpdateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(
        min_length=3, max_length=500, description="owner/name on the embedded forge, or its clone URL"
    )
    toRef: str | None = Field(
        None, max_length=200, description="The template version to update to (a commit); default: the latest"
    )
    values: dict[str, Any] = Field(
        default_factory=dict, description="Answers to change or to new questions; the others are kept"
    )
    dryRun: bool = Field(False, description="Merge and report, but push nothing and open no change request")


class UpdateOutput(BaseModel):
    status: Literal["up-to-date", "clean", "conflicts"]
    repository: str
    fromVersion: str
    toVersion: str
    branch: str | None = None
    changeRequestUrl: str | None = None
    conflicts: list[str] = Field(default_factory=list)
    filesChanged: list[str] = Field(default_factory=list)


def _repository(settings: Settings, reference: str) -> tuple[str, str, Path]:
    if "://" in reference:
        found = repository_at(settings, reference)
        owner, name = (found.parent.name, found.name.removesuffix(".git")) if found is not None else ("", "")
    else:
        owner, _, name = reference.partition("/")
        found = repository_dir(git_root(settings), owner, name) if name else None
    if found is None or not found.is_dir():
        raise invalid_input(
            f"no repository {reference!r} on the embedded forge",
            [FieldError("repository", "must be owner/name or the clone URL of a repository on the embedded forge")],
        )
    return owner, name, found


def _run(repo: Path, *args: str, timeout: float) -> tuple[int, str]:
    done = git(list(args), git_dir=repo, timeout=timeout)
    return done.returncode, done.stdout.decode(errors="replace").strip()


def _recorded(repo: Path, ours: str, timeout: float) -> dict[str, Any]:
    code, text = _run(repo, "show", f"{ours}:{CRUFT_FILE}", timeout=timeout)
    if code != 0:
        raise invalid_input(
            f"the repository was not made from a template: its default branch has no {CRUFT_FILE}",
            [FieldError("repository", f"no {CRUFT_FILE}")],
        )
    return read_cruft(text)


def _target(
    templates: TemplateCatalog, settings: Settings, recorded: dict[str, Any], to_ref: str | None, workdir: Path
) -> Template:
    source = str(recorded.get("template") or "")
    history = TemplateHistory(settings)
    if source.startswith(LOCAL_PREFIX):
        current = templates.get(source.removeprefix(LOCAL_PREFIX))
        if to_ref is None:
            return current
        return current.reloaded(history.checkout(current.name, to_ref, workdir, field="toRef"))
    directory = recorded.get("directory")
    return templates.get(source, to_ref, directory if isinstance(directory, str) else None)


def _render(
    ctx: RunContext, settings: Settings, template: Template, values: dict[str, Any], commit: str | None, into: Path
) -> Path:
    rendered = render(
        template,
        values,
        into,
        settings.templates.hook_timeout_seconds,
        log=ctx.logger.info,
        sandbox=Sandbox(settings),
    )
    write_cruft(rendered.project_dir, template, commit, build_context(template, values))
    return rendered.project_dir


def _migrations(
    ctx: RunContext,
    settings: Settings,
    template: Template,
    from_version: str,
    to_version: str,
    when: Literal["before", "after"],
) -> Migration | None:
    """The template's migration steps this update crosses, run `when` in the sandbox; None when there are none."""
    steps = pending(template, from_version, to_version, when)
    if not steps:
        return None
    if not template.trusted:
        ctx.logger.warning(f"skipped {len(steps)} migration steps: the template's source is not trusted")
        return None
    ctx.logger.info(f"{len(steps)} migration steps {when} the merge")

    def migrate(repo: GitRepo, commit: str) -> str:
        workdir = ctx.workspace / "migrations"
        return run_steps(
            repo, commit, steps, workdir, Sandbox(settings), settings.templates.hook_timeout_seconds, ctx.logger.info
        )

    return migrate


def _branch_name(version: str) -> str:
    return "pltf/update-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", version).strip(".-") or "latest")


@dataclass
class _Target:
    """Where the update goes: the embedded forge (its change requests) or a provider's (pull/merge requests)."""

    owner: str
    name: str
    remote: str
    env: dict[str, str]
    default_branch: str
    embedded_dir: Path | None = None
    forge: RestForge | None = None


def _resolve(ctx: RunContext, forges: ForgeRegistry, settings: Settings, reference: str) -> _Target:
    provider = provider_for_url(settings, reference) if "://" in reference else None
    if provider in (None, "embedded"):
        owner, name, repo = _repository(settings, reference)
        metadata = read_metadata(repo)
        refusal = push_refusal(ctx.caller, owner, name, metadata, settings)
        if refusal is not None:
            raise PltfError(refusal, 403, "forbidden")
        branch = str(metadata.get("defaultBranch", "main"))
        return _Target(owner, name, str(repo), git_environment(AUTHOR), branch, embedded_dir=repo)
    forge = forges.get(str(provider))
    if not isinstance(forge, RestForge):
        raise invalid_input(f"{provider} takes no updates", [FieldError("repository", "unsupported forge")])
    if not ctx.caller.is_admin:
        # pltf records no owner team for a repository on another forge, and acts there with its own token.
        raise PltfError(f"only an admin token updates repositories on {forge.title}", 403, "forbidden")
    path = urlsplit(reference).path.strip("/").removesuffix(".git")
    owner, _, name = path.rpartition("/")
    if not owner or not name:
        raise invalid_input(
            f"{reference!r} names no repository", [FieldError("repository", "must be the repository's URL")]
        )
    remote = remote_repository(forge, owner, name)
    return _Target(
        owner,
        name,
        remote.clone_url,
        git_environment(AUTHOR, forge.git_authorization()),
        remote.default_branch,
        forge=forge,
    )


def check_repository(params: UpdateInput, settings: Settings) -> None:
    if "://" not in params.repository or provider_for_url(settings, params.repository) in (None, "embedded"):
        _repository(settings, params.repository)


def _change_url(base_url: str, owner: str, name: str, number: int) -> str:
    return f"{base_url}/git/{owner}/{name}/changes/{number}"


def _from_change(out: UpdateOutput, change: dict[str, Any], base_url: str, owner: str, name: str) -> UpdateOutput:
    out.status = change.get("status", "clean")
    out.conflicts = list(change.get("conflicts", []))
    out.filesChanged = list(change.get("filesChanged", []))
    out.changeRequestUrl = _change_url(base_url, owner, name, int(change["number"]))
    return out


def create_template_update_action(
    *, settings: Settings, templates: TemplateCatalog, forges: ForgeRegistry, redactor: Redactor, events: EventBus
) -> Action[UpdateInput, UpdateOutput]:
    def handler(ctx: RunContext, params: UpdateInput) -> UpdateOutput:
        timeout = settings.forges.git_timeout_seconds
        target = _resolve(ctx, forges, settings, params.repository)
        owner, name = target.owner, target.name
        work = ctx.workspace
        clone = work / "repo.git"
        shutil.rmtree(clone, ignore_errors=True)
        cloned = git(["clone", "--quiet", "--bare", target.remote, str(clone)], env=target.env, timeout=timeout)
        if cloned.returncode != 0:
            detail = redactor(cloned.stderr.decode(errors="replace").strip()[-500:])
            raise PltfError(f"could not clone {owner}/{name}: {detail}", 502, "update_failed")
        code, ours = _run(
            clone, "rev-parse", "--verify", "--quiet", f"refs/heads/{target.default_branch}", timeout=timeout
        )
        if code != 0:
            raise invalid_input(
                f"{owner}/{name} has no branch {target.default_branch}", [FieldError("repository", "empty repository")]
            )
        recorded = _recorded(clone, ours, timeout)
        base_template = template_at(templates, TemplateHistory(settings), recorded, work / "base-template")
        theirs_template = _target(templates, settings, recorded, params.toRef, work / "theirs-template")
        base_values = base_template.validate_values(recorded_values(base_template, recorded))
        theirs_values = theirs_template.validate_values({**recorded_values(theirs_template, recorded), **params.values})
        to_commit = TemplateHistory(settings).record(theirs_template)
        from_version = str(recorded.get("template_version") or base_template.version)
        out = UpdateOutput(
            status="up-to-date",
            repository=f"{owner}/{name}",
            fromVersion=from_version,
            toVersion=theirs_template.version,
        )
        if to_commit == recorded.get("commit") and not params.values:
            ctx.logger.info(f"{owner}/{name} is on {theirs_template.name} {out.toVersion} already")
            return out
        out.branch = _branch_name(out.toVersion)
        if target.embedded_dir is not None:
            existing = open_change_for(target.embedded_dir, out.branch)
            if existing is not None:
                ctx.logger.info(f"change request {existing['number']} is open for {out.branch} already")
                return _from_change(out, existing, settings.server.base_url, owner, name)

        ctx.logger.info(f"rendering {base_template.name} {from_version} (base) and {out.toVersion} (theirs)")
        base_dir = _render(ctx, settings, base_template, base_values, str(recorded["commit"]), work / "base")
        theirs_dir = _render(ctx, settings, theirs_template, theirs_values, to_commit, work / "theirs")
        message = f"Update template {theirs_template.name} from {from_version} to {out.toVersion}"
        merged = three_way(
            clone,
            ours,
            base_dir,
            theirs_dir,
            message,
            AUTHOR,
            timeout,
            before=_migrations(ctx, settings, theirs_template, from_version, out.toVersion, "before"),
            after=_migrations(ctx, settings, theirs_template, from_version, out.toVersion, "after"),
        )
        if merged.commit is None:
            ctx.logger.info("the new version changes nothing in this repository")
            out.branch = None
            return out
        out.status = "conflicts" if merged.conflicts else "clean"
        out.conflicts = merged.conflicts
        out.filesChanged = merged.files_changed
        for path in merged.conflicts:
            ctx.logger.warning(f"conflict in {path}: both the service and the template changed the same lines")
        if params.dryRun or ctx.dry_run:
            ctx.logger.info(f"dry run: {len(merged.files_changed)} files would change on {out.branch}")
            return out
        if target.forge is not None:
            found = find_change_request(target.forge, owner, name, out.branch)
            if found is not None:
                ctx.logger.info(f"a change request is open for {out.branch} already: {found}")
                out.changeRequestUrl = found
                return out
        # Never a force: a branch of that name that is not this commit's ancestor makes the push fail.
        pushed = git(
            ["push", "--quiet", target.remote, f"{merged.commit}:refs/heads/{out.branch}"],
            git_dir=clone,
            env=target.env,
            timeout=timeout,
        )
        if pushed.returncode != 0:
            existing = open_change_for(target.embedded_dir, out.branch) if target.embedded_dir else None
            if existing is not None:
                return _from_change(out, existing, settings.server.base_url, owner, name)
            raise PltfError(
                f"the branch {out.branch} exists in {owner}/{name} and is not this update; delete it or merge it first",
                409,
                "conflict",
            )
        body = "\n".join(
            [
                message,
                "",
                *(["Conflicts (resolve the markers before merging):", *merged.conflicts] if merged.conflicts else []),
            ]
        )
        if target.forge is not None:
            out.changeRequestUrl = open_change_request(
                target.forge, owner, name, out.branch, target.default_branch, message, body
            )
        else:
            assert target.embedded_dir is not None
            change = create_change(
                target.embedded_dir,
                out.branch,
                message,
                body,
                kind="template-update",
                template=theirs_template.name,
                fromVersion=from_version,
                toVersion=out.toVersion,
                status=out.status,
                conflicts=merged.conflicts,
                filesChanged=merged.files_changed,
                head=merged.commit,
                openedBy=ctx.caller.name,
            )
            out.changeRequestUrl = _change_url(settings.server.base_url, owner, name, int(change["number"]))
        ctx.logger.info(f"opened a change request: {out.changeRequestUrl}")
        events.publish(
            "template.update.opened",
            {"repository": out.repository, "template": theirs_template.name, "toVersion": out.toVersion},
        )
        return out

    return Action(
        id="template:update",
        description=(
            "Updates a repository made from a template to the template's new version: a three-way merge that keeps "
            "the service's edits, on a branch, as a change request."
        ),
        handler=handler,
        check=lambda params: check_repository(params, settings),
        examples=[
            Example(
                "Update a repository to its template's latest version",
                {"repository": "${{ steps['repo:create'].output.remoteUrl }}"},
            )
        ],
    )
