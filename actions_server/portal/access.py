"""The portal's token check: the same rule as app.py's `Authed`, without importing app.py (which imports us)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from ..auth import Caller, TokenRegistry
from ..errors import PltfError


def _caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    scheme, _, token = (authorization or "").partition(" ")
    tokens: TokenRegistry = request.app.state.tokens
    found = tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise PltfError("a valid API token is required (Authorization: Bearer <token>)", 401, "unauthorized")
    return found


Authed = Annotated[Caller, Depends(_caller)]
