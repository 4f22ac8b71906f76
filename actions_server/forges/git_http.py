"""The embedded forge on the wire: git smart HTTP, raw files and browse pages, under /git/.

Routes (owner and name must match `embedded.SEGMENT`, so no path escapes the git dir):

- `/git/<owner>/<name>.git/info/refs?service=…`, `…/git-upload-pack`,
  `…/git-receive-pack`: git's smart HTTP protocol, served by `git http-backend`.
  The request body is streamed into it and its output streamed back, so a
  large push is never held in memory (uvicorn has already undone any chunked
  transfer encoding).
- `/git/<owner>/<name>/raw/<ref>/<path>`: a file, as text/plain.
- `/git/`, `/git/<owner>/<name>`, `/git/<owner>/<name>/tree/<ref>/<path>`:
  server-rendered pages (Jinja2, autoescaped) listing repositories, files and
  the last commits.

Who may do what (the rules are in `permissions`):

- Pushing needs an API token as the HTTP basic password (any user name), of an
  admin or of the repository's owner team, allowed to run `repo:create`; the
  GitOps repository takes no push at all. git itself also refuses a push
  without an authenticated user (`REMOTE_USER`), as a second lock.
- A protected default branch takes no force-push and no deletion, from anyone:
  `git http-backend` runs with `core.hooksPath` set (through
  `GIT_CONFIG_COUNT/KEY/VALUE`) to pltf's own pre-receive hook, which sees the
  pushed objects, refuses the whole push when one is such an update, and says
  why; the client shows git's usual `[remote rejected]`. pltf's own writes go
  through the filesystem and never meet the hook.
- Reading (clone, raw, pages) of public repositories is open while
  `PLTF_GIT_PUBLIC_READS` is true (the default), so a Backstage catalog can read
  `catalog-info.yaml`. Internal repositories, and everything when it is false,
  need any valid token (basic password or bearer); private ones a token of
  their team or an admin token. Without a token the answer is a 401 challenge;
  a token that may not read gets a 404, which does not confirm the repository
  exists. The list page shows each caller what it may read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from jinja2 import DictLoader, Environment, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from ..auth import Caller, TokenRegistry, token_from_authorization
from ..config import Settings
from ..errors import PltfError
from ..events import EventBus
from ..logs import get_logger
from .changes import diff as change_diff
from .changes import get_change
from .embedded import git_root, list_repositories, read_metadata, repository_dir
from .gitpush import git, git_environment
from .permissions import may_read, push_refusal

SERVICES = ("git-upload-pack", "git-receive-pack")
# A ref as our pages and raw URLs take it: a branch, tag or sha, in one or more segments (release/1).
REF = re.compile(r"^(?![-./])(?!.*\.\.)(?!.*//)(?!.*/[-.])(?!.*@\{)(?!.*[/.]$)[A-Za-z0-9._/-]{1,200}$")
GIT_PROTOCOL = re.compile(r"^[A-Za-z0-9=:._-]{0,100}$")
MAX_PATH = 1000
MAX_SHOWN_BYTES = 512 * 1024
COMMITS_SHOWN = 20
READ_CHUNK = 64 * 1024
HOOKS_DIR = ".hooks"  # under the git root; a leading dot is never a repository owner (see embedded.SEGMENT)

# Reads old, new and ref lines on stdin (githooks(5)); PLTF_PROTECTED_REF comes from `_hook_environment`.
# A sha of zeros is a deletion (new) or a creation (old).
PRE_RECEIVE = """#!/bin/sh
# pltf's pre-receive hook for pushes over HTTP, written by actions_server/forges/git_http.py.
status=0
while read -r old new ref; do
    if [ -z "$PLTF_PROTECTED_REF" ] || [ "$ref" != "$PLTF_PROTECTED_REF" ]; then
        continue
    fi
    case "$new" in
    *[!0]*) ;;
    *)
        echo "pltf: $ref is a protected branch: it cannot be deleted" >&2
        status=1
        continue
        ;;
    esac
    case "$old" in
    *[!0]*)
        if ! git merge-base --is-ancestor "$old" "$new"; then
            echo "pltf: $ref is a protected branch: pushes must fast-forward it (no force-push)" >&2
            status=1
        fi
        ;;
    esac
