"""What the `/catalog` pages show, rendered autoescaped, with no scripts or CDN.

The list of entities, filterable by kind, owner, system and tag, and one
entity's page: its annotations as links, its relations and the template it came
from. `api/catalog_pages.py` serves them at `/catalog` and
`/catalog/{namespace}/{kind}/{name}` (Backstage's own URL shape, `page_url`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import anyio
import yaml
from jinja2 import Environment, FileSystemLoader

from ..config import Settings
from .base import Catalog
from .base import Query as EntityQuery
from .model import EntityRef, RefError, page_url, parse_ref

PAGE_SIZE = 50
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)


def safe_url(url: object) -> str | None:
    """Only http(s) URLs become links: an annotation must not smuggle in a javascript: href."""
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        return url
    return None


def _location_url(value: str | None) -> str | None:
    return safe_url(value.removeprefix("url:")) if value and value.startswith("url:") else None


def entity_links(entity: dict[str, Any], settings: Settings) -> list[dict[str, str]]:
    """The entity's annotations, and its own links, as `[{title, url}]` a person can follow."""
    annotations: dict[str, str] = entity.get("metadata", {}).get("annotations", {}) or {}
    links: list[dict[str, str]] = []

    def add(title: str, url: str | None) -> None:
        if url and all(link["url"] != url for link in links):
            links.append({"title": title, "url": url})

    source = _location_url(annotations.get("backstage.io/source-location"))
    forge = settings.server.base_url + "/git/"
    if source and source.startswith(forge):
        owner_and_name = source[len(forge) :].split("/")[:2]
        add("Repository", forge + "/".join(owner_and_name))
    else:
        add("Repository", source)
    if slug := annotations.get("github.com/project-slug"):
        add("GitHub", f"https://github.com/{slug}")
    if slug := annotations.get("gitlab.com/project-slug"):
        add("GitLab", f"https://gitlab.com/{slug}")
    add("Preview", safe_url(annotations.get("pltf.dev/preview-url")))
    techdocs = annotations.get("backstage.io/techdocs-ref", "")
    if techdocs.startswith("dir:") and source:
        add("Docs (TechDocs)", urljoin(source, techdocs.removeprefix("dir:")))
    elif techdocs.startswith("url:"):
        add("Docs (TechDocs)", _location_url(techdocs))
    if (app := annotations.get("argocd/app-name")) and settings.catalog.catalog_argocd_url:
        add("Argo CD", safe_url(f"{settings.catalog.catalog_argocd_url.rstrip('/')}/applications/{app}"))
    add("View source file", safe_url(annotations.get("backstage.io/view-url")))
    add("Edit source file", safe_url(annotations.get("backstage.io/edit-url")))
    for link in entity.get("metadata", {}).get("links", []) or []:
        if isinstance(link, dict):
            add(str(link.get("title") or link.get("url")), safe_url(link.get("url")))
    return links


def source_template(entity: dict[str, Any]) -> dict[str, str] | None:
    """The template an entity was created from (`backstage.io/source-template: template:default/x@1.2.0`)."""
    value = (entity.get("metadata", {}).get("annotations", {}) or {}).get("backstage.io/source-template")
    if not value:
        return None
    ref_text, _, version = value.partition("@")
    try:
        ref = parse_ref(ref_text, "template")
    except RefError:
        return {"ref": value, "url": "", "version": version}
    return {"ref": str(ref), "url": page_url(ref), "version": version}


def _ref_link(ref: str) -> dict[str, str]:
    try:
        return {"ref": ref, "url": page_url(ref)}
    except RefError:
        return {"ref": ref, "url": ""}


def _relation_targets(entity: dict[str, Any], relation_type: str) -> list[dict[str, str]]:
    return [_ref_link(r["targetRef"]) for r in entity.get("relations", []) if r.get("type") == relation_type]


