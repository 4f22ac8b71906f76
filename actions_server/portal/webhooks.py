"""Webhook receivers (GitHub, GitLab, Argo CD, Alertmanager) and the generic `POST /v1/events`.

A delivery that is unsigned or wrongly signed is refused with 401 before its
body is parsed, and nothing of it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic import SecretStr as _SecretStr

from ..api.deps import Authed
from ..api.models import Recorded, errors
from ..auth import Caller, token_from_authorization
from ..errors import FieldError, PltfError, invalid_input, pydantic_field_errors
from ..services import Services
from . import normalize
from .entities import service_owners
from .events import body_digest, record
from .model import SHA, Change, Deployment, Incident, Normalised, ServiceUpdate, parse_time, service_name

MAX_EVENTS = 1000


def _unauthorized(message: str) -> PltfError:
    return PltfError(message, 401, "unauthorized")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise invalid_input(f"the body is not valid JSON: {exc}") from None


def _object(raw: bytes) -> dict[str, Any]:
    body = _json(raw)
    if not isinstance(body, dict):
        raise invalid_input("the body must be a JSON object")
    return body


def verify_github(secret: _SecretStr | None, raw: bytes, signature: str | None) -> None:
    if secret is None:
        raise _unauthorized("GitHub webhooks are refused: PLTF_GITHUB_WEBHOOK_SECRET is not set")
    if not signature or not signature.startswith("sha256="):
        raise _unauthorized("missing X-Hub-Signature-256")
    expected = "sha256=" + hmac.new(secret.get_secret_value().encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise _unauthorized("X-Hub-Signature-256 does not match the body")


def _same(secret: _SecretStr, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(secret.get_secret_value().encode(), given.strip().encode())


def _bearer(request: Request, secret: _SecretStr | None, what: str) -> Caller | None:
    """The API token's caller when no webhook token is set, to be authorized as `POST /v1/events` is;
    None for a delivery with the webhook's own token."""
    token = token_from_authorization(request.headers.get("authorization")) or ""
    if secret is not None:
        if not _same(secret, token):
            raise _unauthorized(f"{what} needs Authorization: Bearer <its webhook token>")
        return None
    caller: Caller | None = request.app.state.tokens.authenticate(token) if token else None
    if caller is None:
        raise _unauthorized(f"{what} needs Authorization: Bearer <an API token>")
    return caller


# -- the generic event ---------------------------------------------------------


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    service: str = Field(description="Service name: lowercase letters, digits, '-', '.', '_'")
    timestamp: float = Field(description="ISO 8601 time (or epoch seconds)")
    team: str | None = Field(None, max_length=200, description="Owning team, when no catalog entity says")

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        name = service_name(value)
        if name is None:
            raise ValueError("must be 1-100 lowercase letters, digits, '-', '.' or '_'")
        return name

    @field_validator("timestamp", mode="before")
    @classmethod
    def _time(cls, value: Any) -> float:
        return parse_time(value)


def _sha_value(value: str) -> str:
    if not SHA.match(value):
        raise ValueError("must be a commit sha (4-64 hex digits)")
    return value.lower()


class ChangeEvent(_Event):
    type: Literal["change"]

    @field_validator("id")
    @classmethod
    def _commit(cls, value: str) -> str:
        return _sha_value(value)


class DeploymentEvent(_Event):
    type: Literal["deployment"]
    environment: str = Field("production", min_length=1, max_length=100)
    status: Literal["success", "failure"] = "success"
    changes: list[str] = Field(default_factory=list, max_length=10000, description="Commit shas the deploy shipped")
    sha: str | None = Field(None, description="The deployed commit")

    @field_validator("changes")
    @classmethod
    def _changes(cls, value: list[str]) -> list[str]:
        return [_sha_value(v) for v in value]

    @field_validator("sha")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        return None if value is None else _sha_value(value)


class IncidentEvent(_Event):
    type: Literal["incident"]
    resolvedAt: float | None = None
    rootCause: str | None = Field(None, description="The commit that caused it, if known")
    title: str | None = Field(None, max_length=500)

    @field_validator("resolvedAt", mode="before")
    @classmethod
    def _resolved(cls, value: Any) -> float | None:
        return None if value is None else parse_time(value, "resolvedAt")

    @field_validator("rootCause")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        return None if value is None else _sha_value(value)