done
exit $status
"""

PAGES = {
    "layout.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}{% endblock %} · pltf git</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
a{color:#0b5fb4;text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%}td,th{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left}
code,pre{font:13px ui-monospace,monospace}pre{background:#f6f8fa;padding:1em;overflow:auto}
.muted{color:#777}.clone{background:#f6f8fa;padding:.5em;border-radius:4px}
</style></head><body>
<p class="muted"><a href="{{ base }}/git/">repositories</a>{% block crumbs %}{% endblock %}</p>
{% block body %}{% endblock %}
</body></html>""",
    "index.html": """{% extends "layout.html" %}{% block title %}Repositories{% endblock %}
{% block body %}<h1>Repositories</h1>
{% if repositories %}<table><tr><th>Repository</th><th>Description</th><th>Visibility</th></tr>
{% for owner, name, meta in repositories %}<tr><td><a href="{{ base }}/git/{{ owner }}/{{ name }}">{{ owner }}/{{ name }}</a></td>
<td>{{ meta.get("description", "") }}</td><td>{{ meta.get("visibility", "public") }}</td></tr>{% endfor %}
</table>{% else %}<p>No repositories yet. <code>repo:create</code> makes them.</p>{% endif %}
{% endblock %}""",
    "tree.html": """{% extends "layout.html" %}{% block title %}{{ owner }}/{{ name }}{% endblock %}
{% block crumbs %} / <a href="{{ repo_url }}">{{ owner }}/{{ name }}</a>{% for label, href in crumbs %} / <a href="{{ href }}">{{ label }}</a>{% endfor %}{% endblock %}
{% block body %}<h1>{{ owner }}/{{ name }}</h1>
{% if meta.get("description") %}<p>{{ meta["description"] }}</p>{% endif %}
{% if meta.get("topics") %}<p class="muted">{% for t in meta["topics"] %}#{{ t }} {% endfor %}</p>{% endif %}
<p class="clone">git clone <code>{{ clone_url }}</code></p>
{% if ref is none %}<p>This repository is empty.</p>{% else %}
<p class="muted">{{ ref }}{% if path %}: {{ path }}{% endif %}{% if branches|length > 1 %} · branches:
{% for b in branches %}<a href="{{ repo_url }}/tree/{{ b }}">{{ b }}</a> {% endfor %}{% endif %}</p>
{% if blob is not none %}<p><a href="{{ repo_url }}/raw/{{ ref }}/{{ path }}">raw</a></p>
{% if blob_text is not none %}<pre>{{ blob_text }}</pre>{% else %}<p>A binary file of {{ blob }} bytes.</p>{% endif %}
{% else %}<table>{% for entry in entries %}<tr><td>{% if entry.kind == "tree" %}&#128193;{% else %}&#128196;{% endif %}
<a href="{{ repo_url }}/tree/{{ ref }}/{{ entry.path }}">{{ entry.name }}</a></td><td class="muted">{{ entry.size }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Last commits</h2><table>{% for c in commits %}<tr><td><code>{{ c.sha[:10] }}</code></td><td>{{ c.subject }}</td>
<td class="muted">{{ c.author }}</td><td class="muted">{{ c.date }}</td></tr>{% endfor %}</table>{% endif %}
{% endblock %}""",
    "change.html": """{% extends "layout.html" %}{% block title %}{{ owner }}/{{ name }} change {{ change.number }}{% endblock %}
{% block crumbs %} / <a href="{{ repo_url }}">{{ owner }}/{{ name }}</a> / changes / {{ change.number }}{% endblock %}
{% block body %}<h1>{{ change.title }} <span class="muted">#{{ change.number }}</span></h1>
<p><strong>{{ change.state }}</strong> · <code>{{ change.branch }}</code> into <code>{{ change.target }}</code>
{% if change.state == "open" %}· merge with <code>POST {{ base }}/v1/repositories/{{ owner }}/{{ name }}/changes/{{ change.number }}/merge</code>{% endif %}</p>
{% if change.get("conflicts") %}<p>Conflicts to resolve before merging:</p><ul>{% for path in change["conflicts"] %}<li><code>{{ path }}</code></li>{% endfor %}</ul>{% endif %}
<pre>{{ diff }}</pre>
{% endblock %}""",
}