def _filter_from(kind: str, owner: str, system: str, tag: str) -> tuple[str, list[str]]:
    """The page's form as one Backstage filter, and what was ignored because it cannot be one."""
    conditions, ignored = [], []
    for label, value, key, default_kind in (
        ("kind", kind, "kind", None),
        ("owner", owner, "relations.ownedBy", "group"),
        ("system", system, "relations.partOf", "system"),
        ("tag", tag, "metadata.tags", None),
    ):
        value = value.strip()
        if not value:
            continue
        if "," in value or "=" in value:
            ignored.append(label)
            continue
        if default_kind:
            try:
                value = str(parse_ref(value, default_kind))
            except RefError:
                ignored.append(label)
                continue
        conditions.append(f"{key}={value}")
    return ",".join(conditions), ignored


async def list_html(catalog: Catalog, kind: str, owner: str, system: str, tag: str, cursor: str | None) -> str:
    """The `/catalog` list page for one filter and cursor."""
    filter_text, ignored = _filter_from(kind, owner, system, tag)
    filters = [filter_text] if filter_text else []
    query = EntityQuery(filters=filters, order_fields=["metadata.name,asc"], limit=PAGE_SIZE, cursor=cursor)

    def load() -> tuple[dict[str, Any], dict[str, Any]]:
        facet_keys = ["kind", "relations.ownedBy", "relations.partOf", "metadata.tags"]
        return catalog.query(query), catalog.facets(facet_keys, [])

    page, facets = await anyio.to_thread.run_sync(load)
    rows = []
    for entity in page["items"]:
        ref = EntityRef.of(entity)
        spec = entity.get("spec") or {}
        rows.append(
            {
                "name": entity["metadata"].get("title") or ref.name,
                "url": page_url(ref),
                "kind": entity["kind"],
                "type": spec.get("type", "") if isinstance(spec.get("type"), str) else "",
                "owner": _relation_targets(entity, "ownedBy"),
                "system": [t for t in _relation_targets(entity, "partOf") if t["ref"].startswith("system:")],
                "description": entity["metadata"].get("description", ""),
                "tags": entity["metadata"].get("tags", []),
            }
        )
    found = facets["facets"]
    params = {"kind": kind, "owner": owner, "system": system, "tag": tag}
    next_cursor = page["pageInfo"].get("nextCursor")
    html = _env.get_template("list.html").render(
        rows=rows,
        total=page["totalItems"],
        params=params,
        ignored=ignored,
        kinds=[f["value"] for f in found.get("kind", [])],
        owners=[f["value"] for f in found.get("relations.ownedBy", [])],
        systems=[f["value"] for f in found.get("relations.partOf", []) if str(f["value"]).startswith("system:")],
        tags=[f["value"] for f in found.get("metadata.tags", [])],
        next_url="/catalog?" + urlencode({**params, "cursor": next_cursor}) if next_cursor else None,
        catalog_title=catalog.title,
    )
    return html


def missing_html(kind: str, namespace: str, name: str) -> str:
    """The page of an entity the catalog does not have."""
    return _env.get_template("missing.html").render(ref=f"{kind}:{namespace}/{name}".lower())


def entity_html(entity: dict[str, Any], settings: Settings) -> str:
    """The page of one entity: its links, relations, the template it came from and its source."""
    relations: dict[str, list[dict[str, str]]] = {}
    for relation in entity.get("relations", []):
        relations.setdefault(relation["type"], []).append(_ref_link(relation["targetRef"]))
    spec = entity.get("spec") or {}
    definition = spec.get("definition") if entity["kind"] == "API" else None
    shown = {k: v for k, v in entity.items() if k != "relations"}
    return _env.get_template("entity.html").render(
        entity=entity,
        ref=str(EntityRef.of(entity)),
        spec=spec,
        owner=_relation_targets(entity, "ownedBy"),
        system=[t for t in _relation_targets(entity, "partOf") if t["ref"].startswith("system:")],
        apis=_relation_targets(entity, "providesApi"),
        links=entity_links(entity, settings),
        template=source_template(entity),
        relations=sorted(relations.items()),
        annotations=sorted((entity["metadata"].get("annotations") or {}).items()),
        labels=sorted((entity["metadata"].get("labels") or {}).items()),
        definition=definition if isinstance(definition, str) else None,
        source=yaml.safe_dump(shown, sort_keys=False, allow_unicode=True),
        safe_url=safe_url,
    )