GenericEvent = Annotated[ChangeEvent | DeploymentEvent | IncidentEvent, Field(discriminator="type")]
_EVENTS = TypeAdapter(list[GenericEvent])


def _event_errors(exc: ValidationError, batch: bool) -> list[FieldError]:
    """Field paths as the sender wrote them: `timestamp`, or `events.2.timestamp` in a batch."""
    fixed = []
    for error in exc.errors():
        loc = list(error.get("loc", ()))
        if len(loc) > 1 and loc[1] in ("change", "deployment", "incident"):
            del loc[1]  # the union's tag, not a field
        if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("type")
        if not batch and loc and isinstance(loc[0], int):
            loc = loc[1:]
        fixed.append({**error, "loc": tuple(loc)})
    return pydantic_field_errors(fixed, "events" if batch else "")


def generic(body: Any) -> Normalised:
    items = body.get("events") if isinstance(body, dict) and "events" in body else [body]
    if not isinstance(items, list) or not items:
        raise invalid_input('send one event object, or {"events": [...]}')
    if len(items) > MAX_EVENTS:
        raise invalid_input(f"at most {MAX_EVENTS} events per request")
    batch = isinstance(body, dict) and "events" in body
    try:
        events = _EVENTS.validate_python(items)
    except ValidationError as exc:
        raise invalid_input("invalid event", _event_errors(exc, batch)) from None
    out = Normalised()
    for event in events:
        if event.team:
            out.services.append(ServiceUpdate(event.service, team=normalize._team(event.team)))
        if isinstance(event, ChangeEvent):
            out.changes.append(Change(event.service, event.id, event.timestamp))
        elif isinstance(event, DeploymentEvent):
            out.deployments.append(
                Deployment(
                    id=f"event:{event.service}:{event.id}",
                    service=event.service,
                    environment=event.environment.strip().lower(),
                    success=event.status == "success",
                    time=event.timestamp,
                    sha=event.sha,
                    changes=tuple(event.changes),
                )
            )
        else:
            if event.resolvedAt is not None and event.resolvedAt < event.timestamp:
                raise invalid_input("resolvedAt is before timestamp", [FieldError("resolvedAt", "before timestamp")])
            out.incidents.append(
                Incident(
                    id=f"event:{event.service}:{event.id}",
                    service=event.service,
                    started_at=event.timestamp,
                    resolved_at=event.resolvedAt,
                    root_cause=event.rootCause,
                    title=event.title,
                )
            )
    return out


def authorize_events(services: Services, caller: Caller, normalised: Normalised) -> None:
    """A team's token records events only for its team's services, so no team skews another's DORA
    metrics; a service nobody owns yet becomes the caller's team's. 403 and nothing stored otherwise.
    Admin tokens record for any service."""
    if caller.is_admin:
        return
    mine = (normalize._team(caller.team) or "").lower() or None
    for update in normalised.services:
        if update.team is not None and update.team.lower() != mine:
            raise PltfError(
                f"this token records events for its own team only, not for {update.team}",
                403,
                "forbidden",
                [FieldError("team", "not this token's team")],
            )
    named = {d.service for d in normalised.deployments} | {i.service for i in normalised.incidents}
    named |= {c.service for c in normalised.changes} | {u.name for u in normalised.services}
    owners = service_owners(services, named)
    for name in sorted(named):
        if owners[name] is not None and owners[name] != mine:
            raise PltfError(
                f"{name} belongs to another team; this token records events for its own team's services only",
                403,
                "forbidden",
                [FieldError("service", f"{name} is not this token's team's")],
            )
        if owners[name] is None and mine is not None:
            normalised.services.append(ServiceUpdate(name, team=mine))


# -- routes ---------------------------------------------------------------------


def _delivery_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A delivery's answers besides 202: 200 for one already recorded, and its error statuses."""
    return {200: {"model": Recorded, "description": "Already recorded (the same delivery)"}, **errors(*statuses)}


