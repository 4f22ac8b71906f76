"""The software catalog: entities validated as Backstage does, stored, related, served and browsed.

- `model`: entity validation, refs and relations;
- `reader`: reading catalog files from the embedded forge, allowed files and http(s);
- `base`: the `Catalog` interface; `embedded` and `backstage`: its implementations;
- `pages`: what the `/catalog` pages show (served, with Backstage's read API, from api/).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ..config import Settings
from ..redact import Redactor
from .base import Catalog, Query, Registration, preferred_entity_ref
from .db import catalog_entities  # noqa: F401 - declares the tables on the shared metadata (db.py)


def open_catalog(settings: Settings, engine: Engine, redactor: Redactor) -> Catalog:
    """Backstage when `PLTF_BACKSTAGE_URL` is set, else the embedded catalog."""
    if settings.catalog.backstage_url:
        from .backstage import BackstageCatalog

        return BackstageCatalog(settings, redactor)
    from .embedded import EmbeddedCatalog

    return EmbeddedCatalog(settings, engine)


__all__ = ["Catalog", "Query", "Registration", "open_catalog", "preferred_entity_ref"]
