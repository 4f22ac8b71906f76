"""What the portal's figures read from the rest of the platform, named here so that the portal does not
import the module that builds the parts (services.py, a layer above)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..catalog import Catalog
    from ..config import Settings
    from ..templates.catalog import TemplateCatalog


class PortalParts(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def templates(self) -> TemplateCatalog: ...
