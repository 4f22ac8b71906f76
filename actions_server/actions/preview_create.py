"""`preview:create`: a review app of a repository at a ref or pull request, at a clean URL.

    out = ctx.run_step("preview", "preview:create", {"repoUrl": remote_url, "service": "users-api"})
    out["previewUrl"]   # http://users-api.preview.localhost:8787/
    out["status"]       # "ready", or "starting" when it was not ready within the run's wait bound

The run never outlasts its wait bound (`PLTF_RUN_WAIT_SECONDS`, which fits
Backstage's HTTP step): past it the run answers with the URL and `starting`,
and readiness then shows at `GET /v1/previews/{previewId}` and on the run
(a log line, and its output's status). The same request twice, even at once,
finds the one environment instead of making another.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..action import Action, Example, RunContext
from ..config import Settings
from ..db import runs
from ..errors import FieldError, PltfError, invalid_input
from ..forges.permissions import may_read_url
from ..names import DNS_LABEL
from ..previews import PreviewManager, PreviewRequest
from ..urls import AllowList, UrlRefused

# The run answers this long before its wait bound, so the answer reaches the caller in time.
ANSWER_MARGIN_SECONDS = 2.0
_REF = re.compile(r"^(?![-./])(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]{1,200}$")
_LABEL_VALUE = r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$"


class PreviewCreateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repoUrl: str = Field(
        min_length=1, max_length=500, description="Clone URL of the service's repository (an allowed source)."
    )
    service: str | None = Field(
        None, max_length=63, pattern=DNS_LABEL.pattern, description="Service name; default: the repository's name."
    )
    ref: str | None = Field(None, max_length=200, description="Branch, tag or commit; default: the default branch.")
    pullRequest: int | None = Field(
        None, ge=1, le=10**9, description="Preview this pull request (refs/pull/<n>/head); names it <service>-pr-<n>."
    )
    ttlSeconds: int | None = Field(None, ge=60, description="Lifetime; default PLTF_PREVIEW_TTL_SECONDS.")
    owner: str | None = Field(None, max_length=253, description="Owning group, for labels and listings.")
    experiment: str | None = Field(None, max_length=63, pattern=_LABEL_VALUE, description="Experiment label.")
    bestEffort: bool = Field(
        False, description="On failure answer status failed with a reason instead of failing the run."
    )

    @model_validator(mode="after")
    def _one_ref(self) -> PreviewCreateInput:
        if self.ref is not None and self.pullRequest is not None:
            raise ValueError("give ref or pullRequest, not both")
        if self.ref is not None and not _REF.match(self.ref):
            raise ValueError(f"ref {self.ref!r} is not a valid branch, tag or commit")
        return self


class PreviewCreateOutput(BaseModel):
    previewId: str | None = None
    previewUrl: str | None = None
    namespace: str | None = None
    status: str = Field(description="ready, starting, failed (bestEffort only) or planned (dry run)")
    expiresAt: str | None = None
    pathUrl: str | None = Field(None, description="Path-based fallback URL through the action server.")
    provider: str | None = None
    reason: str | None = None


def service_name(params: PreviewCreateInput) -> str:
    if params.service:
        return params.service
    tail = urlsplit(params.repoUrl).path.rstrip("/").rsplit("/", 1)[-1]
    return tail.removesuffix(".git").lower()


def allowed_sources(settings: Settings) -> AllowList:
    return AllowList([f"{settings.server.base_url}/git/", *settings.previews.preview_sources])


def source_url(params: PreviewCreateInput, settings: Settings) -> str:
    """The repository URL normalised, when it lies under an allowed source: the URL to clone."""
    sources = allowed_sources(settings)
    try:
        allowed = sources.match(params.repoUrl)
    except UrlRefused as exc:
        raise invalid_input(f"invalid repoUrl: {exc}", [FieldError("repoUrl", str(exc))]) from None
    if allowed is None or allowed.scheme not in ("http", "https", "file"):
        raise invalid_input(
            "previews run the repository's code, so it must come from an allowed source",
            [FieldError("repoUrl", f"must lie under one of: {sources} (PLTF_PREVIEW_SOURCES)")],
        )
    return str(allowed)


def validate(params: PreviewCreateInput, settings: Settings, previews: Callable[[], PreviewManager]) -> None:
    repo_url = source_url(params, settings)
    name = service_name(params)
    if not DNS_LABEL.match(name):
        raise invalid_input(
            f"{name!r} is not a DNS-safe service name", [FieldError("service", "give a DNS-safe service name")]
        )
    request = PreviewRequest(service=name, repo_url=repo_url, pull_request=params.pullRequest)
    if len(request.namespace) > 63:
        raise invalid_input(
            f"{request.namespace!r} is longer than 63 characters", [FieldError("service", "too long for a namespace")]
        )
    if params.ttlSeconds is not None and params.ttlSeconds > settings.previews.preview_max_ttl_seconds:
        raise invalid_input(
            f"ttlSeconds is above the limit of {settings.previews.preview_max_ttl_seconds}",
            [FieldError("ttlSeconds", f"at most {settings.previews.preview_max_ttl_seconds}")],
        )
    active = previews().list_previews(status="active", limit=settings.previews.preview_max_active + 1).items
    if len(active) >= settings.previews.preview_max_active and all(p["name"] != request.name for p in active):
        raise PltfError(
            f"there are already {len(active)} active previews (the limit is {settings.previews.preview_max_active}); "
            "destroy one (pltf previews list / destroy) or wait for one to expire",
            429,
            "too_many_previews",
        )


def _deadline(run_id: str, database: Engine, run_wait_seconds: float) -> float:
    """Monotonic time by which the run must answer: its start plus the server's wait bound, less a margin."""
    with database.connect() as conn:
        started = conn.execute(select(runs.c.started_at).where(runs.c.id == run_id)).scalar()
    started = started or time.time()
    remaining = started + run_wait_seconds - ANSWER_MARGIN_SECONDS - time.time()
    return time.monotonic() + max(1.0, remaining)


