"""The shapes the HTTP API answers with, for the OpenAPI document and its clients.

They describe what the handlers return today (Backstage templates, the CLI and
backstage-plugin/ rely on these names). A model built on `Open` allows keys it
does not name, for answers that carry what a provider or a template adds (a
preview's provider fields, a template's extra metadata); the others, a `Run`
among them, name every key they answer with.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """An object whose named keys are documented; any other key it carries is kept."""

    model_config = ConfigDict(extra="allow")


class FieldProblem(BaseModel):
    field: str = Field(description="The input field, dotted (`values.name`), or a header name.")
    message: str


class Error(BaseModel):
    code: str = Field(description="Machine-readable: invalid_input, not_found, unauthorized, forbidden, conflict…")
    message: str = Field(description="Fit to show the person who clicked Create.")
    status: int
    fields: list[FieldProblem] = Field(default_factory=list, description="Present when particular fields are wrong.")


class ErrorBody(BaseModel):
    error: Error


ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid API token (Authorization: Bearer <token>)",
    403: "The token may not do this",
    404: "Not found, or not visible to this token",
    405: "Method not allowed",
    408: "The request body did not arrive in time",
    409: "Conflicts with what exists",
    413: "The request body is too large",
    422: "Invalid input; `fields` names what to fix",
    429: "Too many requests",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an operation that can answer these error statuses, each with the Error body."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class RunLinks(BaseModel):
    self: str
    events: str


class LogLine(BaseModel):
    seq: int = Field(description="Increasing per run; the SSE event id, for Last-Event-ID.")
    time: str
    level: str = Field(description="debug, info, warning or error")
    message: str
    step: str | None = Field(None, description="The step of the action that wrote it (render, push…).")
    fields: dict[str, Any] | None = None


class Run(BaseModel):
    id: str
    action: str
    status: RunStatus
    dryRun: bool
    input: dict[str, Any] | None = Field(description="The input as given, secrets left out.")
    output: Any = Field(description="The action's output once it succeeded; see GET /v1/actions/{id}.")
    error: Error | None = Field(description="Why a failed or cancelled run ended.")
    caller: str | None
    team: str | None
    createdAt: str | None
    startedAt: str | None
    finishedAt: str | None
    log: list[LogLine] | None = Field(None, description="Log lines; only on GET /v1/runs/{id}.")
    links: RunLinks


class RunList(BaseModel):
    runs: list[Run]
    nextCursor: str | None = Field(None, description="Pass as `?cursor=` for the next page; null on the last.")


class ActionSchemas(BaseModel):
    input: dict[str, Any]
    output: dict[str, Any]


class ActionExample(BaseModel):
    description: str
    example: str = Field(description="A Backstage template step using the action, in YAML.")


class ActionDescription(Open):
    """The shape of Backstage's `GET /api/scaffolder/v2/actions` entries."""

    id: str
    description: str
    schema_: ActionSchemas = Field(alias="schema")
    examples: list[ActionExample]


class ActionList(BaseModel):
    actions: list[ActionDescription]


class Template(Open):
    name: str
    version: str
    description: str | None
    trusted: bool
    source: Any = Field(description="Where the template came from: local, or the source it was cloned from.")
    schema_: dict[str, Any] | None = Field(alias="schema", description="The JSON schema of its values.")


class TemplateList(BaseModel):
    templates: list[Template]


class Workspace(Open):
    id: str
    runId: str | None
    directory: str
    files: Any
    size: int | None
    createdAt: float | None = Field(description="Seconds since the epoch.")
    archiveUrl: str


class Preview(Open):
    id: str
    name: str
    service: str | None
    status: str = Field(description="starting, ready, failed, destroyed or expired")
    detail: str | None
    provider: str
    previewUrl: str | None
    pathUrl: str | None
    namespace: str | None
    repoUrl: str | None
    ref: str | None
    pullRequest: int | None
    commit: str | None
    owner: str | None
    experiment: str | None
    runId: str | None
    replica: str | None
    ttlSeconds: int | None
    createdAt: str | None
    readyAt: str | None
    expiresAt: str | None
    finishedAt: str | None
    logs: Any = Field(None, description="The last logs of a preview that failed.")
    logTail: Any = Field(None, description="Only on GET /v1/previews/{id} of an active preview.")


class PreviewList(BaseModel):
    previews: list[Preview]
    nextCursor: str | None = Field(None, description="Pass as `?cursor=` for the next page; null on the last.")


class PreviewCollection(BaseModel):
    removed: list[Any]
    log: list[str]


class Entity(Open):
    """A catalog entity as Backstage answers it, with its relations."""

    apiVersion: str
    kind: str
    metadata: dict[str, Any]


class PageInfo(Open):
    nextCursor: str | None = None
    prevCursor: str | None = None


class EntityPage(Open):
    """Backstage's paged answer; follow `pageInfo.nextCursor` with `?cursor=`."""

    items: list[dict[str, Any]]
    totalItems: int
    pageInfo: PageInfo


class Facets(Open):
    facets: dict[str, list[dict[str, Any]]]


class Location(Open):
    id: str
    type: str
    target: str


class LocationEntry(BaseModel):
    data: Location


class LocationRegistration(Open):
    location: Location | dict[str, Any] = Field(description="Empty on a dry run of a location not registered yet.")
    entities: list[dict[str, Any]]
    exists: bool | None = Field(None, description="Only on a dry run: whether the location is registered already.")


