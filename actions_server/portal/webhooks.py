"""What a webhook delivery is: whether it is signed by its sender, and the events it records.

The receivers (GitHub, GitLab, Argo CD, Alertmanager, and the generic
`POST /v1/events`) are in `api/webhooks.py`. A delivery that is unsigned or
wrongly signed is refused with 401 before its body is parsed, and nothing of it
is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic import SecretStr as _SecretStr

from ..auth import Caller, TokenRegistry, token_from_authorization
from ..errors import FieldError, PltfError, invalid_input, pydantic_field_errors
from . import normalize
from .model import SHA, Change, Deployment, Incident, Normalised, ServiceUpdate, parse_time, service_name

MAX_EVENTS = 1000


def _unauthorized(message: str) -> PltfError:
    return PltfError(message, 401, "unauthorized")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise invalid_input(f"the body is not valid JSON: {exc}") from None


def json_object(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
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


def verify_gitlab(secret: _SecretStr | None, given: str | None) -> None:
    if secret is None:
        raise _unauthorized("GitLab webhooks are refused: PLTF_GITLAB_WEBHOOK_TOKEN is not set")
    if not _same(secret, given):
        raise _unauthorized("X-Gitlab-Token is missing or wrong")


def notification_caller(
    authorization: str | None, tokens: TokenRegistry, secret: _SecretStr | None, what: str
) -> Caller | None:
    """The API token's caller when no webhook token is set, to be authorized as `POST /v1/events` is;
    None for a delivery with the webhook's own token."""
    token = token_from_authorization(authorization) or ""
    if secret is not None:
        if not _same(secret, token):
            raise _unauthorized(f"{what} needs Authorization: Bearer <its webhook token>")
        return None
    caller = tokens.authenticate(token) if token else None
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


def authorize_events(
    owners_of: Callable[[set[str]], dict[str, str | None]], caller: Caller, normalised: Normalised
) -> None:
    """A team's token records events only for its team's services, so no team skews another's DORA
    metrics; a service nobody owns yet becomes the caller's team's. 403 and nothing stored otherwise.
    Admin tokens record for any service. `owners_of` names each service's team (entities.service_owners)."""
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
    owners = owners_of(named)
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
