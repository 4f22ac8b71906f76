"""Who is calling: the bearer-token dependency every authenticated HTTP route shares."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from ..auth import Caller, TokenRegistry, token_from_authorization
from ..errors import PltfError


def bearer_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    tokens: TokenRegistry = request.app.state.tokens
    found = tokens.authenticate(token_from_authorization(authorization))
    if found is None:
        raise PltfError("a valid API token is required (Authorization: Bearer <token>)", 401, "unauthorized")
    return found


Authed = Annotated[Caller, Depends(bearer_caller)]