class RefreshAnswer(BaseModel):
    entityRef: str
    refreshed: bool


class DeploymentFrequency(BaseModel):
    perDay: float | None
    bucket: str | None = Field(description="elite, high, medium or low; null without deploys")


class MedianHours(BaseModel):
    medianHours: float | None


class Ratio(BaseModel):
    ratio: float | None


class Dora(Open):
    """The four keys over a window; null where there is no data."""

    deploymentFrequency: DeploymentFrequency
    leadTimeForChanges: MedianHours
    changeFailureRate: Ratio
    timeToRestore: MedianHours
    level: str | None


class Uptime(BaseModel):
    ratio: float | None = Field(description="Share of successful probes (or Prometheus' `up`); null without data.")
    probes: int | None = Field(description="How many probes it counts; null when it comes from Prometheus.")


class Probe(BaseModel):
    time: float = Field(description="Unix seconds")
    ok: bool
    status: int | None = Field(description="The HTTP status; null when the service did not answer.")
    ms: float | None
    url: str


class SloStatus(BaseModel):
    objective: float = Field(description="Availability objective in percent")
    availability: float | None
    status: str | None = Field(description="met or breached; null without data")
    errorBudgetRemaining: float | None = Field(description="Share of the window's error budget left")
    objectiveSource: str = Field(description="annotation, the repository's SLO file, or default")
    window: str


class Health(BaseModel):
    source: str = Field(description="probes or prometheus")
    url: str | None = Field(description="The health URL probed; null when the service names none.")
    uptime: dict[str, Uptime] = Field(description="Per window: 24h, 7d and 30d.")
    last: Probe | None
    slo: SloStatus


class ScorecardRule(BaseModel):
    id: str
    title: str
    level: str
    passed: bool
    detail: str = Field(description="What was found")
    fix: str | None = Field(description="How to pass; null when it passes.")


class Scorecard(BaseModel):
    level: str | None = Field(description="The highest level whose rules (and those below) all pass.")
    levels: list[str]
    passed: int
    total: int
    rules: list[ScorecardRule]


class ScorecardSummary(BaseModel):
    level: str | None
    passed: int
    total: int


class CostLine(BaseModel):
    env: str
    namespace: str | None
    experiment: str | None
    cpu: float | None = Field(description="Requested cores; null for OpenCost allocations.")
    memoryGiB: float | None
    cost: float = Field(description="Over the window")
    forecastMonthly: float
    budget: float | None
    overBudget: bool
    source: str | None = Field(description="Where the requests were read, or opencost.")


class CostTotals(BaseModel):
    currency: str
    cost: float | None
    forecastMonthly: float | None
    budgetMonthly: float | None
    warnings: list[str]
    estimate: bool = Field(description="True when priced from requested resources rather than measured.")
    basis: str


class ServiceCost(CostTotals):
    service: str
    source: str = Field(description="opencost, or requests (priced from the resource requests)")
    windowHours: float
    envs: list[CostLine]


class PortalService(BaseModel):
    name: str
    team: str | None
    health: Health
    dora: Dora
    scorecard: ScorecardSummary
    cost: CostTotals


class PortalServiceList(BaseModel):
    services: list[PortalService]


class CostSummary(BaseModel):
    by: str
    window: str
    source: str = Field(description="opencost, or requests (priced from the resource requests)")
    currency: str
    items: list[dict[str, Any]] = Field(description="Per key of `by`: that key, cost and forecastMonthly.")
    warnings: list[str]


class Recorded(Open):
    """A webhook or event delivery stored; 200 instead of 202 when it was a duplicate."""


BACKSTAGE_ERROR = {
    "description": "Backstage's error shape: {error: {name, message}, request, response: {statusCode}}",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def backstage_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an operation of Backstage's actions registry, which answers in Backstage's error shape."""
    return {status: BACKSTAGE_ERROR for status in statuses}


class Readiness(Open):
    """Whether this replica can serve, and the sandbox hooks and previews get (or why they are refused)."""

    status: str = Field(description="ready, or unavailable")
    reason: str | None = Field(None, description="Why it is unavailable: the database error or the storage problem.")


class ChangeRequest(Open):
    """A change request of the embedded forge; a template update's also carries its versions and conflicts."""

    number: int
    branch: str
    target: str = Field(description="The branch it merges into")
    title: str
    body: str
    state: str = Field(description="open, merged or closed")
    createdAt: float = Field(description="Unix seconds")
    url: str = Field(description="Its page")


class ChangeRequestList(BaseModel):
    changes: list[ChangeRequest]


class MergedChangeRequest(ChangeRequest):
    refreshedEntities: list[str] = Field(description="The catalog entities read again from the merged branch.")


class VersionCount(BaseModel):
    version: str
    services: int


class DriftService(BaseModel):
    repository: str
    template: str
    version: str
    commit: str | None
    updates: list[dict[str, Any]] = Field(
        description="Its template-update change requests: number, state, toVersion, status."
    )


class TemplateDrift(BaseModel):
    template: str
    latestVersion: str
    versions: list[VersionCount] = Field(description="Oldest first: how many services are on each version.")
    updateRequests: dict[str, int] = Field(description="Template-update change requests by state.")
    services: list[DriftService]