_pages = Environment(loader=DictLoader(PAGES), autoescape=select_autoescape(default=True, default_for_string=True))


def _caller(request: Request) -> Caller | None:
    tokens: TokenRegistry = request.app.state.tokens
    return tokens.authenticate(token_from_authorization(request.headers.get("authorization"), basic=True))


def _challenge(message: str) -> Response:
    return Response(message + "\n", 401, {"WWW-Authenticate": 'Basic realm="pltf git", charset="UTF-8"'})


def _not_found() -> Response:
    return Response("not found\n", 404, media_type="text/plain")


def _safe_path(path: str) -> str | None:
    """A repository-relative path, or None when it has `..`, `.` or empty segments."""
    path = path.strip("/")
    if len(path) > MAX_PATH or "\x00" in path or "\\" in path:
        return None
    if path and any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return path


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return git(args, git_dir=repo, timeout=30)


class _PipedResponse(StreamingResponse):
    """Streams git's output, and leaves `receive` alone.

    Starlette's StreamingResponse reads `receive` while it streams, to notice a
    disconnect; that would swallow the request body our feeder still needs (a
    push is streamed in while the response has started).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        iterator = self.body_iterator
        try:
            async for chunk in iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if isinstance(iterator, AsyncGenerator):
                await iterator.aclose()


class GitHttp:
    def __init__(self, settings: Settings, events: EventBus) -> None:
        self.settings = settings
        self.events = events
        self.log = get_logger(component="git-http")

    @property
    def root(self) -> Path:
        # Resolved per request: the data dir is made absolute when the server starts.
        return git_root(self.settings)

    def _repo(self, request: Request) -> tuple[str, str, Path] | None:
        owner, name = request.path_params["owner"], request.path_params["name"]
        found = repository_dir(self.root, owner, name)
        if found is None or not (found / "HEAD").is_file():
            return None
        return owner, name, found

    def _may_read(self, request: Request, repo_dir: Path) -> bool:
        return may_read(_caller(request), read_metadata(repo_dir), self.settings)

    def _refuse_read(self, request: Request) -> Response:
        if _caller(request) is None:
            return _challenge("reading this repository needs an API token as the password")
        return _not_found()

    def _readable_repo(self, request: Request) -> tuple[str, str, Path] | Response:
        """The repository a page names, or the answer to give when it is missing or the caller may not read it."""
        found = self._repo(request)
        if found is None:
            return _not_found()
        if not self._may_read(request, found[2]):
            return self._refuse_read(request)
        return found

    def _hooks(self) -> Path:
        """The directory of pltf's hooks, (re)written when its content is not the current one."""
        hooks = self.root / HOOKS_DIR
        hook = hooks / "pre-receive"
        try:
            current = hook.read_text() == PRE_RECEIVE and os.access(hook, os.X_OK)
        except OSError:
            current = False
        if not current:
            hooks.mkdir(parents=True, exist_ok=True)
            staged = hooks / f".pre-receive.{uuid.uuid4().hex}"
            staged.write_text(PRE_RECEIVE)
            staged.chmod(0o755)
            # A rename, so a push running meanwhile never runs a half-written hook.
            os.replace(staged, hook)
        return hooks

    # -- smart HTTP -----------------------------------------------------------

    async def smart(self, request: Request) -> Response:
        found = self._repo(request)
        if found is None:
            return _not_found()
        owner, name, repo_dir = found
        action = request.path_params.get("action", "info/refs")
        service = request.query_params.get("service") if action == "info/refs" else action
        if service not in SERVICES:
            # The dumb protocol would serve files of the bare repository one by one; smart clients never need it.
            return Response("only git's smart HTTP protocol is served\n", 403, media_type="text/plain")
        caller = _caller(request)
        metadata = read_metadata(repo_dir)
        remote_user = ""
        hook_env: dict[str, str] = {}
        if service == "git-receive-pack":
            if caller is None:
                return _challenge("pushing needs an API token as the password")
            if not may_read(caller, metadata, self.settings):
                return _not_found()
            refusal = push_refusal(caller, owner, name, metadata, self.settings)
            if refusal is not None:
                # git shows a text/plain body of a refusal to the user ("remote: ...").
                return Response(refusal + "\n", 403, media_type="text/plain")
            remote_user = caller.name
            hook_env = await asyncio.to_thread(self._hook_environment, repo_dir, metadata)
        elif not may_read(caller, metadata, self.settings):
            return self._refuse_read(request)
        on_success = None
        if action == "git-receive-pack":
            before = await asyncio.to_thread(_branch_heads, repo_dir)

            async def on_success() -> None:
                await asyncio.to_thread(_publish_push, self.events, owner, name, repo_dir, before)

        return await self._backend(request, repo_dir, remote_user, on_success, hook_env)

    def _hook_environment(self, repo_dir: Path, metadata: dict[str, Any]) -> dict[str, str]:
        """pltf's hooks for a push, and what they need to know about the repository."""
        env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath", "GIT_CONFIG_VALUE_0": str(self._hooks())}
        # Repositories made before protection was recorded follow today's PLTF_PROTECT_DEFAULT_BRANCH.
        if metadata.get("protectDefaultBranch", self.settings.forges.protect_default_branch):
            branch = metadata.get("defaultBranch") or _git(repo_dir, "symbolic-ref", "--short", "HEAD").stdout.decode()
            if isinstance(branch, str) and branch.strip():
                env["PLTF_PROTECTED_REF"] = f"refs/heads/{branch.strip()}"
        return env

    async def _backend(
        self,
        request: Request,
        repo_dir: Path,
        remote_user: str,
        on_success: Callable[[], Awaitable[None]] | None = None,
        hook_env: dict[str, str] | None = None,
    ) -> Response:
        env = git_environment()
        env.update(hook_env or {})
        env.update(
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            REQUEST_METHOD=request.method,
            PATH_INFO="/"
            + "/".join([*repo_dir.relative_to(self.root).parts, request.path_params.get("action", "info/refs")]),
            QUERY_STRING=request.url.query,
            CONTENT_TYPE=request.headers.get("content-type", ""),
            REMOTE_ADDR=request.client.host if request.client else "",
        )
        if request.headers.get("content-length"):
            env["CONTENT_LENGTH"] = request.headers["content-length"]
        # Without CONTENT_LENGTH, http-backend reads the body to its end: what a streamed (once chunked) push needs.
        if request.headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = request.headers["content-encoding"]
        protocol = request.headers.get("git-protocol", "")
        if protocol and GIT_PROTOCOL.match(protocol):
            env["GIT_PROTOCOL"] = protocol
        if remote_user:
            # git enables receive-pack only for an authenticated user (the repository has no http.receivepack).
            env["REMOTE_USER"] = remote_user
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        stdin, stdout, stderr = process.stdin, process.stdout, process.stderr

        async def feed() -> None:
            try:
                async for chunk in request.stream():
                    stdin.write(chunk)
                    await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # git stopped reading; its answer says why
            finally:
                stdin.close()

        errors = bytearray()

        async def drain_errors() -> None:
            # Read while git runs, so a full stderr pipe cannot stall it.
            while chunk := await stderr.read(READ_CHUNK):
                if len(errors) < READ_CHUNK:
                    errors.extend(chunk)

        tasks = [asyncio.create_task(feed()), asyncio.create_task(drain_errors())]
        try:
            head = await stdout.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await self._finish(process, tasks, errors, repo_dir, None)
            return Response("git http-backend failed\n", 500, media_type="text/plain")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        media_type = headers.pop("Content-Type", None)

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := await stdout.read(READ_CHUNK):
                    yield chunk
            finally:
                await self._finish(process, tasks, errors, repo_dir, on_success)

        return _PipedResponse(body(), status_code=status, headers=headers, media_type=media_type)

    async def _finish(
        self,
        process: asyncio.subprocess.Process,
        tasks: list[asyncio.Task[None]],
        errors: bytearray,
        repo: Path,
        on_success: Callable[[], Awaitable[None]] | None,
    ) -> None:
        if process.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), self.settings.forges.git_timeout_seconds)
        if process.returncode is None:  # the client went away mid-request, or git hung
            process.kill()
            await process.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if process.returncode == 0 and on_success is not None:
            await on_success()
        if process.returncode:
            self.log.warning(
                "git http-backend failed",
                repository=str(repo.relative_to(self.root)),
                exit_code=process.returncode,
                stderr=errors.decode(errors="replace")[-1000:],
            )

    # -- raw files and pages --------------------------------------------------

    async def raw(self, request: Request) -> Response:
        found = self._repo(request)
        rest = _safe_path(request.path_params["rest"])
        if found is None or not rest:
            return _not_found()
        if not self._may_read(request, found[2]):
            return self._refuse_read(request)
        split = await anyio.to_thread.run_sync(_ref_and_path, found[2], rest)
        if split is None or not split[1]:
            return _not_found()
        ref, path = split
        shown = await anyio.to_thread.run_sync(_git, found[2], "cat-file", "blob", f"{ref}:{path}")
        if shown.returncode != 0:
            return _not_found()
        # Text, never HTML: a repository's files must not run as pages of this origin.
        return Response(
            shown.stdout,
            media_type="text/plain; charset=utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
        )

    async def index(self, request: Request) -> Response:
        caller = _caller(request)
        if not self.settings.forges.git_public_reads and caller is None:
            return _challenge("browsing needs an API token as the password")
        repositories = [
            (owner, name, meta)
            for owner, name, meta in await anyio.to_thread.run_sync(list_repositories, self.root)
            if may_read(caller, meta, self.settings)
        ]
        return self._page("index.html", repositories=repositories)

    async def clone_url_page(self, request: Request) -> Response:
        """A browser opening the clone URL lands on the repository's page."""
        owner, name = request.path_params["owner"], request.path_params["name"]
        if repository_dir(self.root, owner, name) is None:
            return _not_found()
        return RedirectResponse(f"{self.settings.server.base_url}/git/{owner}/{name}", 302)

    async def tree(self, request: Request) -> Response:
        found = self._readable_repo(request)
        if isinstance(found, Response):
            return found
        owner, name, repo_dir = found
        rest = request.path_params.get("rest")
        ref: str | None = None
        path = ""
        if rest is not None:
            safe = _safe_path(rest)
            split = None if not safe else await anyio.to_thread.run_sync(_ref_and_path, repo_dir, safe)
            if split is None:
                return _not_found()
            ref, path = split
        view = await anyio.to_thread.run_sync(_tree_view, repo_dir, ref, path)
        if view is None:
            return _not_found()
        repo_url = f"{self.settings.server.base_url}/git/{owner}/{name}"
        parts = path.split("/") if path else []
        crumbs = [(part, f"{repo_url}/tree/{view['ref']}/{'/'.join(parts[: n + 1])}") for n, part in enumerate(parts)]
        return self._page(
            "tree.html",
            owner=owner,
            name=name,
            meta=read_metadata(repo_dir),
            repo_url=repo_url,
            clone_url=f"{repo_url}.git",
            path=path,
            crumbs=crumbs,
            **view,
        )

    async def change(self, request: Request) -> Response:
        """A change request's page: what it proposes, its conflicts, and its diff."""
        found = self._readable_repo(request)
        if isinstance(found, Response):
            return found
        owner, name, repo_dir = found
        try:
            change = get_change(repo_dir, request.path_params["number"])
        except PltfError:
            return _not_found()
        patch = await anyio.to_thread.run_sync(change_diff, repo_dir, change)
        repo_url = f"{self.settings.server.base_url}/git/{owner}/{name}"
        return self._page("change.html", owner=owner, name=name, repo_url=repo_url, change=change, diff=patch)

    def _page(self, template: str, **context: Any) -> HTMLResponse:
        html = _pages.get_template(template).render(base=self.settings.server.base_url, **context)
        return HTMLResponse(html, headers={"X-Content-Type-Options": "nosniff"})


