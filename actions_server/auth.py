"""API tokens: one full-access token, a file of named tokens, or a generated local one.

Only hashes are kept in memory and in the token file. The token file looks like:

    tokens:
      - name: backstage
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        actions: ["service:create", "cookiecutter:*"]
        team: group:default/platform

`pltf tokens new NAME` prints a fresh token and the entry to paste.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import Settings


@dataclass(frozen=True)
class Caller:
    name: str
    actions: tuple[str, ...] = ("*",)
    team: str | None = None

    def may_run(self, action_id: str) -> bool:
        return any(fnmatch.fnmatchcase(action_id, pattern) for pattern in self.actions)

    @property
    def is_admin(self) -> bool:
        """Every action and no team: `PLTF_API_TOKEN`, the generated local token, or such a token-file entry.

        An admin pushes to every team's repositories and sees every team's runs, workspaces and previews.
        """
        return self.team is None and "*" in self.actions


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "pltf_" + secrets.token_urlsafe(32)


class TokenRegistry:
    def __init__(self, callers: dict[str, Caller]) -> None:
        self._by_hash = callers

    def authenticate(self, token: str | None) -> Caller | None:
        if not token:
            return None
        return self._by_hash.get(hash_token(token))


def token_from_authorization(header: str | None, *, basic: bool = False) -> str | None:
    """The token an Authorization header carries: `Bearer <token>`, and with `basic` (git clients
    cannot send a bearer token) `Basic` with the token as the password, or as the user name
    (curl -u TOKEN:)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if basic and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


class TokenFileError(Exception):
    pass


def load_tokens(settings: Settings) -> tuple[TokenRegistry, Path | None]:
    """The configured tokens; when none are configured, a generated one and its file."""
    callers: dict[str, Caller] = {}
    if settings.server.api_token is not None:
        callers[hash_token(settings.server.api_token.get_secret_value())] = Caller("api-token")
    if settings.server.token_file is not None:
        callers.update(_read_token_file(settings.server.token_file))
    if callers:
        return TokenRegistry(callers), None
    path = settings.storage.generated_token_path
    token = read_generated_token(path) or _write_generated_token(path)
    return TokenRegistry({hash_token(token): Caller("local")}), path


def read_generated_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _write_generated_token(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    try:
        # O_EXCL: when two servers start at once on one data dir, one token wins.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_generated_token(path) or token
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _read_token_file(path: Path) -> dict[str, Caller]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TokenFileError(f"cannot read token file {path}: {exc}") from None
    entries = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise TokenFileError(f"token file {path} must have a 'tokens' list")
    callers = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise TokenFileError(f"token file {path}: entry {n} needs a name")
        digest = str(entry.get("sha256", "")).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise TokenFileError(f"token file {path}: entry {entry['name']!r} needs a sha256 hex digest, not a token")
        actions = entry.get("actions", ["*"])
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise TokenFileError(f"token file {path}: entry {entry['name']!r} actions must be a list of patterns")
        team = entry.get("team")
        callers[digest] = Caller(entry["name"], tuple(actions), team if isinstance(team, str) else None)
    return callers
