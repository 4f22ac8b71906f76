"""pltf as plugin `pltf` of Backstage's actions registry, at pltf's root.

Backstage's `DefaultActionsService` (`@backstage/backend-defaults` 0.19) loads
the actions of each plugin listed in `backend.actions.pluginSources` from
`<plugin base URL>/.backstage/actions/v1/actions`, and invokes one with
`POST …/v1/actions/{id}/invoke` (the body is the input) or `…/v2/…` (the body
is `{input, secrets}`), expecting `{output}`. The plugin base URL comes from
`discovery.endpoints`, so pointing `pltf` there at pltf's own URL is all it
takes; the scaffolder then offers every action here as a template action.

Backstage authenticates each call with a plugin token: an ES256 JWT with
header `typ: vnd.backstage.plugin`, claims `sub` (the calling plugin), `aud`
(`pltf`), `iat`, `exp` and, when it acts for a user, `obo`: a limited user
token (`typ: vnd.backstage.limited-user`, `sub` the user's entity ref).
The calling plugin's keys are at `<backstage>/api/<sub>/.backstage/auth/v1/jwks.json`,
the user tokens' at `<backstage>/api/auth/.well-known/jwks.json` (see
`PluginTokenHandler` and `UserTokenHandler` there). pltf tokens work too.

Errors are answered in Backstage's error body (`{error: {name, message},
request, response: {statusCode}}`), which its `ResponseError` parses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.error import HTTPError

import anyio
import jwt
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from .action import Action
from .api.models import backstage_errors
from .auth import Caller, TokenRegistry, token_from_authorization
from .catalog.model import RefError, parse_ref
from .config import Settings
from .errors import FieldError, PltfError
from .runs import TERMINAL, RunEngine
from .services import Services

PLUGIN_ID = "pltf"
PLUGIN_TOKEN_TYPE = "vnd.backstage.plugin"  # noqa: S105 - a JWT type, not a secret
USER_TOKEN_TYPES = frozenset({"vnd.backstage.limited-user", "vnd.backstage.user"})
# As Backstage's own check: the subject becomes part of the key URL, so nothing else may pass.
PLUGIN_ID_PATTERN = re.compile(r"^[a-z0-9_-]{1,100}$", re.IGNORECASE)
# Backstage signs with ES256 by default; only asymmetric algorithms, so a published key cannot sign.
ALGORITHMS = ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"]
MAX_KEY_SETS = 100
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


def registry_entry(action: Action[Any, Any], services: Services) -> dict[str, Any]:
    """One action, in the shape of Backstage's `ActionsServiceAction`."""
    action_id = action.id
    described = action.describe(services)
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


def user_token_type(token: str) -> str | None:
    try:
        kind = jwt.get_unverified_header(token).get("typ")
    except jwt.PyJWTError:
        return None
    return kind if isinstance(kind, str) else None


def unauthorized(message: str) -> PltfError:
    return PltfError(message, 401, "unauthorized")


