"""URL allow-lists, compared as URLs rather than as strings.

    sources = AllowList(settings.templates.template_sources)   # a bad prefix raises UrlRefused
    url = sources.match(reference)                   # the normalised URL, or None; UrlRefused when malformed
    clone(str(url))                                  # fetch what was checked, not what was given

A prefix `http://h/git/platform-team/` allows `http://h/git/platform-team/x.git` and
neither `http://h/git/platform-team-evil/x.git` nor `http://h/git/platform-team/../team-b/x.git`:
git, curl and web servers resolve `..` (also spelt `%2e%2e`) before fetching, so
the check has to look at the URL they will fetch.

Normalised: the scheme and host are lower-cased, a trailing dot on the host and
a default port are dropped, percent-escapes of unreserved characters are decoded
(`%2e` is `.`, `%41` is `A`) and the others upper-cased, characters that need
an escape get one, and `.` / `..` segments are resolved. Paths are compared
segment by segment, so a prefix with or without a trailing slash means the same.

Refused (UrlRefused, with the reason):
- schemes other than http, https, ssh, git and file (`ext::`, `fd::` run commands);
- user info, except a user name on ssh: a password does not belong in a
  configured URL, and `http://allowed.example@evil.example/` is a classic trick;
- scp-style `git@host:path`: git reads its path relative to the login's home
  directory, which no `ssh://` prefix can express; write `ssh://git@host/path`;
- control characters, spaces, backslashes and non-ASCII characters (parsers
  disagree on them), and escapes of `/`, `\\`, `%` or control characters;
- an empty segment (`a//b`: some servers collapse it before resolving `..`),
  a `..` that would climb above the root, and any segment still holding `..`;
- for `file:`, any `.` or `..` segment: the kernel resolves `..` after following
  symbolic links, so a textual resolution could point somewhere else;
- a fragment, and a query unless the caller accepts one (`query=True`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SCHEMES = frozenset({"http", "https", "ssh", "git", "file"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# What RFC 3986 allows unescaped in a path segment, besides the unreserved characters.
_SEGMENT_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@")
# Never decoded, never accepted escaped: each would change where the path leads, or how it is parsed.
_FORBIDDEN_ESCAPES = frozenset({"/", "\\", "%"}) | {chr(c) for c in range(0x20)} | {"\x7f"}
_HOST = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_SSH_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCP_STYLE = re.compile(r"^[^/]*:")


class UrlRefused(ValueError):
    """A URL that cannot be compared safely; the message says why."""


@dataclass(frozen=True)
class Url:
    scheme: str
    user: str | None
    host: str
    port: int | None
    segments: tuple[str, ...]
    trailing_slash: bool = False
    query: str | None = None

    def __str__(self) -> str:
        authority = (f"{self.user}@" if self.user else "") + self.host + (f":{self.port}" if self.port else "")
        path = "/" + "/".join(self.segments) + ("/" if self.trailing_slash and self.segments else "")
        return f"{self.scheme}://{authority}{path}" + (f"?{self.query}" if self.query is not None else "")

    def relative_to(self, prefix: Url) -> tuple[str, ...] | None:
        """The segments after `prefix` when this URL lies under it (same origin, whole segments), else None."""
        same_origin = (self.scheme, self.user, self.host, self.port) == (
            prefix.scheme,
            prefix.user,
            prefix.host,
            prefix.port,
        )
        if not same_origin or self.segments[: len(prefix.segments)] != prefix.segments:
            return None
        return self.segments[len(prefix.segments) :]


def normalise_url(url: str, *, query: bool = False) -> Url:
    """`url` in its one canonical spelling; UrlRefused when it has none we can trust (see the module)."""
    bad = next((c for c in url if c <= " " or c == "\x7f" or c == "\\" or not c.isascii()), None)
    if bad is not None:
        raise UrlRefused(f"URLs may not contain {bad!r}; percent-encode it")
    scheme, separator, rest = url.partition("://")
    if not separator:
        if _SCP_STYLE.match(url):
            raise UrlRefused("scp-style URLs (git@host:path) are not accepted; write ssh://git@host/path")
        raise UrlRefused("not an absolute URL (scheme://host/path)")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused(f"the scheme {scheme!r} is not accepted (use one of: {', '.join(sorted(SCHEMES))})")
    if "#" in rest:
        raise UrlRefused("URLs may not have a fragment (#...)")
    rest, has_query, query_text = rest.partition("?")
    if has_query and not query:
        raise UrlRefused("repository URLs may not have a query (?...)")
    authority, slash, path = rest.partition("/")
    user, host, port = _authority(scheme, authority)
    segments, trailing = _path(scheme, slash + path)
    return Url(scheme, user, host, port, segments, trailing, _query(query_text) if has_query else None)


def _authority(scheme: str, authority: str) -> tuple[str | None, str, int | None]:
    user: str | None = None
    if "@" in authority:
        user, _, authority = authority.rpartition("@")
        if scheme != "ssh":
            raise UrlRefused("URLs may not carry a user name or password; credentials come from configuration")
        if not _SSH_USER.match(user):
            raise UrlRefused("an ssh URL may carry a user name but no password")
    authority = authority.lower()
    host, port_text = authority, ""
    if authority.startswith("["):
        host, _, after = authority.partition("]")
        host += "]"
        if after and not after.startswith(":"):
            raise UrlRefused(f"malformed host {authority!r}")
        port_text = after[1:]
    elif ":" in authority:
        host, _, port_text = authority.partition(":")
    host = host.removesuffix(".") if not host.startswith("[") else host
    if scheme == "file":
        if host not in ("", "localhost") or port_text:
            raise UrlRefused("file: URLs must name this machine (file:///path)")
        return None, "", None
    if not (_HOST.match(host) or _IPV6.match(host)):
        raise UrlRefused(f"malformed or missing host {host!r}")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UrlRefused(f"malformed port {port_text!r}")
        port = int(port_text)
    if port == DEFAULT_PORTS.get(scheme):
        port = None
    return user, host, port


def _path(scheme: str, path: str) -> tuple[tuple[str, ...], bool]:
    if not path:
        return (), False
    raw = path.split("/")[1:]
    resolved: list[str] = []
    trailing = False
    for n, text in enumerate(raw):
        segment = _segment(text)
        last = n == len(raw) - 1
        if segment in (".", "..") and scheme == "file":
            raise UrlRefused("file: URLs may not contain '.' or '..' segments")
        if segment == ".":
            trailing = last
        elif segment == "..":
            if not resolved:
                raise UrlRefused("the path climbs above the root with '..'")
            resolved.pop()
            trailing = last
        elif segment == "":
            if not last:
                raise UrlRefused("the path has an empty segment ('//')")
            trailing = True
        else:
            resolved.append(segment)
            trailing = False
    if any(".." in segment for segment in resolved):
        raise UrlRefused("a path segment still contains '..'")
    return tuple(resolved), trailing and bool(resolved)


def _segment(text: str) -> str:
    """One segment with unreserved characters decoded and every other escape in upper case."""
    out: list[str] = []
    n = 0
    while n < len(text):
        char = text[n]
        if char == "%":
            code = text[n + 1 : n + 3]
            if len(code) != 2 or not all(c in "0123456789abcdefABCDEF" for c in code):
                raise UrlRefused(f"malformed percent-escape in {text!r}")
            decoded = chr(int(code, 16))
            if decoded in _FORBIDDEN_ESCAPES:
                raise UrlRefused(f"the path may not contain an escaped {decoded!r} (%{code.upper()})")
            out.append(decoded if decoded in _UNRESERVED else f"%{code.upper()}")
            n += 3
            continue
        out.append(char if char in _SEGMENT_SAFE else f"%{ord(char):02X}")
        n += 1
    return "".join(out)


def _query(text: str) -> str:
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise UrlRefused("malformed percent-escape in the query")
    return text


class AllowList:
    """URL prefixes, normalised once; `match` says whether a URL lies under one of them."""

    def __init__(self, prefixes: Iterable[str], *, query: bool = False) -> None:
        self.query = query
        self.prefixes: tuple[Url, ...] = tuple(_prefix(prefix) for prefix in prefixes)

    def match(self, url: str) -> Url | None:
        """The normalised `url` when it lies under a prefix, else None; UrlRefused when it is malformed."""
        normalised = normalise_url(url, query=self.query)
        if any(normalised.relative_to(prefix) is not None for prefix in self.prefixes):
            return normalised
        return None

    def __str__(self) -> str:
        return ", ".join(str(prefix) for prefix in self.prefixes)


def _prefix(prefix: str) -> Url:
    try:
        return normalise_url(prefix)
    except UrlRefused as exc:
        raise UrlRefused(f"allow-list prefix {prefix!r}: {exc}") from None


def url_allowed(url: str, prefixes: Iterable[str]) -> bool:
    """Whether `url` lies under one of `prefixes`; a malformed URL never does (a malformed prefix raises)."""
    allow_list = AllowList(prefixes)
    try:
        return allow_list.match(url) is not None
    except UrlRefused:
        return False
