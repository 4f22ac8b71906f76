"""Errors that carry the HTTP status and machine-readable body they become."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Bounds on an error body: hostile input (80,000 unknown keys, say) must not
# make the answer megabytes long. The first problems are enough to fix a form.
MAX_FIELD_ERRORS = 50
MAX_MESSAGE_LENGTH = 2000


@dataclass
class FieldError:
    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class PltfError(Exception):
    """An error with a message fit to show the person who clicked "Create"."""

    message: str
    status: int = 400
    code: str = "bad_request"
    fields: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        message = self.message
        if len(message) > MAX_MESSAGE_LENGTH:
            message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
        body: dict[str, Any] = {"code": self.code, "message": message, "status": self.status}
        if self.fields:
            shown = [f.to_json() for f in self.fields[:MAX_FIELD_ERRORS]]
            hidden = len(self.fields) - len(shown)
            if hidden:
                shown.append({"field": "(more)", "message": f"{hidden} more errors not shown"})
            body["fields"] = shown
        return body


def some_of(names: list[str], limit: int = 10) -> str:
    """The first few names, for a message: `a, b, c and 79997 more`."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def invalid_input(message: str, fields: list[FieldError] | None = None) -> PltfError:
    return PltfError(message, status=422, code="invalid_input", fields=fields or [])


def not_found(message: str) -> PltfError:
    return PltfError(message, status=404, code="not_found")


def conflict(message: str) -> PltfError:
    return PltfError(message, status=409, code="conflict")


def pydantic_field_errors(errors: list[Any], prefix: str = "") -> list[FieldError]:
    """pydantic's error list, as `field` paths a form can point at."""
    out = []
    for err in errors:
        loc = ".".join(str(part) for part in (prefix, *err.get("loc", ())) if part != "")
        message = err.get("msg", "invalid value")
        out.append(FieldError(loc or prefix or "(root)", message))
    return out
