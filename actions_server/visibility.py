"""Which runs a caller may see, and so which workspaces and previews: each belongs to the team of the run that made it.

- An admin (a token with every action and no team: `PLTF_API_TOKEN`, the
  generated local token, or a token-file entry written so) sees everything.
- A token with a team sees what any token of that team made.
- A token with no team but restricted actions sees only what was made under its
  own name by a caller with no team.

What a caller may not see answers 404 as if it did not exist, so an id never
confirms that another team's run is there. Runs stored before runs had a team
have none: admins see them, and so does the token of the same name if it has
no team.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, select

from .auth import Caller
from .db import runs


def only_visible(query: Select[Any], viewer: Caller | None, made_by: ColumnElement[Any] | None = None) -> Select[Any]:
    """`query` limited to what `viewer` may see: rows of `runs`, or with `made_by` (a run id column) rows a
    run made. Without a viewer (the server's own reads) it is unchanged."""
    if viewer is None or viewer.is_admin:
        return query
    if viewer.team is not None:
        condition = runs.c.team == viewer.team
    else:
        condition = and_(runs.c.caller == viewer.name, runs.c.team.is_(None))
    if made_by is None:
        return query.where(condition)
    return query.where(made_by.in_(select(runs.c.id).where(condition)))
