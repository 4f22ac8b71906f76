"""The actions: one module each, found by name, each defining `action`."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ..action import Action


def discover() -> dict[str, Action[Any, Any]]:
    found: dict[str, Action[Any, Any]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        action = getattr(module, "action", None)
        if isinstance(action, Action):
            if action.id in found:
                raise RuntimeError(f"two actions share the id {action.id}")
            found[action.id] = action
    return found