class BackstageTokens:
    """Verifies Backstage plugin tokens against the keys Backstage publishes, and names the caller."""

    def __init__(self, settings: Settings, services: Services) -> None:
        base = settings.catalog.backstage_auth_url or settings.catalog.backstage_url
        self.base_url = base.rstrip("/") if base else None
        self.actions = tuple(settings.catalog.backstage_actions)
        self.services = services
        self.timeout = settings.catalog.catalog_read_timeout_seconds
        self._keys: dict[str, jwt.PyJWKClient] = {}

    def _key_set(self, url: str) -> jwt.PyJWKClient:
        if url not in self._keys:
            # Each plugin a token names has its own URL: bounded, as Backstage bounds its own key stores.
            if len(self._keys) >= MAX_KEY_SETS:
                self._keys.pop(next(iter(self._keys)))
            self._keys[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=int(self.timeout))
        return self._keys[url]

    def _verify(self, token: str, url: str, **options: Any) -> dict[str, Any]:
        try:
            key = self._key_set(url).get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, **options)
        except jwt.PyJWKClientConnectionError as exc:
            if isinstance(exc.__cause__, HTTPError) and exc.__cause__.code < 500:
                raise unauthorized(f"Backstage publishes no keys at {url}") from None
            raise PltfError(f"cannot read Backstage's keys at {url}", 503, "backstage_unavailable") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"the Backstage token does not verify: {exc}") from None
        return dict(claims)

    def caller(self, token: str) -> Caller | None:
        """The caller a Backstage plugin token stands for; None when it is not one."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if header.get("typ") != PLUGIN_TOKEN_TYPE or self.base_url is None:
            return None
        plugin = unverified.get("sub")
        if not isinstance(plugin, str) or not PLUGIN_ID_PATTERN.fullmatch(plugin):
            raise unauthorized("the Backstage plugin token names no valid plugin")
        claims = self._verify(
            token,
            f"{self.base_url}/api/{plugin}/.backstage/auth/v1/jwks.json",
            audience=PLUGIN_ID,
            options={"require": ["iat", "exp", "sub", "aud"]},
        )
        on_behalf_of = claims.get("obo")
        if on_behalf_of is None:
            return Caller(f"backstage:plugin:{plugin}", self.actions)
        if not isinstance(on_behalf_of, str) or user_token_type(on_behalf_of) not in USER_TOKEN_TYPES:
            raise unauthorized("the Backstage plugin token's obo claim is not a user token")
        user = self._verify(
            on_behalf_of,
            f"{self.base_url}/api/auth/.well-known/jwks.json",
            options={"require": ["iat", "exp", "sub"], "verify_aud": False},
        )
        return self.user_caller(str(user["sub"]))

    def user_caller(self, user_ref: str) -> Caller:
        """A user acts for the first group the catalog has them in: that group's runs, repositories, previews."""
        try:
            ref = parse_ref(user_ref, "user")
        except RefError:
            raise unauthorized(f"the Backstage user token names no user ({user_ref!r})") from None
        entity = self.services.catalog.entity("user", ref.namespace, ref.name)
        groups = [
            relation.get("targetRef")
            for relation in (entity or {}).get("relations", [])
            if relation.get("type") == "memberOf" and relation.get("targetRef")
        ] or [
            str(parse_ref(group, "group", ref.namespace))
            for group in (entity or {}).get("spec", {}).get("memberOf", [])
        ]
        if not groups:
            raise PltfError(
                f"{ref} is in no group of the catalog, so pltf cannot tell which team it acts for",
                403,
                "forbidden",
            )
        return Caller(f"backstage:{ref}", self.actions, str(groups[0]).lower())


def backstage_actions_router(
    settings: Settings, engine: Callable[[], RunEngine], services: Callable[[], Services]
) -> APIRouter:
    router = APIRouter(tags=["backstage"])
    verifier: dict[str, BackstageTokens] = {}

    async def authenticate(request: Request, authorization: str | None) -> Caller:
        token = token_from_authorization(authorization) or ""
        tokens: TokenRegistry = request.app.state.tokens
        found = tokens.authenticate(token)
        if found is None and token:
            if "tokens" not in verifier:
                verifier["tokens"] = BackstageTokens(settings, services())
            found = await anyio.to_thread.run_sync(verifier["tokens"].caller, token)
        if found is None:
            raise unauthorized("a pltf API token or a Backstage plugin token is required (Authorization: Bearer …)")
        return found

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
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        try:
            await authenticate(request, authorization)
        except PltfError as error:
            return backstage_error(request, error)
        found = list(engine().actions.values())

        def describe() -> list[dict[str, Any]]:
            return [registry_entry(action, services()) for action in found]

        return JSONResponse({"actions": await anyio.to_thread.run_sync(describe)})

    async def invoke(request: Request, registry_id: str, authorization: str | None, wrapped: bool) -> JSONResponse:
        try:
            caller = await authenticate(request, authorization)
            run_engine = engine()
            action = run_engine.action(action_id_of(registry_id))
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
            prepared = await anyio.to_thread.run_sync(run_engine.prepare, action.id, body)
            run_id, _ = await run_engine.submit(prepared, caller)
            run = await run_engine.wait(run_id, INVOKE_WAIT_SECONDS)
            if run["status"] not in TERMINAL:
                raise PltfError(
                    f"run {run_id} is still going; see {settings.server.base_url}/v1/runs/{run_id}", 504, "timeout"
                )
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
        except PltfError as error:
            return backstage_error(request, error)
        return JSONResponse({"output": run.get("output") or {}})

    @router.post(
        "/.backstage/actions/v1/actions/{registry_id}/invoke",
        responses=backstage_errors(400, 401, 403, 404, 408, 409, 413, 422, 504),
    )
    async def invoke_v1(
        registry_id: str, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        return await invoke(request, registry_id, authorization, wrapped=False)

    @router.post(
        "/.backstage/actions/v2/actions/{registry_id}/invoke",
        responses=backstage_errors(400, 401, 403, 404, 408, 409, 413, 422, 504),
    )
    async def invoke_v2(
        registry_id: str, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        return await invoke(request, registry_id, authorization, wrapped=True)

    return router
