"""Preview environments: `preview:create` / `preview:destroy`, behind one provider interface.

- `base.PreviewProvider`: the interface (create, probe, destroy);
- `local`: the default; the service runs on this host, served at its clean URL by `api/preview_proxy.py`;
- `kubernetes`: GitOps; manifests committed to a repository that Argo CD applies;
- `manager.PreviewManager`: persistence, idempotency, the cap, TTLs, the reaper and adoption;
  `manager.preview_loop` is the server's background loop (adoption, then the reaper).

`api/previews.py` serves `GET /v1/previews[/{id}]`.
"""

from __future__ import annotations

import threading

from .base import Placement, PreviewParts, PreviewProvider, PreviewSpec, Probe
from .manager import PreviewManager, PreviewRequest, previews_table

__all__ = [
    "Placement",
    "PreviewHub",
    "PreviewManager",
    "PreviewProvider",
    "PreviewRequest",
    "PreviewSpec",
    "Probe",
    "previews_table",
]


def provider_for(services: PreviewParts) -> PreviewProvider:
    settings = services.settings
    root = (settings.previews.preview_dir or settings.storage.data_dir / "previews").resolve()
    if settings.previews.preview_provider == "kubernetes":
        from .kubernetes import KubernetesProvider

        return KubernetesProvider(services, root)
    from .local import LocalProvider

    return LocalProvider(settings, services.redactor, root)


class PreviewHub:
    """The process's preview manager, built on first use from the services (`services.previews.get(services)`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._manager: PreviewManager | None = None

    def get(self, services: PreviewParts) -> PreviewManager:
        with self._lock:
            if self._manager is None:
                self._manager = PreviewManager(
                    services.settings, services.engine, services.redactor, provider_for(services), services.events
                )
            return self._manager

    def use(self, manager: PreviewManager) -> None:
        """Puts a given manager in place (tests)."""
        with self._lock:
            self._manager = manager
