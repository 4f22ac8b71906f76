"""The catalog's read API, with Backstage's paths and shapes, under `/api/catalog`.

Reads are open by default (`PLTF_CATALOG_PUBLIC_READS`): the same entities are
on the `/catalog` pages, which anyone may read, and Backstage's frontend-free
clients (scripts, the CLI) should not need a token to look an entity up.
Writes (registering, deleting and refreshing locations) need an API token that
may run `catalog:register`: a dry run reads URLs the caller names, so it is a
write too.

Written without `from __future__ import annotations` on purpose: FastAPI reads
the parameter annotations at runtime, and `Authed` is imported inside the
factory (app.py imports this module, so a top-level import would be circular).
"""

from collections.abc import Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..api.deps import Authed
from ..api.models import (
    Entity,
    EntityPage,
    Facets,
    Location,
    LocationEntry,
    LocationRegistration,
    RefreshAnswer,
    errors,
)
from ..auth import Caller, TokenRegistry
from ..errors import FieldError, PltfError, invalid_input, not_found
from ..services import Services
from .base import DEFAULT_LIMIT, MAX_LIMIT
from .base import Query as EntityQuery
from .model import parse_ref
from .query import split_list_params

REGISTER_ACTION = "catalog:register"


class LocationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field("url", description="url (any URL the catalog may read), or file (an absolute path)")
    target: str = Field(min_length=1, max_length=2000)


class RefreshInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entityRef: str = Field(min_length=1, max_length=400)


def read_access_for(services: Callable[[], Services]) -> Callable[..., None]:
    """Lets reads through when they are public; otherwise asks for a token, as `Authed` does."""

    def read_access(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
        if services().settings.catalog.catalog_public_reads:
            return
        scheme, _, token = (authorization or "").partition(" ")
        tokens: TokenRegistry = request.app.state.tokens
        if scheme.lower() != "bearer" or tokens.authenticate(token.strip()) is None:
            raise PltfError("a valid API token is required (Authorization: Bearer <token>)", 401, "unauthorized")

    return read_access


def target_of(body: LocationInput) -> str:
    if body.type == "url":
        return body.target
    if body.type == "file":
        if not body.target.startswith("/"):
            raise invalid_input("a file location is an absolute path", [FieldError("target", "must be absolute")])
        return "file://" + body.target
    raise invalid_input(f"unknown location type {body.type!r}", [FieldError("type", "must be url or file")])


def catalog_api(services: Callable[[], Services]) -> APIRouter:
    router = APIRouter(
        prefix="/api/catalog",
        tags=["catalog"],
        dependencies=[Depends(read_access_for(services))],
        responses=errors(401, 422),
    )

    def may_register(who: Caller) -> None:
        if not who.may_run(REGISTER_ACTION):
            raise PltfError(f"this token may not run {REGISTER_ACTION}", 403, "forbidden")

    @router.get("/entities/by-name/{kind}/{namespace}/{name}", response_model=Entity, responses=errors(404))
    async def entity_by_name(kind: str, namespace: str, name: str) -> dict[str, Any]:
        """One entity, with its relations; 404 if there is none."""
        found = await anyio.to_thread.run_sync(services().catalog.entity, kind, namespace, name)
        if found is None:
            raise not_found(f"no {kind}:{namespace}/{name} in the catalog")
        return found

    @router.get("/entities/by-query", response_model=EntityPage, response_model_exclude_unset=True)
    async def entities_by_query(
        filter: Annotated[list[str], Query(description="key=value,key=value; repeat for OR")] = [],  # noqa: A002, B006
        fields: Annotated[list[str], Query(description="dotted paths to return, comma-separated")] = [],  # noqa: B006
        orderField: Annotated[list[str], Query(description="field,asc|desc")] = [],  # noqa: B006, N803
        limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=4000)] = None,
    ) -> dict[str, Any]:
        """Backstage's paginated query: `{items, totalItems, pageInfo: {nextCursor, prevCursor}}`."""
        query = EntityQuery(filter, split_list_params(fields), orderField, limit, cursor)
        return await anyio.to_thread.run_sync(services().catalog.query, query)

    @router.get("/entity-facets", response_model=Facets)
    async def entity_facets(
        facet: Annotated[list[str], Query(min_length=1)],
        filter: Annotated[list[str], Query()] = [],  # noqa: A002, B006
    ) -> dict[str, Any]:
        """Distinct values of fields and how many entities have each: `{facets: {key: [{value, count}]}}`."""
        return await anyio.to_thread.run_sync(services().catalog.facets, facet, filter)

    @router.post(
        "/locations",
        status_code=201,
        response_model=LocationRegistration,
        response_model_exclude_unset=True,
        responses=errors(400, 403, 408, 409, 413),
    )
    async def add_location(
        body: LocationInput,
        who: Authed,
        dryRun: bool = False,  # noqa: N803
    ) -> dict[str, Any]:
        """Registers a location: 201 `{location, entities}`; 409 if it is registered already.

        `?dryRun=true` reads and validates it and answers `{exists, location, entities}`, storing nothing.
        """
        may_register(who)
        target = target_of(body)
        registration = await anyio.to_thread.run_sync(
            lambda: services().catalog.register(target, dry_run=dryRun, caller=who)
        )
        return registration.to_json(dryRun)

    @router.get("/locations", response_model=list[LocationEntry])
    async def list_locations() -> list[dict[str, Any]]:
        """Backstage's shape: `[{data: {id, type, target}}]`."""
        found = await anyio.to_thread.run_sync(services().catalog.locations)
        return [{"data": location} for location in found]

    @router.get("/locations/{location_id}", response_model=Location, responses=errors(404))
    async def get_location(location_id: str) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(services().catalog.location, location_id)

    @router.delete("/locations/{location_id}", status_code=204, responses=errors(403, 404))
    async def delete_location(location_id: str, who: Authed) -> Response:
        may_register(who)
        await anyio.to_thread.run_sync(services().catalog.delete_location, location_id, who)
        return Response(status_code=204)

    @router.post("/refresh", response_model=RefreshAnswer, responses=errors(400, 403, 404, 408, 413))
    async def refresh(body: RefreshInput, who: Authed) -> JSONResponse:
        """Re-reads the location the entity came from, now (Backstage: `POST /refresh {entityRef}`)."""
        may_register(who)
        try:
            parse_ref(body.entityRef)
        except ValueError as exc:
            raise invalid_input(str(exc), [FieldError("entityRef", str(exc))]) from None
        await anyio.to_thread.run_sync(services().catalog.refresh, body.entityRef, who)
        return JSONResponse({"entityRef": body.entityRef, "refreshed": True})

    return router
