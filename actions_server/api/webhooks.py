"""The webhook receivers (GitHub, GitLab, Argo CD, Alertmanager) and the generic `POST /v1/events`.

portal/webhooks.py says whether a delivery is signed and what it records; this
module reads it off the request, stores it once and answers 202 (200 for a
delivery already recorded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from ..auth import TokenRegistry
from ..config import Settings
from ..portal import normalize
from ..portal.entities import service_owners
from ..portal.events import body_digest, record
from ..portal.model import Normalised
from ..portal.parts import PortalParts
from ..portal.webhooks import (
    authorize_events,
    generic,
    json_object,
    notification_caller,
    parse_json,
    verify_github,
    verify_gitlab,
)
from .deps import Authed, DatabaseDep, PortalPartsDep, SettingsDep, TokensDep
from .models import Recorded, errors

router = APIRouter(tags=["portal: events"])
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def receiver(path: str, *statuses: int, **more: Any) -> Callable[[Endpoint], Endpoint]:
    """`POST path`: 202 with what was recorded, 200 for a delivery recorded already, and its error `statuses`."""
    already: dict[int | str, dict[str, Any]] = {
        200: {"model": Recorded, "description": "Already recorded (the same delivery)"}
    }
    return router.post(
        path, status_code=202, response_model=Recorded, responses={**already, **errors(*statuses)}, **more
    )


async def store(
    database: Engine, source: str, delivery: str, event_type: str, payload: Any, normalised: Normalised
) -> JSONResponse:
    done = await anyio.to_thread.run_sync(record, database, source, delivery, event_type, payload, normalised)
    return JSONResponse(done.to_json(), status_code=200 if done.duplicate else 202)


@receiver("/webhooks/github", 401, 408, 413, 422)
async def github_webhook(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    x_github_event: Annotated[str | None, Header()] = None,
    x_github_delivery: Annotated[str | None, Header()] = None,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """GitHub: push, pull_request, deployment_status, workflow_run (X-Hub-Signature-256 required)."""
    raw = await request.body()
    verify_github(settings.portal.github_webhook_secret, raw, x_hub_signature_256)
    payload = json_object(raw)
    event_type = x_github_event or "unknown"
    normalised = normalize.github(event_type, payload, settings.portal.deploy_workflow_pattern)
    return await store(database, "github", x_github_delivery or body_digest(payload), event_type, payload, normalised)


@receiver("/webhooks/gitlab", 401, 408, 413, 422)
async def gitlab_webhook(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    x_gitlab_token: Annotated[str | None, Header()] = None,
    x_gitlab_event: Annotated[str | None, Header()] = None,
    x_gitlab_event_uuid: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """GitLab: push, merge request and pipeline hooks (X-Gitlab-Token required)."""
    verify_gitlab(settings.portal.gitlab_webhook_token, x_gitlab_token)
    payload = json_object(await request.body())
    event_type = x_gitlab_event or str(payload.get("object_kind") or "unknown")
    delivery = x_gitlab_event_uuid or request.headers.get("idempotency-key") or body_digest(payload)
    return await store(database, "gitlab", delivery, event_type, payload, normalize.gitlab(event_type, payload))


@dataclass(frozen=True)
class Notifier:
    """A sender of notifications (Argo CD, Alertmanager) at `/webhooks/<source>`: its own webhook token,
    or an API token whose team may record events for the services it names."""

    source: str
    title: str
    description: str
    secret: Callable[[Settings], SecretStr | None]
    normalise: Callable[[dict[str, Any]], Normalised]
    event_type: Callable[[dict[str, Any]], str]


NOTIFIERS = (
    Notifier(
        "argocd",
        "Argo CD notifications",
        "Argo CD notifications (sync succeeded or failed), with the body template of docs/dora.md.",
        lambda settings: settings.portal.argocd_webhook_token,
        normalize.argocd,
        lambda _: "sync",
    ),
    Notifier(
        "alertmanager",
        "Alertmanager",
        "Alertmanager webhook v4: firing alerts open incidents, resolved ones close them.",
        lambda settings: settings.portal.alertmanager_webhook_token,
        normalize.alertmanager,
        lambda payload: str(payload.get("status") or "alert"),
    ),
)


async def notification(
    request: Request, tokens: TokenRegistry, services: PortalParts, sender: Notifier
) -> JSONResponse:
    secret = sender.secret(services.settings)
    caller = notification_caller(request.headers.get("authorization"), tokens, secret, sender.title)
    payload = json_object(await request.body())
    delivery = request.headers.get("x-delivery-id") or body_digest(payload)
    normalised = sender.normalise(payload)
    if caller is not None:
        await anyio.to_thread.run_sync(authorize_events, partial(service_owners, services), caller, normalised)
    return await store(services.engine, sender.source, delivery, sender.event_type(payload), payload, normalised)


def _add_notification_route(sender: Notifier) -> None:
    async def receive(request: Request, tokens: TokensDep, services: PortalPartsDep) -> JSONResponse:
        return await notification(request, tokens, services, sender)

    # Named as the functions were, so the operation ids stay argocd_webhook_… and alertmanager_webhook_….
    name, description = f"{sender.source}_webhook", sender.description
    receiver(f"/webhooks/{sender.source}", 401, 403, 408, 413, 422, name=name, description=description)(receive)


for sender in NOTIFIERS:
    _add_notification_route(sender)


# The body is read as JSON by hand (one event or a batch, with the sender's field names in errors).
EVENTS_BODY = {
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
}


@receiver("/v1/events", 401, 403, 408, 413, 422, openapi_extra=EVENTS_BODY)
async def post_events(
    request: Request, who: Authed, services: PortalPartsDep, x_delivery_id: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """Generic deployments, changes and incidents, like DevLake's webhook (see docs/dora.md).

    A team's token only for its team's services (403 otherwise); see authorize_events."""
    body = parse_json(await request.body())
    normalised = generic(body)
    await anyio.to_thread.run_sync(authorize_events, partial(service_owners, services), who, normalised)
    event_type = "batch" if isinstance(body, dict) and "events" in body else str(body.get("type"))
    return await store(services.engine, "events", x_delivery_id or body_digest(body), event_type, body, normalised)
