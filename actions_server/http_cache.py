"""`ETag` and `Cache-Control` on GET responses, and `304 Not Modified` when the client already has the body.

The public pages are cheap to serve twice but not to serve to everyone at once:
a browser or proxy that revalidates with `If-None-Match` gets an empty 304, and
`max-age` lets it skip asking for a few seconds.
"""

from __future__ import annotations

import hashlib

from fastapi import Request, Response


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    offered = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in offered or etag in offered


def cached_response(
    request: Request, body: bytes, media_type: str, max_age: int, *, public: bool, etag: str | None = None
) -> Response:
    """`body` with its ETag and a max-age; a 304 without it when `If-None-Match` names the same ETag.

    `public` is for pages anyone may read; an answer that needed a token is
    `private`, so a shared proxy does not hand it to the next caller.
    """
    tag = etag or etag_of(body)
    headers = {"ETag": tag, "Cache-Control": f"{'public' if public else 'private'}, max-age={max_age}"}
    if _matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
