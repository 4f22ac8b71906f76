"""pltf as plugin `pltf` of Backstage's actions registry, at pltf's root.

Backstage's `DefaultActionsService` (`@backstage/backend-defaults` 0.19) loads
the actions of each plugin listed in `backend.actions.pluginSources` from
`<plugin base URL>/.backstage/actions/v1/actions`, and invokes one with
`POST …/v1/actions/{id}/invoke` (the body is the input) or `…/v2/…` (the body
is `{input, secrets}`), expecting `{output}`. The plugin base URL comes from
`discovery.endpoints`, so pointing `pltf` there at pltf's own URL is all it
takes; the scaffolder then offers every action here as a template action.

Errors are answered in Backstage's error body (`{error: {name, message},
request, response: {statusCode}}`), which its `ResponseError` parses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from ..action import Action
from ..auth import Caller, TokenRegistry, token_from_authorization
from ..config import Settings
from ..errors import FieldError, PltfError
from ..runs import TERMINAL, RunEngine
from .backstage_auth import PLUGIN_ID, BackstageTokens, unauthorized
from .deps import BackstageTokensDep, EngineDep, SettingsDep, TokensDep
from .models import backstage_errors

# How long an invoke waits for its run: Backstage's fetch has no timeout of its own.
INVOKE_WAIT_SECONDS = 3600.0

# The registry's attributes, by what each action does to the world. An action not listed here is
# reported as Backstage's registry assumes of any action: not read-only, so possibly destructive.
READ_ONLY = frozenset({"service:policies"})
NOT_DESTRUCTIVE = frozenset(
    {
        "service:policies",
        # These add things (a workspace, a repository, an entity, a preview) and refuse to replace one.
        "cookiecutter:render",
        "repo:create",
        "catalog:register",
        "preview:create",
        "service:create",
    }
)

BACKSTAGE_ERROR_NAMES = {
    400: "InputError",
    401: "AuthenticationError",
    403: "NotAllowedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "InputError",
    503: "ServiceUnavailableError",
}


def registry_attributes(action_id: str) -> dict[str, bool]:
    read_only = action_id in READ_ONLY
    return {"readOnly": read_only, "destructive": action_id not in NOT_DESTRUCTIVE, "idempotent": read_only}


def registry_entry(action: Action[Any, Any]) -> dict[str, Any]:
    """One action, in the shape of Backstage's `ActionsServiceAction`."""
    action_id = action.id
    described = action.describe()
    return {
        "id": f"{PLUGIN_ID}:{action_id}",
        "name": action_id,
        "title": action_id,
        "description": described["description"],
        "pluginId": PLUGIN_ID,
        "attributes": registry_attributes(action_id),
        "examples": [{"title": example.description, "input": example.input} for example in action.examples],
        "schema": described["schema"],
    }


def error_message(error: PltfError) -> str:
    """pltf's message and the first field problems, as one line for a task log."""
    problems = "; ".join(f"{item.field}: {item.message}" for item in error.fields[:5])
    return f"{error.message} ({problems})" if problems else error.message


def backstage_error(request: Request, error: PltfError) -> JSONResponse:
    body = {
        "error": {"name": BACKSTAGE_ERROR_NAMES.get(error.status, "Error"), "message": error_message(error)},
        "request": {"method": request.method, "url": request.url.path},
        "response": {"statusCode": error.status},
    }
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, headers=headers)


router = APIRouter(tags=["backstage"])


@dataclass(frozen=True)
class RegistryCallers:
    """Who may call the registry: a pltf API token, or a Backstage plugin token (acting for a user or not)."""

    tokens: TokenRegistry
    backstage: BackstageTokens

    async def caller(self, authorization: str | None) -> Caller:
        token = token_from_authorization(authorization) or ""
        found = self.tokens.authenticate(token)
        if found is None and token:
            found = await anyio.to_thread.run_sync(self.backstage.caller, token)
        if found is None:
            raise unauthorized("a pltf API token or a Backstage plugin token is required (Authorization: Bearer …)")
        return found


