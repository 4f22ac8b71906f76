"""Reading catalog files: from the embedded forge, from allow-listed directories, or over http(s).

A location is a URL:

- `<public url>/git/<owner>/<name>/raw/<ref>/<path>` (also `/tree/`, `/blob/`):
  a file in one of our own bare repositories, read with `git cat-file`
  straight from `<git dir>/<owner>/<name>.git`, so registering works
  in-process with no server listening;
- `file:///abs/path`: only inside the directories of `PLTF_CATALOG_FILE_ROOTS`
  (never the data dir), so a caller cannot make the server publish an
  arbitrary file of its own disk;
- `http(s)://host/...`: only hosts in `PLTF_CATALOG_READ_HOSTS`, without
  following redirects, at most `PLTF_CATALOG_MAX_FILE_BYTES`.

Registering on a caller's behalf uses `reader.for_caller(caller)`: it reads
only the embedded repositories that caller may read (`forges.permissions`);
any other answers as a missing repository does (404), so a caller learns
nothing of a private repository it cannot read, and the catalog, which anyone
may read, never republishes one. pltf's own reader (refreshes) reads all.

Relative references (`$text: ./openapi.json`, a Location's targets) resolve
against the file that holds them and must stay in the same repository: the
same bare repository, the same allowed directory, or the same
`host/owner/repo` (GitLab: the project before `/-/`).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

import httpx
import yaml

from ..auth import Caller
from ..config import Settings
from ..errors import PltfError
from ..forges.embedded import git_root, read_metadata, repository_dir
from ..forges.gitpush import git
from ..forges.permissions import may_read
from ..urls import Url, UrlRefused, normalise_url
from .model import load_documents

_GLOB = re.compile(r"[*?\[]")
_FORGE_VIEWS = ("raw", "tree", "blob")
# A ref as `git check-ref-format` allows it, or a commit; never an option.
_REF = re.compile(r"^(?![-/.])(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
SUBSTITUTIONS = ("$text", "$json", "$yaml")


class LocationError(PltfError):
    """A location that cannot be read, or a reference that leaves its repository (422)."""

    def __init__(self, message: str, status: int = 422, code: str = "location_unreadable") -> None:
        super().__init__(message, status, code)


@dataclass(frozen=True)
class ForgeFile:
    owner: str
    name: str
    ref: str
    path: str


class LocationReader:
    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.forge_prefix = settings.server.base_url + "/git/"
        self.git_dir = git_root(settings)
        self.roots = [Path(root).resolve() for root in settings.catalog.catalog_file_roots]
        self.data_dir = settings.storage.data_dir.resolve()
        self.hosts = {host.lower() for host in settings.catalog.catalog_read_hosts}
        self._http = httpx.Client(
            transport=transport, timeout=settings.catalog.catalog_read_timeout_seconds, follow_redirects=False
        )
        # None: pltf itself, which reads every repository of its forge.
        self.caller: Caller | None = None

    def for_caller(self, caller: Caller) -> LocationReader:
        """This reader, limited to the embedded repositories `caller` may read."""
        limited = copy.copy(self)
        limited.caller = caller
        return limited

    def close(self) -> None:
        self._http.close()

    # -- what a URL is --------------------------------------------------------

    def location_type(self, url: str) -> str:
        """Backstage's location types: `file` for paths on this machine, `url` for the rest."""
        return "file" if url.startswith("file:") else "url"

    def check(self, url: str) -> None:
        """Raises LocationError if `url` is not a location we may read; reads no file."""
        self.repository_of(url)
        if self.caller is not None and url.startswith(self.forge_prefix):
            self._repo_dir(self.forge_file(url), url)

    def canonical(self, url: str) -> str:
        """One spelling per file of this server's forge (its raw URL), so a tree or blob URL of a registered
        file finds that location instead of conflicting with it; other URLs as given."""
        if not url.startswith(self.forge_prefix):
            return url
        try:
            forge_file = self.forge_file(url)
        except LocationError:
            return url  # reading it says what is wrong
        return f"{self.forge_prefix}{forge_file.owner}/{forge_file.name}/raw/{forge_file.ref}/{forge_file.path}"

    def repository_of(self, url: str) -> str:
        """The boundary a reference from `url` must stay within (a URL prefix)."""
        if url.startswith(self.forge_prefix):
            forge_file = self.forge_file(url)
            return f"{self.forge_prefix}{forge_file.owner}/{forge_file.name}/"
        parts = _split(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            path = self.file_path(url)
            for root in self.roots:
                if path.is_relative_to(root):
                    return root.as_uri().rstrip("/") + "/"
            raise LocationError(
                f"{url}: file locations must be inside one of the allowed directories (PLTF_CATALOG_FILE_ROOTS)"
            )
        if scheme in ("http", "https"):
            normalised = self._http_url(url)
            segments = normalised.segments
            # GitLab: /group/sub/project/-/raw/ref/path; GitHub and most others: /owner/repo/...
            project = segments[: segments.index("-")] if "-" in segments else segments[:2]
            return str(replace(normalised, segments=project, trailing_slash=True, query=None))
        raise LocationError(f"{url}: a location must be an http(s) URL, a file: URL or a URL of this server's forge")

    def resolve(self, base: str, reference: str, same_repository: bool = True) -> str:
        """`reference` relative to the file at `base`.

        With `same_repository` (substitutions), it must stay in `base`'s
        repository; without (a Location's targets, which are locations of their
        own, as in Backstage), it need only be a location we may read.
        """
        try:
            resolved = urljoin(base, reference)
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket
            raise LocationError(f"{reference!r} (from {base}) is not a URL: {exc}") from None
        if resolved.startswith("file:") and not _GLOB.search(resolved):
            # Symlinks must not lead out of the directory either.
            resolved = self.file_path(resolved).as_uri()
        if not same_repository:
            self.check(resolved)
            return resolved
        boundary = self.repository_of(base)
        try:
            inside = self.repository_of(resolved) == boundary
        except LocationError:
            inside = False
        if not inside:
            raise LocationError(f"{reference!r} (from {base}) leads outside its repository {boundary}")
        return resolved

    # -- reading ----------------------------------------------------------------

    def read(self, url: str) -> str:
        """The text of the file at `url`; LocationError (404 when it does not exist)."""
        self.repository_of(url)
        if url.startswith(self.forge_prefix):
            data = self._read_forge(self.forge_file(url), url)
        elif url.startswith("file:"):
            data = self._read_file(url)
        else:
            data = self._read_http(self._http_raw_url(url))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise LocationError(f"{url} is not UTF-8 text") from None

    def expand(self, url: str) -> list[str]:
        """The files a glob URL matches (sorted); a URL without a glob is itself."""
        if not _GLOB.search(url):
            return [url]
        if url.startswith(self.forge_prefix):
            forge_file = self.forge_file(url)
            repo = self._repo_dir(forge_file, url)
            listed = (self._git(repo, ["ls-tree", "-r", "--name-only", forge_file.ref], url) or b"").decode()
            base = f"{self.forge_prefix}{forge_file.owner}/{forge_file.name}/raw/{forge_file.ref}/"
            return [base + quote(p) for p in sorted(listed.splitlines()) if fnmatch.fnmatchcase(p, forge_file.path)]
        if url.startswith("file:"):
            pattern = unquote(urlsplit(url).path)
            directory, _, glob = pattern.rpartition("/")
            if _GLOB.search(directory):
                raise LocationError(f"{url}: only the file name may hold a glob")
            folder = Path(directory)
            if not folder.is_dir():
                return []
            return [p.resolve().as_uri() for p in sorted(folder.glob(glob)) if p.is_file()]
        raise LocationError(f"{url}: globs work for file: locations and this server's forge, not over http(s)")

    def exists(self, url: str) -> bool:
        try:
            self.read(url)
        except LocationError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def file_path(self, url: str) -> Path:
        parts = _split(url)
        if parts.netloc not in ("", "localhost"):
            raise LocationError(f"{url}: file locations must be on this machine")
        raw = unquote(parts.path)
        if not raw.startswith("/"):
            raise LocationError(f"{url}: file locations need an absolute path (file:///path/to/catalog-info.yaml)")
        path = Path(os.path.realpath(raw))
        if path.is_relative_to(self.data_dir):
            raise LocationError(f"{url}: the server's data directory is not a catalog location")
        return path

    def _read_file(self, url: str) -> bytes:
        path = self.file_path(url)
        try:
            size = path.stat().st_size
            if size > self.settings.catalog.catalog_max_file_bytes:
                raise LocationError(
                    f"{url} is {size} bytes; the limit is {self.settings.catalog.catalog_max_file_bytes}"
                )
            return path.read_bytes()
        except FileNotFoundError:
            raise LocationError(f"{url} does not exist", 404, "location_not_found") from None
        except IsADirectoryError:
            raise LocationError(f"{url} is a directory, not a catalog file") from None
        except OSError as exc:
            raise LocationError(f"cannot read {url}: {exc.strerror}") from None

    def forge_file(self, url: str) -> ForgeFile:
        rest = urlsplit(url).path[len(urlsplit(self.forge_prefix).path) :]
        segments = [unquote(s) for s in rest.split("/")]
        if len(segments) < 2 or not segments[1]:
            raise LocationError(f"{url}: expected {self.forge_prefix}<owner>/<name>/raw/<ref>/<path>")
        owner, name = segments[0], segments[1].removesuffix(".git")
        if len(segments) < 5 or segments[2] not in _FORGE_VIEWS:
            raise LocationError(f"{url}: expected {self.forge_prefix}{owner}/{name}/raw/<ref>/<path>")
        ref, path = segments[3], "/".join(segments[4:])
        if not _REF.match(ref) or any(part in ("", ".", "..") for part in path.split("/")):
            raise LocationError(f"{url}: not a valid ref and path")
        if repository_dir(self.git_dir, owner, name) is None:
            raise LocationError(f"{url}: not a valid repository name")
        return ForgeFile(owner, name, ref, path)

    def _repo_dir(self, forge_file: ForgeFile, url: str) -> Path:
        repo = repository_dir(self.git_dir, forge_file.owner, forge_file.name)
        hidden = (
            self.caller is not None
            and repo is not None
            and not may_read(self.caller, read_metadata(repo), self.settings)
        )
        # A repository the caller may not read answers as a missing one: 404 confirms nothing.
        if repo is None or not repo.is_dir() or hidden:
            raise LocationError(
                f"{url}: no repository {forge_file.owner}/{forge_file.name} on this server's forge",
                404,
                "location_not_found",
            )
        return repo

    def _read_forge(self, forge_file: ForgeFile, url: str) -> bytes:
        repo = self._repo_dir(forge_file, url)
        data = self._git(repo, ["cat-file", "blob", f"{forge_file.ref}:{forge_file.path}"], url, missing_ok=True)
        if data is None:
            raise LocationError(
                f"{url}: {forge_file.path} does not exist at {forge_file.ref}", 404, "location_not_found"
            )
        if len(data) > self.settings.catalog.catalog_max_file_bytes:
            raise LocationError(
                f"{url} is {len(data)} bytes; the limit is {self.settings.catalog.catalog_max_file_bytes}"
            )
        return data

    def _git(self, repo: Path, args: list[str], url: str, missing_ok: bool = False) -> bytes | None:
        try:
            done = git(args, git_dir=repo, timeout=self.settings.catalog.catalog_read_timeout_seconds)
        except subprocess.TimeoutExpired:
            raise LocationError(f"reading {url} timed out", 504, "location_timeout") from None
        if done.returncode != 0:
            if missing_ok:
                return None
            raise LocationError(
                f"{url}: {done.stderr.decode(errors='replace').strip()[:300]}", 404, "location_not_found"
            )
        return bytes(done.stdout)

    def _http_raw_url(self, url: str) -> str:
        """The raw-file URL behind a browse URL, as Backstage's integrations read them."""
        parts = _split(url)
        host = (parts.hostname or "").lower()
        segments = parts.path.split("/")
        if host == "github.com" and len(segments) > 4 and segments[3] in ("blob", "tree"):
            return f"https://raw.githubusercontent.com/{'/'.join(segments[1:3] + segments[4:])}"
        if "-" in segments:
            dash = segments.index("-")
            if len(segments) > dash + 1 and segments[dash + 1] in ("blob", "tree"):
                segments[dash + 1] = "raw"
                return parts._replace(path="/".join(segments)).geturl()
        return url

    def _http_url(self, url: str) -> Url:
        """`url` normalised (what is checked is what is fetched), when its host is one we may read."""
        try:
            normalised = normalise_url(url, query=True)
        except UrlRefused as exc:
            # Not the URL itself: a refused one may carry a password.
            raise LocationError(f"not a URL the catalog may read: {exc}") from None
        if normalised.host not in self.hosts:
            raise LocationError(
                f"{url}: the host {normalised.host or '(none)'} is not one the catalog may read from "
                "(PLTF_CATALOG_READ_HOSTS, or this server's own forge)"
            )
        return normalised

    def _read_http(self, url: str) -> bytes:
        url = str(self._http_url(url))  # a rewritten URL must still be an allowed host
        limit = self.settings.catalog.catalog_max_file_bytes
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code == 404:
                    raise LocationError(f"{url} does not exist (404)", 404, "location_not_found")
                if response.status_code != 200:
                    raise LocationError(
                        f"reading {url} answered HTTP {response.status_code}", 502, "location_unreadable"
                    )
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise LocationError(f"{url} is larger than the limit of {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise LocationError(f"cannot read {url}: {type(exc).__name__}", 502, "location_unreadable") from None

    # -- substitutions ------------------------------------------------------------

    def substitute(self, value: Any, base: str, where: str = "") -> Any:
        """Replaces `{$text|$json|$yaml: ref}` anywhere in `value` with the referenced file's content."""
        if isinstance(value, list):
            return [self.substitute(item, base, f"{where}.{n}") for n, item in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, reference), *_ = value.items()
            if key in SUBSTITUTIONS:
                return self._substitution(key, reference, base, where.lstrip("."))
        return {key: self.substitute(item, base, f"{where}.{key}") for key, item in value.items()}

    def _substitution(self, key: str, reference: object, base: str, where: str) -> Any:
        if not isinstance(reference, str) or not reference:
            raise SubstitutionError(where, f"{key} needs a path or URL")
        try:
            url = self.resolve(base, reference)
            text = self.read(url)
        except LocationError as exc:
            raise SubstitutionError(where, f"{key} {reference}: {exc.message}") from None
        if key == "$text":
            return text
        try:
            return json.loads(text) if key == "$json" else load_documents(text)[0] if text.strip() else None
        except (ValueError, yaml.YAMLError, IndexError) as exc:
            raise SubstitutionError(where, f"{key} {reference} is not valid {key[1:].upper()}: {exc}") from None


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise LocationError(f"{url!r} is not a URL: {exc}") from None


class SubstitutionError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