def webhook_routes(services: Callable[[], Services]) -> APIRouter:
    router = APIRouter(tags=["portal: events"])

    async def store(source: str, delivery: str, event_type: str, payload: Any, normalised: Normalised) -> JSONResponse:
        engine = services().engine
        done = await anyio.to_thread.run_sync(record, engine, source, delivery, event_type, payload, normalised)
        return JSONResponse(done.to_json(), status_code=200 if done.duplicate else 202)

    @router.post(
        "/webhooks/github",
        status_code=202,
        response_model=Recorded,
        responses=_delivery_answers(401, 408, 413, 422),
    )
    async def github_webhook(
        request: Request,
        x_github_event: Annotated[str | None, Header()] = None,
        x_github_delivery: Annotated[str | None, Header()] = None,
        x_hub_signature_256: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """GitHub: push, pull_request, deployment_status, workflow_run (X-Hub-Signature-256 required)."""
        raw = await request.body()
        settings = services().settings
        verify_github(settings.portal.github_webhook_secret, raw, x_hub_signature_256)
        payload = _object(raw)
        event_type = x_github_event or "unknown"
        normalised = normalize.github(event_type, payload, settings.portal.deploy_workflow_pattern)
        return await store("github", x_github_delivery or body_digest(payload), event_type, payload, normalised)

    @router.post(
        "/webhooks/gitlab",
        status_code=202,
        response_model=Recorded,
        responses=_delivery_answers(401, 408, 413, 422),
    )
    async def gitlab_webhook(
        request: Request,
        x_gitlab_token: Annotated[str | None, Header()] = None,
        x_gitlab_event: Annotated[str | None, Header()] = None,
        x_gitlab_event_uuid: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """GitLab: push, merge request and pipeline hooks (X-Gitlab-Token required)."""
        secret = services().settings.portal.gitlab_webhook_token
        if secret is None:
            raise _unauthorized("GitLab webhooks are refused: PLTF_GITLAB_WEBHOOK_TOKEN is not set")
        if not _same(secret, x_gitlab_token):
            raise _unauthorized("X-Gitlab-Token is missing or wrong")
        raw = await request.body()
        payload = _object(raw)
        event_type = x_gitlab_event or str(payload.get("object_kind") or "unknown")
        delivery = x_gitlab_event_uuid or request.headers.get("idempotency-key") or body_digest(payload)
        return await store("gitlab", delivery, event_type, payload, normalize.gitlab(event_type, payload))

    @router.post(
        "/webhooks/argocd",
        status_code=202,
        response_model=Recorded,
        responses=_delivery_answers(401, 403, 408, 413, 422),
    )
    async def argocd_webhook(request: Request) -> JSONResponse:
        """Argo CD notifications (sync succeeded or failed), with the body template of docs/dora.md."""
        caller = _bearer(request, services().settings.portal.argocd_webhook_token, "Argo CD notifications")
        payload = _object(await request.body())
        delivery = request.headers.get("x-delivery-id") or body_digest(payload)
        normalised = normalize.argocd(payload)
        if caller is not None:
            await anyio.to_thread.run_sync(authorize_events, services(), caller, normalised)
        return await store("argocd", delivery, "sync", payload, normalised)

    @router.post(
        "/webhooks/alertmanager",
        status_code=202,
        response_model=Recorded,
        responses=_delivery_answers(401, 403, 408, 413, 422),
    )
    async def alertmanager_webhook(request: Request) -> JSONResponse:
        """Alertmanager webhook v4: firing alerts open incidents, resolved ones close them."""
        caller = _bearer(request, services().settings.portal.alertmanager_webhook_token, "Alertmanager")
        payload = _object(await request.body())
        delivery = request.headers.get("x-delivery-id") or body_digest(payload)
        normalised = normalize.alertmanager(payload)
        if caller is not None:
            await anyio.to_thread.run_sync(authorize_events, services(), caller, normalised)
        return await store("alertmanager", delivery, str(payload.get("status") or "alert"), payload, normalised)

    @router.post(
        "/v1/events",
        status_code=202,
        response_model=Recorded,
        responses=_delivery_answers(401, 403, 408, 413, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "description": 'One event {"type": "change"|"deployment"|"incident", "id", "service", '
                            '"timestamp", ...} or {"events": [...]}; see docs/dora.md.',
                        }
                    }
                },
            }
        },
    )
    async def post_events(
        request: Request, who: Authed, x_delivery_id: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Generic deployments, changes and incidents, like DevLake's webhook (see docs/dora.md).

        A team's token only for its team's services (403 otherwise); see authorize_events."""
        body = _json(await request.body())
        normalised = generic(body)
        await anyio.to_thread.run_sync(authorize_events, services(), who, normalised)
        event_type = "batch" if isinstance(body, dict) and "events" in body else str(body.get("type"))
        return await store("events", x_delivery_id or body_digest(body), event_type, body, normalised)

    return router