async def _registry_callers(tokens: TokensDep, backstage: BackstageTokensDep) -> RegistryCallers:
    return RegistryCallers(tokens, backstage)


CallersDep = Annotated[RegistryCallers, Depends(_registry_callers)]


def action_id_of(registry_id: str) -> str:
    prefix, _, action_id = registry_id.partition(":")
    if prefix != PLUGIN_ID or not action_id:
        raise PltfError(f'Action "{registry_id}" not found', 404, "not_found")
    return action_id


@router.get("/.backstage/auth/v1/jwks.json", include_in_schema=False)
async def plugin_keys() -> dict[str, Any]:
    # Backstage asks a plugin for its keys before trusting tokens from it; pltf issues none.
    return {"keys": []}


@router.get("/.backstage/actions/v1/actions", responses=backstage_errors(401))
async def list_registry_actions(
    request: Request,
    callers: CallersDep,
    engine: EngineDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    try:
        await callers.caller(authorization)
    except PltfError as error:
        return backstage_error(request, error)
    found = list(engine.actions.values())

    def describe() -> list[dict[str, Any]]:
        return [registry_entry(action) for action in found]

    return JSONResponse({"actions": await anyio.to_thread.run_sync(describe)})


async def invoke(
    request: Request, caller: Caller, engine: RunEngine, settings: Settings, registry_id: str, wrapped: bool
) -> JSONResponse:
    """Runs the action with the body as its input (`wrapped`: the body is `{input, secrets}`) and answers
    `{output}` once the run has ended."""
    action = engine.action(action_id_of(registry_id))
    if not caller.may_run(action.id):
        raise PltfError(f"{caller.name} may not run {action.id}", 403, "forbidden")
    try:
        raw = await request.json()
    except ValueError:
        raise PltfError("the body is not valid JSON", 400, "bad_request") from None
    if wrapped:
        if not isinstance(raw, dict):
            raise PltfError("the body must be an object: {input, secrets}", 400, "bad_request")
        body = {"input": raw.get("input", {}), "secrets": raw.get("secrets") or {}}
    else:
        body = {"input": raw}
    prepared = await anyio.to_thread.run_sync(engine.prepare, action.id, body)
    run_id, _ = await engine.submit(prepared, caller)
    run = await engine.wait(run_id, INVOKE_WAIT_SECONDS)
    if run["status"] not in TERMINAL:
        raise PltfError(f"run {run_id} is still going; see {settings.server.base_url}/v1/runs/{run_id}", 504, "timeout")
    if run["status"] != "succeeded":
        error = run.get("error") or {}
        status = error.get("status")
        fields = [
            FieldError(str(item.get("field")), str(item.get("message")))
            for item in error.get("fields") or []
            if isinstance(item, dict)
        ]
        raise PltfError(
            f"{error.get('message') or 'the run ' + run['status']} (run {run_id})",
            status if isinstance(status, int) and 400 <= status <= 599 else 500,
            str(error.get("code") or run["status"]),
            fields,
        )
    return JSONResponse({"output": run.get("output") or {}})


def _add_invoke_route(version: str, wrapped: bool) -> None:
    """`POST /.backstage/actions/{version}/actions/{registry_id}/invoke`: v1's body is the input, v2's
    `{input, secrets}`."""

    async def invoke_route(
        registry_id: str,
        request: Request,
        callers: CallersDep,
        engine: EngineDep,
        settings: SettingsDep,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        try:
            caller = await callers.caller(authorization)
            return await invoke(request, caller, engine, settings, registry_id, wrapped)
        except PltfError as error:
            return backstage_error(request, error)

    router.add_api_route(
        f"/.backstage/actions/{version}/actions/{{registry_id}}/invoke",
        invoke_route,
        methods=["POST"],
        name=f"invoke_{version}",  # the operation id stays invoke_v1_… / invoke_v2_…
        responses=backstage_errors(400, 401, 403, 404, 408, 409, 413, 422, 504),
    )


_add_invoke_route("v1", wrapped=False)
_add_invoke_route("v2", wrapped=True)
