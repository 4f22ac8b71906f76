"""The platform's own events: a repository created, a push, a spec applied.

The parts that make them happen publish here; whoever wants them (the portal's
DORA and cost figures) subscribes when the application is put together
(services.py). So the forge, the actions and the specs need not know the
portal exists, and the import graph shows who depends on whom.

    events = EventBus()
    events.subscribe(lambda kind, payload: print(kind, payload))
    events.publish("repo.created", {"owner": "platform-team", "name": "users-api"})

The kinds and their payloads are described in docs/dora.md.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .logs import get_logger

Subscriber = Callable[[str, Mapping[str, Any]], None]


class EventBus:
    """Synchronous fan-out: `publish` returns once every subscriber has handled the event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Adds a subscriber; returns what removes it again (a server's parts are rebuilt on each start)."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Never raises: the golden path must not fail because a listener could not keep up."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(kind, payload)
            except Exception as exc:  # noqa: BLE001 - a listener's failure is its own
                get_logger().warning("an event subscriber failed", kind=kind, error=str(exc)[:300])
