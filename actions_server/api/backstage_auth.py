"""Who a Backstage plugin token stands for: pltf as plugin `pltf` of Backstage's actions registry.

Backstage authenticates each call with a plugin token: an ES256 JWT with
header `typ: vnd.backstage.plugin`, claims `sub` (the calling plugin), `aud`
(`pltf`), `iat`, `exp` and, when it acts for a user, `obo`: a limited user
token (`typ: vnd.backstage.limited-user`, `sub` the user's entity ref).
The calling plugin's keys are at `<backstage>/api/<sub>/.backstage/auth/v1/jwks.json`,
the user tokens' at `<backstage>/api/auth/.well-known/jwks.json` (see
`PluginTokenHandler` and `UserTokenHandler` there). pltf tokens work too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.error import HTTPError

import jwt

from ..auth import Caller
from ..catalog import Catalog
from ..catalog.model import RefError, parse_ref
from ..config import Settings
from ..errors import PltfError

PLUGIN_ID = "pltf"
PLUGIN_TOKEN_TYPE = "vnd.backstage.plugin"  # noqa: S105 - a JWT type, not a secret
USER_TOKEN_TYPES = frozenset({"vnd.backstage.limited-user", "vnd.backstage.user"})
# As Backstage's own check: the subject becomes part of the key URL, so nothing else may pass.
PLUGIN_ID_PATTERN = re.compile(r"^[a-z0-9_-]{1,100}$", re.IGNORECASE)
# Backstage signs with ES256 by default; only asymmetric algorithms, so a published key cannot sign.
ALGORITHMS = ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"]
MAX_KEY_SETS = 100


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

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        base = settings.catalog.backstage_auth_url or settings.catalog.backstage_url
        self.base_url = base.rstrip("/") if base else None
        self.actions = tuple(settings.catalog.backstage_actions)
        self.catalog = catalog
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
        entity = self.catalog.entity("user", ref.namespace, ref.name)
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
