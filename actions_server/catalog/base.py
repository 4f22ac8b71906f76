"""The one interface every software catalog implements.

Like httpx's transports: `catalog:register`, the read API under
`/api/catalog` and the `/catalog` pages all talk to `Catalog`, and each
backend is a small class behind it. `EmbeddedCatalog` (the default) keeps
entities in our own database; `BackstageCatalog` (with `PLTF_BACKSTAGE_URL`)
forwards to a Backstage catalog backend. Queries use Backstage's own filter
syntax and answer in its shapes, so the same request works on both:

    catalog = open_catalog(settings, engine, redactor)
    registration = catalog.register("http://127.0.0.1:8787/git/team-a/users-api/raw/main/catalog-info.yaml")
    # PltfError 409 (code "location_exists") if that target is registered already
    print(preferred_entity_ref(registration.entities))           # component:default/users-api
    entity = catalog.entity("component", "default", "users-api")  # None when there is none
    page = catalog.query(Query(filters=["kind=component,relations.ownedBy=group:default/team-a"], limit=20))
    print(page["totalItems"], page["pageInfo"].get("nextCursor"))
    catalog.refresh("component:default/users-api")               # re-reads the entity's location

Methods block (call them from a worker thread) and raise `PltfError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..auth import Caller

DEFAULT_LIMIT = 20
MAX_LIMIT = 500


@dataclass
class Registration:
    """Backstage's `POST /locations` answer: the location and the entities read from it."""

    location: dict[str, Any]
    entities: list[dict[str, Any]]
    exists: bool = False

    def to_json(self, dry_run: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"location": self.location, "entities": self.entities}
        if dry_run:
            body["exists"] = self.exists
        return body


@dataclass
class Query:
    """`GET /entities/by-query`'s parameters, as Backstage spells them.

    `filters`: each string is `key=value,key=value,key` (all must hold; a bare
    key means the field exists; one key given twice means either value), and
    an entity matches if any one string does. `fields` picks dotted paths of
    each item. `cursor` (from `pageInfo`) replaces filters and ordering.
    """

    filters: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    order_fields: list[str] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


class Catalog(ABC):
    kind: ClassVar[str]
    title: ClassVar[str]

    @abstractmethod
    def register(self, target: str, *, dry_run: bool = False, caller: Caller | None = None) -> Registration:
        """Registers a location (a URL). Raises 409 `location_exists` if it is registered already.

        With `dry_run`, reads and validates the location and returns its entities, storing nothing.
        With `caller`, a file of this server's forge that caller may not read is a 404, as if missing.
        """

    def entities_at(self, target: str, caller: Caller | None = None) -> list[dict[str, Any]]:
        """The entities a location holds, without storing anything."""
        return self.register(target, dry_run=True, caller=caller).entities

    @abstractmethod
    def refresh(self, entity_ref: str, caller: Caller | None = None) -> None:
        """Re-reads the location an entity came from, now. 404 if there is no such entity; 403 when a
        caller is given that did not register the location and is not an admin.

        With a caller, only what that caller may read: a location's file may have changed since it was
        registered, e.g. to a Location whose target is a private repository the caller cannot read.
        """

    @abstractmethod
    def entity(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One entity with its relations, or None."""

    @abstractmethod
    def query(self, query: Query) -> dict[str, Any]:
        """`{items, totalItems, pageInfo: {nextCursor?, prevCursor?}}`."""

    @abstractmethod
    def facets(self, facets: list[str], filters: list[str]) -> dict[str, Any]:
        """`{facets: {<key>: [{value, count}]}}` over the entities the filters match."""

    @abstractmethod
    def locations(self) -> list[dict[str, Any]]:
        """Every registered location, `{id, type, target}`."""

    @abstractmethod
    def location(self, location_id: str) -> dict[str, Any]:
        """One location, 404 if unknown."""

    @abstractmethod
    def delete_location(self, location_id: str, caller: Caller | None = None) -> None:
        """Unregisters a location and removes its entities.

        With a caller, only one it registered (or any, for an admin): another's is a 404, as a missing one.
        """

    def close(self) -> None:  # noqa: B027 - optional: only some catalogs hold connections
        """Releases connections."""


def preferred_entity_ref(entities: list[dict[str, Any]]) -> str | None:
    """The entity `catalog:register` reports, chosen as Backstage's does.

    A Component whose name is not `generated-*` first, then any entity not
    named `generated-*`, then the first.
    """

    def ref(entity: dict[str, Any]) -> str:
        metadata = entity["metadata"]
        return f"{entity['kind']}:{metadata.get('namespace') or 'default'}/{metadata['name']}".lower()

    def generated(entity: dict[str, Any]) -> bool:
        return str(entity["metadata"]["name"]).startswith("generated-")

    for candidates in (
        [e for e in entities if e.get("kind") == "Component" and not generated(e)],
        [e for e in entities if not generated(e)],
        entities,
    ):
        if candidates:
            return ref(candidates[0])
    return None
