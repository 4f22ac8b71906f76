"""Cursors of paged lists: opaque to clients, the next page's state as base64url JSON.

The catalog's cursor carries its query and an offset (Backstage's shape); runs
and previews page newest first by (created_at, id), so a row created while a
client pages never shifts the pages it has not read yet.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import Connection, Row, Select, Table, and_, or_

from .errors import FieldError, invalid_input

Item = TypeVar("Item")
MAX_CURSOR_TIME = 1e12  # Unix seconds: some 30,000 years
MAX_CURSOR_ID_LENGTH = 200


class Page(NamedTuple, Generic[Item]):
    items: list[Item]
    next_cursor: str | None


def encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, valid: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The state `encode_cursor` wrote; a 422 naming `cursor` for anything this server did not give out."""
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: thousands of nested brackets
        state = None
    if not isinstance(state, dict) or not valid(state):
        raise invalid_input("the cursor is not one this server gave out", [FieldError("cursor", "invalid cursor")])
    return state


def _newest_first_state(state: dict[str, Any]) -> bool:
    before = state.get("before")
    return (
        isinstance(before, list)
        and len(before) == 2
        and isinstance(before[0], int | float)
        and not isinstance(before[0], bool)
        # A time the database can compare (a huge integer overflows SQLite's), and an id it can hold.
        and math.isfinite(before[0])
        and abs(before[0]) < MAX_CURSOR_TIME
        and isinstance(before[1], str)
        and len(before[1]) <= MAX_CURSOR_ID_LENGTH
        and "\x00" not in before[1]
    )


def newest_first_page(
    connect: Callable[[], AbstractContextManager[Connection]],
    query: Select[Any],
    table: Table,
    shape: Callable[[Row[Any]], Item],
    *,
    cursor: str | None,
    limit: int,
) -> Page[Item]:
    """`limit` rows of `query`, newest first from `cursor` on, each made into an item by `shape`.

    `table` has the columns the order is by: `created_at`, and `id` for rows of the same instant."""
    created, key = table.c.created_at, table.c.id
    if cursor:
        created_at, last = decode_cursor(cursor, _newest_first_state)["before"]
        query = query.where(or_(created < created_at, and_(created == created_at, key < last)))
    # One row more than asked tells whether there is a next page.
    query = query.order_by(created.desc(), key.desc()).limit(limit + 1)
    with connect() as conn:
        rows = conn.execute(query).all()
    following = None
    if len(rows) > limit:
        last_row = rows[limit - 1]._mapping
        following = encode_cursor({"before": [last_row["created_at"], last_row["id"]]})
    return Page([shape(row) for row in rows[:limit]], following)
