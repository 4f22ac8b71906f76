"""One place that knows the secrets and scrubs them from anything we keep or show."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Shorter values are too likely to occur by chance ("ok", "1") to be masked safely.
MIN_SECRET_LENGTH = 4


class Redactor:
    """Replaces every known secret value by `***`, in strings nested anywhere in a value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        # Longest first, so a secret that contains another is masked whole;
        # kept sorted here because every string of every log line is scrubbed.
        self._ordered: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
            self._ordered = tuple(sorted(self._secrets, key=len, reverse=True))

    def child(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also knows a run's own secrets."""
        with self._lock:
            known = set(self._secrets)
        return Redactor(known | set(secrets))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        return value

    def _scrub(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