def _ref_and_path(repo: Path, rest: str) -> tuple[str, str] | None:
    """`release/1/docs/a.md` as (ref, path): the shortest leading segments that name a commit, as GitHub
    reads its tree and raw URLs; None when no prefix does."""
    parts = rest.split("/")
    for end in range(1, len(parts) + 1):
        ref = "/".join(parts[:end])
        if not REF.match(ref):
            continue
        if _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}").returncode == 0:
            return ref, "/".join(parts[end:])
    return None


def _tree_view(repo: Path, ref: str | None, path: str) -> dict[str, Any] | None:
    """What the tree page shows at `ref:path`; None when either does not exist."""
    branches = _git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").stdout.decode().split()
    if ref is None:
        head = _git(repo, "symbolic-ref", "--short", "HEAD").stdout.decode().strip()
        ref = head if head in branches else (branches[0] if branches else None)
        if ref is None:
            return {"ref": None, "branches": [], "entries": [], "commits": [], "blob": None, "blob_text": None}
    commit = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        return None
    sha = commit.stdout.decode().strip()
    kind = _git(repo, "cat-file", "-t", f"{sha}:{path}" if path else f"{sha}^{{tree}}")
    if kind.returncode != 0:
        return None
    entries: list[dict[str, str]] = []
    blob: int | None = None
    blob_text: str | None = None
    if kind.stdout.strip() == b"blob":
        content = _git(repo, "cat-file", "blob", f"{sha}:{path}").stdout
        blob = len(content)
        if b"\x00" not in content[:8000]:
            blob_text = content[:MAX_SHOWN_BYTES].decode(errors="replace")
    else:
        listing = _git(repo, "ls-tree", "-z", "--long", f"{sha}:{path}" if path else sha).stdout.decode(
            errors="replace"
        )
        for record in filter(None, listing.split("\x00")):
            meta, _, entry_name = record.partition("\t")
            _, entry_kind, _, size = meta.split(maxsplit=3)
            entry_path = f"{path}/{entry_name}" if path else entry_name
            entries.append({"name": entry_name, "path": entry_path, "kind": entry_kind, "size": size.strip("-")})
        entries.sort(key=lambda e: (e["kind"] != "tree", e["name"]))
    log = _git(
        repo, "log", f"-n{COMMITS_SHOWN}", "--format=%H%x1f%an%x1f%ad%x1f%s%x1e", "--date=short", sha, "--", path or "."
    )
    commits = []
    for record in filter(None, (r.strip() for r in log.stdout.decode(errors="replace").split("\x1e"))):
        full_sha, author, date, subject = (record.split("\x1f") + ["", "", "", ""])[:4]
        commits.append({"sha": full_sha, "author": author, "date": date, "subject": subject})
    return {
        "ref": ref,
        "branches": branches,
        "entries": entries,
        "commits": commits,
        "blob": blob,
        "blob_text": blob_text,
    }


