"""Errors that carry the HTTP status and machine-readable body they become."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
        body: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.fields:
            body["fields"] = [f.to_json() for f in self.fields]
        return body


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