def create_preview_create_action(
    *, previews: Callable[[], PreviewManager], settings: Settings, database: Engine
) -> Action[PreviewCreateInput, PreviewCreateOutput]:
    """`previews` gives the process's preview manager, built on first use; `database` holds the runs."""

    def check(params: PreviewCreateInput) -> None:
        if params.bestEffort:
            return  # checked by the handler, which reports what it finds instead of failing
        validate(params, settings, previews)

    def handler(ctx: RunContext, params: PreviewCreateInput) -> PreviewCreateOutput:
        manager = previews()
        request = PreviewRequest(
            service=service_name(params),
            repo_url=params.repoUrl,
            ref=params.ref,
            pull_request=params.pullRequest,
            ttl_seconds=params.ttlSeconds,
            owner=params.owner or "unknown",
            experiment=params.experiment,
        )
        if not may_read_url(ctx.caller, params.repoUrl, settings):
            # Answered as for a missing repository: a preview would show the caller code it may not read.
            raise PltfError(
                f"no repository {params.repoUrl} on this server's forge",
                404,
                "not_found",
                [FieldError("input.repoUrl", "no such repository")],
            )
        if ctx.dry_run:
            ctx.logger.info(f"would create preview {request.name} ({manager.provider.name}) for {params.repoUrl}")
            return PreviewCreateOutput(
                previewUrl=manager.url_for(request.name),
                namespace=request.namespace,
                status="planned",
                provider=manager.provider.name,
            )
        try:
            if params.bestEffort:
                validate(params, settings, previews)
            # What the allow-list checked (the normalised URL) is what is cloned.
            request = replace(request, repo_url=source_url(params, settings))
            preview = manager.create(
                request, ctx.run_id, ctx.logger.info, _deadline(ctx.run_id, database, settings.runs.run_wait_seconds)
            )
        except PltfError as exc:
            first, *lines = exc.message.split("\n")
            for line in lines:
                ctx.logger.error(f"  | {line}")
            if not params.bestEffort or exc.status in (401, 403):
                raise
            ctx.logger.warning(f"preview not created: {first}")
            return PreviewCreateOutput(status="failed", reason=first, provider=manager.provider.name)
        return PreviewCreateOutput(
            previewId=preview["id"],
            previewUrl=preview["previewUrl"],
            namespace=preview["namespace"],
            status=preview["status"],
            expiresAt=preview["expiresAt"],
            pathUrl=preview["pathUrl"],
            provider=preview["provider"],
        )

    return Action(
        id="preview:create",
        description="Starts a preview environment of a repository at a ref or pull request, served at a clean URL.",
        handler=handler,
        check=check,
        waits=True,  # on the service getting ready
        examples=[
            Example(
                "Preview pull request 7 of users-api (dry run: nothing is started)",
                {"repoUrl": "http://127.0.0.1:8787/git/platform-team/users-api.git", "pullRequest": 7},
                dry_run=True,
            ),
        ],
    )
