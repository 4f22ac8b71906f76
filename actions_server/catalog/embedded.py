"""The embedded catalog (the default): entities read from their locations into our own database.

Registering reads the location and everything it leads to (a Location
entity's targets, `$text`/`$json`/`$yaml` references), validates every
entity, and only then stores the lot in one transaction: an invalid entity
anywhere means nothing is stored. Refreshing re-reads a location and replaces
its entities the same way, keeping their uids.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any
from urllib.parse import urljoin

import yaml
from sqlalchemy import Select, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from ..auth import Caller
from ..config import Settings
from ..cursors import encode_cursor
from ..errors import FieldError, PltfError, conflict, invalid_input, not_found
from ..forges.permissions import team_ref
from .base import Catalog, Query, Registration
from .db import (
    MAX_REF_LENGTH,
    MAX_TARGET_LENGTH,
    catalog_entities,
    catalog_locations,
    catalog_relations,
    catalog_search,
)
from .model import EntityRef, RefError, load_documents, parse_ref, relations_of, validate_entity, with_defaults
from .query import (
    Condition,
    decode_query_cursor,
    parse_filters,
    parse_order,
    search_rows,
    select_fields,
)
from .reader import LocationError, LocationReader, SubstitutionError

MAX_FILES_PER_LOCATION = 200
MAX_ENTITIES_PER_LOCATION = 1000
MANAGED_BY_LOCATION = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"


class EmbeddedCatalog(Catalog):
    kind = "embedded"
    title = "the embedded catalog"

    def __init__(self, settings: Settings, engine: Engine, reader: LocationReader | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.reader = reader or LocationReader(settings)

    def close(self) -> None:
        self.reader.close()

    # -- reading a location ---------------------------------------------------

    def read_location(self, target: str, caller: Caller | None = None) -> list[dict[str, Any]]:
        """Every entity the location leads to, validated and annotated; raises on the first bad file.

        With a caller, only what that caller may read (see `LocationReader.for_caller`).
        """
        reader = self.reader if caller is None else self.reader.for_caller(caller)
        if len(target) > MAX_TARGET_LENGTH:
            raise invalid_input(
                f"a location is at most {MAX_TARGET_LENGTH} characters", [FieldError("target", "too long")]
            )
        reader.check(target)
        queue: list[tuple[str, bool]] = [(target, True)]
        seen: set[str] = set()
        entities: dict[str, dict[str, Any]] = {}
        while queue:
            url, required = queue.pop(0)
            for file_url in reader.expand(url):
                if file_url in seen:
                    continue
                seen.add(file_url)
                if len(seen) > MAX_FILES_PER_LOCATION:
                    raise invalid_input(f"{target} leads to more than {MAX_FILES_PER_LOCATION} files")
                for entity in self._read_file(reader, file_url, target, required and file_url == url):
                    ref = str(EntityRef.of(entity))
                    if ref in entities:
                        raise invalid_input(
                            f"{ref} is defined twice under {target}", [FieldError("metadata.name", f"{ref} repeats")]
                        )
                    entities[ref] = entity
                    if len(entities) > MAX_ENTITIES_PER_LOCATION:
                        raise invalid_input(f"{target} holds more than {MAX_ENTITIES_PER_LOCATION} entities")
                    if entity["kind"] == "Location":
                        queue.extend(self._location_targets(reader, entity, file_url))
        return list(entities.values())

    def _read_file(self, reader: LocationReader, url: str, origin: str, required: bool) -> list[dict[str, Any]]:
        try:
            text = reader.read(url)
        except LocationError as exc:
            if exc.status == 404 and not required:
                return []
            raise
        try:
            documents = load_documents(text)
        except yaml.YAMLError as exc:
            raise invalid_input(f"{url} is not valid YAML: {exc}".replace("\n", " ")) from None
        out = []
        for number, raw in enumerate(documents, start=1):
            where = f"{url}, document {number}"
            if isinstance(raw, dict) and isinstance(raw.get("metadata"), dict):
                where += f" ({raw.get('kind')} {raw['metadata'].get('name')})"
            try:
                raw = reader.substitute(raw, url)
            except SubstitutionError as exc:
                raise invalid_input(
                    f"{where}: {exc.field}: {exc.message}", [FieldError(exc.field, exc.message)]
                ) from None
            errors = validate_entity(raw)
            if not errors:
                entity = with_defaults(raw)
                errors = relations_of(entity).errors + _long_refs(entity)
            if errors:
                summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
                raise invalid_input(f"{where} is not a valid entity: {summary}", errors)
            annotations = entity["metadata"].setdefault("annotations", {})
            for key, value in _location_annotations(url, origin, reader).items():
                if key in (MANAGED_BY_LOCATION, MANAGED_BY_ORIGIN):
                    annotations[key] = value
                else:
                    annotations.setdefault(key, value)
            out.append(entity)
        return out

    def _location_targets(
        self, reader: LocationReader, entity: dict[str, Any], file_url: str
    ) -> list[tuple[str, bool]]:
        spec = entity["spec"]
        required = spec.get("presence", "required") == "required"
        found = []
        targets = [("spec.target", spec["target"])] if "target" in spec else []
        targets += [(f"spec.targets.{n}", t) for n, t in enumerate(spec.get("targets", []))]
        for field_name, target in targets:
            try:
                found.append((reader.resolve(file_url, target, same_repository=False), required))
            except LocationError as exc:
                ref = EntityRef.of(entity)
                raise invalid_input(
                    f"Location {ref.name} in {file_url}: {exc.message}", [FieldError(field_name, exc.message)]
                ) from None
        return found

    # -- registering ------------------------------------------------------------

    def register(self, target: str, *, dry_run: bool = False, caller: Caller | None = None) -> Registration:
        target = self.reader.canonical(target)
        entities = self.read_location(target, caller)
        location = {"id": str(uuid.uuid4()), "type": self.reader.location_type(target), "target": target}
        with self.engine.connect() as conn:
            existing = (
                conn.execute(select(catalog_locations).where(catalog_locations.c.target == target)).mappings().first()
            )
        if dry_run:
            if existing is not None:
                location = _location_json(existing)
            self._check_claims(entities, location["id"] if existing is not None else None)
            return Registration(location, entities, exists=existing is not None)
        if existing is not None:
            raise PltfError(f"the location {target} is registered already", 409, "location_exists")
        now = time.time()
        # Made before the transaction: from its first insert it holds the database's write lock.
        rows = self._rows(location["id"], entities, {}, now)
        try:
            with self.engine.begin() as conn:
                self._check_claims(entities, None, conn)
                conn.execute(
                    insert(catalog_locations).values(**location, **_owner_of(caller), created_at=now, refreshed_at=now)
                )
                self._insert(conn, rows)
        except IntegrityError:
            # Another request (maybe another replica) registered it between our check and our insert.
            raise PltfError(f"the location {target} is registered already", 409, "location_exists") from None
        return Registration(
            location, [self._stitch_one(e) for e in self._by_refs([str(EntityRef.of(e)) for e in entities])]
        )

    def _check_claims(
        self, entities: list[dict[str, Any]], location_id: str | None, conn: Connection | None = None
    ) -> None:
        refs = [str(EntityRef.of(e)) for e in entities]
        if not refs:
            return
        query = (
            select(catalog_entities.c.ref, catalog_locations.c.target)
            .join(catalog_locations, catalog_locations.c.id == catalog_entities.c.location_id)
            .where(catalog_entities.c.ref.in_(refs))
        )
        if location_id is not None:
            query = query.where(catalog_entities.c.location_id != location_id)
        if conn is None:
            with self.engine.connect() as own:
                claimed = own.execute(query).first()
        else:
            claimed = conn.execute(query).first()
        if claimed is not None:
            raise conflict(f"{claimed.ref} is registered already, from {claimed.target}")

    @staticmethod
    def _rows(
        location_id: str, entities: list[dict[str, Any]], uids: dict[str, str], now: float
    ) -> list[tuple[Table, list[dict[str, Any]]]]:
        """The rows of a location's entities: the entities, their relations and their search values."""
        entity_rows, relation_rows, search_values = [], [], []
        for entity in entities:
            ref = EntityRef.of(entity)
            key = str(ref)
            body = json.dumps(entity, sort_keys=True)
            entity_rows.append(
                {
                    "ref": key,
                    "uid": uids.get(key) or str(uuid.uuid4()),
                    "kind": ref.kind,
                    "namespace": ref.namespace,
                    "name": ref.name,
                    "location_id": location_id,
                    "entity": entity,
                    "etag": hashlib.sha256(body.encode()).hexdigest()[:40],
                    "updated_at": now,
                }
            )
            for relation in relations_of(entity).relations:
                relation_rows.append(
                    {
                        "originating_ref": key,
                        "source_ref": relation.source,
                        "type": relation.type,
                        "target_ref": relation.target,
                    }
                )
            search_values += [
                {"entity_ref": key, "key": k, "value": v, "original_value": o} for k, v, o in search_rows(entity)
            ]
        return [(catalog_entities, entity_rows), (catalog_relations, relation_rows), (catalog_search, search_values)]

    @staticmethod
    def _insert(conn: Connection, tables: list[tuple[Table, list[dict[str, Any]]]]) -> None:
        for table, rows in tables:
            if rows:
                conn.execute(insert(table), rows)

    def _remove_entities(self, conn: Connection, location_id: str) -> dict[str, str]:
        """Deletes a location's entities and what hangs off them; returns their uids by ref."""
        rows = conn.execute(
            select(catalog_entities.c.ref, catalog_entities.c.uid).where(catalog_entities.c.location_id == location_id)
        ).all()
        refs = [row.ref for row in rows]
        if refs:
            conn.execute(delete(catalog_relations).where(catalog_relations.c.originating_ref.in_(refs)))
            conn.execute(delete(catalog_search).where(catalog_search.c.entity_ref.in_(refs)))
            conn.execute(delete(catalog_entities).where(catalog_entities.c.location_id == location_id))
        return {row.ref: row.uid for row in rows}

    def refresh(self, entity_ref: str, caller: Caller | None = None) -> None:
        ref = _parse_ref_or_422(entity_ref, "entityRef")
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(catalog_locations)
                    .join(catalog_entities, catalog_entities.c.location_id == catalog_locations.c.id)
                    .where(catalog_entities.c.ref == str(ref))
                )
                .mappings()
                .first()
            )
        if row is None:
            raise not_found(f"no entity {ref} in the catalog")
        if not _may_change(caller, row):
            # The entity is public, so a 404 would hide nothing; say why instead.
            raise PltfError(
                f"only the team that registered {row['target']}, or an admin, may refresh it", 403, "forbidden"
            )
        self.refresh_location(row["id"], caller)

    def refresh_location(self, location_id: str, caller: Caller | None = None) -> list[dict[str, Any]]:
        """Re-reads a location and replaces its entities at once; on any error nothing changes."""
        target = self.location(location_id)["target"]
        entities = self.read_location(target, caller)
        now = time.time()
        with self.engine.begin() as conn:
            self._check_claims(entities, location_id, conn)
            uids = self._remove_entities(conn, location_id)
            self._insert(conn, self._rows(location_id, entities, uids, now))
            conn.execute(
                update(catalog_locations).where(catalog_locations.c.id == location_id).values(refreshed_at=now)
            )
        return entities

    # -- locations ----------------------------------------------------------------

    def locations(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(catalog_locations).order_by(catalog_locations.c.created_at)).mappings().all()
        return [_location_json(row) for row in rows]

    def location(self, location_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(catalog_locations).where(catalog_locations.c.id == location_id)).mappings().first()
            )
        if row is None:
            raise not_found(f"no location {location_id}")
        return _location_json(row)

    def delete_location(self, location_id: str, caller: Caller | None = None) -> None:
        with self.engine.begin() as conn:
            row = (
                conn.execute(select(catalog_locations).where(catalog_locations.c.id == location_id)).mappings().first()
            )
            # Another team's location answers as a missing one, so the id confirms nothing.
            if row is None or not _may_change(caller, row):
                raise not_found(f"no location {location_id}")
            self._remove_entities(conn, location_id)
            conn.execute(delete(catalog_locations).where(catalog_locations.c.id == location_id))

    # -- reading entities --------------------------------------------------------------

    def entity(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._by_refs([str(EntityRef(kind, namespace, name))])
        return self._stitch_one(found[0]) if found else None

    def _by_refs(self, refs: list[str]) -> list[dict[str, Any]]:
        if not refs:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(select(catalog_entities).where(catalog_entities.c.ref.in_(refs))).mappings().all()
        by_ref = {row["ref"]: dict(row) for row in rows}
        return [by_ref[ref] for ref in refs if ref in by_ref]

    def _stitch_one(self, row: dict[str, Any]) -> dict[str, Any]:
        return self._stitch([row])[0]

    def _stitch(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entities as Backstage serves them: with uid, etag and relations."""
        refs = [row["ref"] for row in rows]
        relations: dict[str, list[dict[str, str]]] = {ref: [] for ref in refs}
        if refs:
            with self.engine.connect() as conn:
                found = conn.execute(
                    select(catalog_relations.c.source_ref, catalog_relations.c.type, catalog_relations.c.target_ref)
                    .where(catalog_relations.c.source_ref.in_(refs))
                    .distinct()
                    .order_by(catalog_relations.c.type, catalog_relations.c.target_ref)
                ).all()
            for source, relation_type, target in found:
                relations[source].append({"type": relation_type, "targetRef": target})
        out = []
        for row in rows:
            entity = dict(row["entity"])
            entity["metadata"] = {**entity["metadata"], "uid": row["uid"], "etag": row["etag"]}
            entity["relations"] = relations[row["ref"]]
            out.append(entity)
        return out

    def _matching(self, filters: list[str]) -> ColumnElement[bool] | None:
        groups = parse_filters(filters)
        if not groups:
            return None
        return or_(*[and_(*[_condition(c) for c in group]) for group in groups])

    def query(self, query: Query) -> dict[str, Any]:
        if query.cursor:
            state = decode_query_cursor(query.cursor)
        else:
            state = {"filters": query.filters, "orderFields": query.order_fields, "offset": 0}
        where = self._matching(state["filters"])
        order = parse_order(state["orderFields"])
        offset, limit = state["offset"], query.limit
        ref_query: Select[Any] = select(catalog_entities.c.ref)
        count_query: Select[Any] = select(func.count()).select_from(catalog_entities)
        if where is not None:
            ref_query, count_query = ref_query.where(where), count_query.where(where)
        for n, (key, descending) in enumerate(order):
            # One grouped pass over the field's values, joined, rather than a lookup per entity.
            values = (
                select(catalog_search.c.entity_ref, func.min(catalog_search.c.value).label("value"))
                .where(catalog_search.c.key == key)
                .group_by(catalog_search.c.entity_ref)
                .subquery(f"order_{n}")
            )
            ref_query = ref_query.outerjoin(values, values.c.entity_ref == catalog_entities.c.ref)
            value = values.c.value
            ref_query = ref_query.order_by(value.desc().nulls_last() if descending else value.asc().nulls_last())
        ref_query = ref_query.order_by(catalog_entities.c.ref).offset(offset).limit(limit)
        with self.engine.connect() as conn:
            total = int(conn.execute(count_query).scalar_one())
            refs = [row.ref for row in conn.execute(ref_query)]
        items = [select_fields(e, query.fields) for e in self._stitch(self._by_refs(refs))]
        page_info: dict[str, str] = {}
        if offset + limit < total:
            page_info["nextCursor"] = encode_cursor({**state, "offset": offset + limit})
        if offset > 0:
            page_info["prevCursor"] = encode_cursor({**state, "offset": max(0, offset - limit)})
        return {"items": items, "totalItems": total, "pageInfo": page_info}

    def facets(self, facets: list[str], filters: list[str]) -> dict[str, Any]:
        where = self._matching(filters)
        matching = select(catalog_entities.c.ref)
        if where is not None:
            matching = matching.where(where)
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for facet in facets:
                key = facet.lower()
                if key.startswith("relations."):
                    column = catalog_relations.c.target_ref
                    counted = (
                        select(column, func.count(func.distinct(catalog_relations.c.source_ref)))
                        .where(
                            func.lower(catalog_relations.c.type) == key.removeprefix("relations."),
                            catalog_relations.c.source_ref.in_(matching),
                        )
                        .group_by(column)
                    )
                else:
                    column = catalog_search.c.original_value
                    counted = (
                        select(column, func.count(func.distinct(catalog_search.c.entity_ref)))
                        .where(
                            catalog_search.c.key == key,
                            column.is_not(None),
                            catalog_search.c.entity_ref.in_(matching),
                        )
                        .group_by(column)
                    )
                rows = conn.execute(counted).all()
                out[facet] = sorted(({"value": v, "count": int(n)} for v, n in rows), key=lambda f: str(f["value"]))
        return {"facets": out}


def _condition(condition: Condition) -> ColumnElement[bool]:
    # Uncorrelated `ref IN (subquery)`: the database computes each condition once,
    # rather than once per entity as a correlated EXISTS would.
    if condition.key.startswith("relations."):
        relation = select(catalog_relations.c.source_ref).where(
            func.lower(catalog_relations.c.type) == condition.key.removeprefix("relations.")
        )
        if condition.values:
            relation = relation.where(catalog_relations.c.target_ref.in_(condition.values))
        return catalog_entities.c.ref.in_(relation)
    found = select(catalog_search.c.entity_ref).where(catalog_search.c.key == condition.key)
    if condition.values:
        found = found.where(catalog_search.c.value.in_(condition.values))
    return catalog_entities.c.ref.in_(found)


def _owner_of(caller: Caller | None) -> dict[str, str | None]:
    """The owner columns of a location `caller` registers (none for the server's own registrations)."""
    if caller is None or caller.is_admin:
        return {"team": None, "caller": None}
    if caller.team is not None:
        return {"team": team_ref(caller.team), "caller": caller.name}
    return {"team": None, "caller": caller.name}


def _may_change(caller: Caller | None, location: Any) -> bool:
    """Whether `caller` may delete or refresh the location: its team (or, without one, the same token),
    and admins. Locations with no owner recorded are the admins' alone."""
    if caller is None or caller.is_admin:
        return True
    if caller.team is not None:
        return location["team"] is not None and location["team"] == team_ref(caller.team)
    return location["team"] is None and location["caller"] is not None and location["caller"] == caller.name


def _location_json(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "type": row["type"], "target": row["target"]}


def _parse_ref_or_422(text: str, field_name: str) -> EntityRef:
    try:
        return parse_ref(text)
    except RefError as exc:
        raise invalid_input(str(exc), [FieldError(field_name, str(exc))]) from None


def _long_refs(entity: dict[str, Any]) -> list[FieldError]:
    return [
        FieldError("spec", f"the ref {relation.target[:80]}… is longer than {MAX_REF_LENGTH} characters")
        for relation in relations_of(entity).relations
        if len(relation.target) > MAX_REF_LENGTH or len(relation.source) > MAX_REF_LENGTH
    ]


def _location_annotations(url: str, origin: str, reader: LocationReader) -> dict[str, str]:
    """What Backstage's AnnotateLocationEntityProcessor adds: where the entity came from, where to view it."""
    kind = reader.location_type(url)

    def as_location(u: str) -> str:
        return f"file:{reader.file_path(u)}" if u.startswith("file:") else f"url:{u}"

    annotations = {MANAGED_BY_LOCATION: as_location(url), MANAGED_BY_ORIGIN: as_location(origin)}
    if kind == "url":
        view, browse = url, url
        if url.startswith(reader.forge_prefix):
            # Our forge: the raw file to view it, the tree to browse around it.
            forge_file = reader.forge_file(url)
            repo = f"{reader.forge_prefix}{forge_file.owner}/{forge_file.name}"
            view = f"{repo}/raw/{forge_file.ref}/{forge_file.path}"
            browse = f"{repo}/tree/{forge_file.ref}/{forge_file.path}"
        annotations["backstage.io/view-url"] = view
        annotations["backstage.io/source-location"] = "url:" + urljoin(browse, "./")
    return annotations
