"""A Backstage catalog backend as the catalog (`PLTF_BACKSTAGE_URL` and `PLTF_BACKSTAGE_TOKEN`).

Calls Backstage's catalog REST API (`/api/catalog`) with a static token,
which Backstage accepts when configured under
`backend.auth.externalAccess: [{type: static, options: {token, subject}}]`.

Registering is `POST /locations` with `{type: url, target}`; 409 means the
location is registered already. Backstage ingests entities asynchronously,
so the entities of a location are found, as its own `catalog:register` does,
with a dry run (`?dryRun=true`), and if that is refused, by reading the
catalog file ourselves and asking `GET /entities/by-name/...` for each.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from ..auth import Caller
from ..config import Settings
from ..errors import PltfError, invalid_input, not_found
from ..redact import Redactor
from .base import Catalog, Query, Registration
from .model import DEFAULT_NAMESPACE, load_documents
from .reader import LocationError, LocationReader


class BackstageCatalog(Catalog):
    kind = "backstage"
    title = "Backstage"

    def __init__(
        self,
        settings: Settings,
        redactor: Redactor,
        transport: httpx.BaseTransport | None = None,
        reader: LocationReader | None = None,
    ) -> None:
        if not settings.catalog.backstage_url:
            raise ValueError("BackstageCatalog needs PLTF_BACKSTAGE_URL")
        self.base_url = settings.catalog.backstage_url.rstrip("/")
        headers = {"Accept": "application/json"}
        if settings.catalog.backstage_token is not None:
            headers["Authorization"] = f"Bearer {settings.catalog.backstage_token.get_secret_value()}"
        self.redactor = redactor
        self.reader = reader or LocationReader(settings)
        self._http = httpx.Client(
            base_url=f"{self.base_url}/api/catalog",
            headers=headers,
            transport=transport,
            timeout=settings.catalog.catalog_read_timeout_seconds * 3,
        )

    def close(self) -> None:
        self._http.close()
        self.reader.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PltfError(
                f"cannot reach Backstage at {self.base_url}: {type(exc).__name__}", 502, "backstage_unreachable"
            ) from None
        if response.status_code in (401, 403):
            raise PltfError(
                f"Backstage refused our token ({response.status_code}); check PLTF_BACKSTAGE_TOKEN and "
                "backend.auth.externalAccess",
                502,
                "backstage_auth",
            )
        return response

    def _error(self, response: httpx.Response, what: str) -> PltfError:
        """Backstage's `{error: {name, message}}` as our error, its message kept for the person to read."""
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        message = str(self.redactor(f"{what}: Backstage answered {response.status_code}: {message}"))
        if response.status_code == 404:
            return not_found(message)
        if response.status_code == 409:
            return PltfError(message, 409, "location_exists")
        if response.status_code in (400, 422):
            return invalid_input(message)
        return PltfError(message, 502, "backstage_error")

    def register(self, target: str, *, dry_run: bool = False, caller: Caller | None = None) -> Registration:
        if caller is not None:
            # Backstage may hold a token for our forge: it must not read what this caller cannot.
            self.reader.for_caller(caller).check(target)
        params = {"dryRun": "true"} if dry_run else {}
        response = self._call("POST", "/locations", params=params, json={"type": "url", "target": target})
        if response.status_code not in (200, 201):
            raise self._error(response, f"registering {target}")
        body = response.json()
        return Registration(body.get("location", {}), list(body.get("entities", [])), bool(body.get("exists", False)))

    def entities_at(self, target: str, caller: Caller | None = None) -> list[dict[str, Any]]:
        """By a dry run; if Backstage refuses one, by reading the file and looking each entity up by name."""
        reader = self.reader if caller is None else self.reader.for_caller(caller)
        if caller is not None:
            reader.check(target)
        try:
            return self.register(target, dry_run=True).entities
        except PltfError as exc:
            if exc.code == "backstage_unreachable":
                raise
        try:
            documents = load_documents(reader.read(target))
        except (LocationError, ValueError):
            return []
        found = []
        for document in documents:
            if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
                continue
            metadata = document["metadata"]
            entity = self.entity(
                str(document.get("kind", "")),
                str(metadata.get("namespace") or DEFAULT_NAMESPACE),
                str(metadata.get("name", "")),
            )
            found.append(entity or document)
        return found

    def refresh(self, entity_ref: str, caller: Caller | None = None) -> None:
        response = self._call("POST", "/refresh", json={"entityRef": entity_ref})
        if response.status_code not in (200, 204):
            raise self._error(response, f"refreshing {entity_ref}")

    def entity(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = "/entities/by-name/" + "/".join(quote(part, safe="") for part in (kind, namespace, name))
        response = self._call("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"reading {kind}:{namespace}/{name}")
        entity: dict[str, Any] = response.json()
        return entity

    def query(self, query: Query) -> dict[str, Any]:
        params: list[tuple[str, str | int]] = [("limit", query.limit)]
        if query.cursor:
            params.append(("cursor", query.cursor))
        else:
            params += [("filter", f) for f in query.filters] + [("orderField", o) for o in query.order_fields]
        if query.fields:
            params.append(("fields", ",".join(query.fields)))
        response = self._call("GET", "/entities/by-query", params=params)
        if response.status_code != 200:
            raise self._error(response, "querying entities")
        body: dict[str, Any] = response.json()
        return body

    def facets(self, facets: list[str], filters: list[str]) -> dict[str, Any]:
        params = [("facet", f) for f in facets] + [("filter", f) for f in filters]
        response = self._call("GET", "/entity-facets", params=params)
        if response.status_code != 200:
            raise self._error(response, "reading facets")
        body: dict[str, Any] = response.json()
        return body

    def locations(self) -> list[dict[str, Any]]:
        response = self._call("GET", "/locations")
        if response.status_code != 200:
            raise self._error(response, "listing locations")
        return [item.get("data", item) for item in response.json()]

    def location(self, location_id: str) -> dict[str, Any]:
        response = self._call("GET", f"/locations/{quote(location_id, safe='')}")
        if response.status_code != 200:
            raise self._error(response, f"reading location {location_id}")
        body: dict[str, Any] = response.json()
        return body

    def delete_location(self, location_id: str, caller: Caller | None = None) -> None:
        if caller is not None and not caller.is_admin:
            # pltf registers into Backstage with its own token, so Backstage cannot tell which team a
            # location is for, and pltf keeps no record of Backstage's locations.
            raise PltfError(
                "locations in Backstage are deleted through pltf by admin tokens only; "
                "pltf does not know which team registered them",
                403,
                "forbidden",
            )
        response = self._call("DELETE", f"/locations/{quote(location_id, safe='')}")
        if response.status_code not in (200, 204):
            raise self._error(response, f"deleting location {location_id}")
