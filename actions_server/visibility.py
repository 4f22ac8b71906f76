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

from sqlalchemy import ColumnElement, Select, and_, select

from .auth import Caller
from .db import runs


def visible_runs(caller: Caller) -> ColumnElement[bool] | None:
    """The condition on `runs` rows this caller may see; None when it may see them all."""
    if caller.admin:
        return None
    if caller.team is not None:
        return runs.c.team == caller.team
    return and_(runs.c.caller == caller.name, runs.c.team.is_(None))


def visible_run_ids(caller: Caller) -> Select[tuple[str]] | None:
    """A subquery of the ids of the runs this caller may see (for rows a run made); None for all."""
    condition = visible_runs(caller)
    return None if condition is None else select(runs.c.id).where(condition)
