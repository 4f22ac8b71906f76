"""Backstage's query language for entities: filters, field selection, cursors, search rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cursors import decode_cursor
from ..errors import FieldError, invalid_input

MAX_VALUE_LENGTH = 200
MAX_FILTERS = 50


@dataclass(frozen=True)
class Condition:
    """One key of one filter: the field exists (`values` empty) or has one of `values` (lowercase)."""

    key: str
    values: tuple[str, ...]


def parse_filters(filters: list[str]) -> list[list[Condition]]:
    """`["kind=component,spec.type=service", "kind=api"]` → OR of ANDs, keys and values lowercased."""
    if len(filters) > MAX_FILTERS:
        raise invalid_input(f"at most {MAX_FILTERS} filters", [FieldError("filter", "too many filters")])
    parsed = []
    for text in filters:
        by_key: dict[str, list[str]] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not key:
                if part.strip():
                    raise invalid_input(f"filter {text!r}: {part!r} has no key", [FieldError("filter", "empty key")])
                continue
            values = by_key.setdefault(key, [])
            if sep:
                values.append(value.strip().lower())
        if by_key:
            parsed.append([Condition(key, tuple(values)) for key, values in by_key.items()])
    return parsed


def parse_order(order_fields: list[str]) -> list[tuple[str, bool]]:
    """`["metadata.name,desc"]` → [("metadata.name", descending)]."""
    out = []
    for text in order_fields:
        key, _, direction = text.partition(",")
        direction = direction.strip().lower() or "asc"
        if not key.strip() or direction not in ("asc", "desc"):
            raise invalid_input(
                f"orderField {text!r} must be <field>,asc or <field>,desc", [FieldError("orderField", "invalid")]
            )
        out.append((key.strip().lower(), direction == "desc"))
    return out


def _query_state(state: dict[str, Any]) -> bool:
    return (
        isinstance(state.get("filters"), list)
        and all(isinstance(f, str) for f in state["filters"])
        and isinstance(state.get("orderFields"), list)
        and all(isinstance(f, str) for f in state["orderFields"])
        and isinstance(state.get("offset"), int)
        and state["offset"] >= 0
    )


def decode_query_cursor(cursor: str) -> dict[str, Any]:
    """The filters, order and offset a catalog cursor carries."""
    return decode_cursor(cursor, _query_state)


def select_fields(entity: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Only the dotted paths asked for (`metadata.name`, `kind`), as Backstage's `fields` does."""
    if not fields:
        return entity
    out: dict[str, Any] = {}
    for path in fields:
        parts = path.split(".")
        value: Any = entity
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
    return out


def split_list_params(values: list[str]) -> list[str]:
    """`?fields=a,b&fields=c` → [a, b, c]."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def search_rows(entity: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(key, lowercase value, original value) for every leaf of the entity, as Backstage indexes it.

    List items share their list's key. Values too long to index keep the key
    with no value, so `filter=spec.definition` (exists) still works.
    """
    rows: list[tuple[str, str | None, str | None]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            for item in value:
                walk(prefix, item)
        elif value is None:
            rows.append((prefix.lower(), None, None))
        else:
            text = str(value).lower() if not isinstance(value, bool) else ("true" if value else "false")
            original = str(value) if not isinstance(value, bool) else text
            if len(text) > MAX_VALUE_LENGTH:
                rows.append((prefix.lower(), None, None))
            else:
                rows.append((prefix.lower(), text, original))

    walk("", {k: v for k, v in entity.items() if k != "relations"})
    return [row for row in dict.fromkeys(rows) if len(row[0]) <= MAX_VALUE_LENGTH]
