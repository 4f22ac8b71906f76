"""The event bus the portal subscribes to (actions_server/events.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actions_server.events import EventBus


def test_a_failing_subscriber_neither_stops_the_others_nor_reaches_the_publisher() -> None:
    bus = EventBus()
    seen: list[tuple[str, dict[str, Any]]] = []

    def broken(kind: str, payload: Mapping[str, Any]) -> None:
        raise RuntimeError("the portal's database is down")

    bus.subscribe(broken)
    bus.subscribe(lambda kind, payload: seen.append((kind, dict(payload))))
    bus.publish("repo.created", {"owner": "platform-team", "name": "users-api"})
    assert seen == [("repo.created", {"owner": "platform-team", "name": "users-api"})]


def test_an_unsubscribed_subscriber_hears_nothing_more() -> None:
    bus = EventBus()
    seen: list[str] = []
    unsubscribe = bus.subscribe(lambda kind, payload: seen.append(kind))
    bus.publish("forge.push", {})
    unsubscribe()
    unsubscribe()  # a server stopping twice must not fail
    bus.publish("forge.push", {})
    assert seen == ["forge.push"]