def _branch_heads(repo: Path) -> dict[str, str]:
    listed = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/")
    return dict(line.split(" ", 1) for line in listed.stdout.decode().splitlines() if " " in line)


def _publish_push(events: EventBus, owner: str, name: str, repo: Path, before: dict[str, str]) -> None:
    """Publishes what a push brought: each updated branch with its new commits and their times."""
    for ref, after in _branch_heads(repo).items():
        if before.get(ref) == after:
            continue
        span = [after] if ref not in before else [f"{before[ref]}..{after}"]
        listed = _git(repo, "log", "--format=%H %cI", "--max-count=500", *span)
        commits = [
            {"sha": sha, "timestamp": when}
            for sha, _, when in (line.partition(" ") for line in listed.stdout.decode().splitlines())
        ]
        events.publish(
            "forge.push",
            {
                "name": name,
                "owner": owner,
                "ref": ref,
                "after": after,
                "commits": commits,
                "deliveryId": f"push:{owner}/{name}:{ref}:{after}",
            },
        )


def git_routes(settings: Settings, events: EventBus) -> Router:
    """The /git/ routes, to mount on the app: `app.mount("/git", git_routes(settings, events))`.

    A Router rather than an app of its own, so `request.app` stays the main app
    and its token registry (`app.state.tokens`) is the one used here.
    """
    git = GitHttp(settings, events)
    return Router(
        routes=[
            Route("/", git.index),
            Route("/{owner}/{name}.git/info/refs", git.smart),
            Route("/{owner}/{name}.git/{action:str}", git.smart, methods=["POST"]),
            Route("/{owner}/{name}.git", git.clone_url_page),
            Route("/{owner}/{name}/raw/{rest:path}", git.raw),
            Route("/{owner}/{name}/tree/{rest:path}", git.tree),
            Route("/{owner}/{name}", git.tree),
            Route("/{owner}/{name}/changes/{number:int}", git.change),
        ]
    )
