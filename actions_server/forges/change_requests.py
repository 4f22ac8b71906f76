"""Pull requests (GitHub, Gitea) and merge requests (GitLab) over each provider's documented REST API:
the repository's clone URL and default branch, the open one for a branch, and opening one.

    GitHub  GET /repos/{o}/{r}; GET /repos/{o}/{r}/pulls?head={o}:{branch}&state=open; POST /repos/{o}/{r}/pulls
    Gitea   GET /repos/{o}/{r}; GET /repos/{o}/{r}/pulls?state=open (filtered by head.ref); POST /repos/{o}/{r}/pulls
    GitLab  GET /projects/{id}; GET /projects/{id}/merge_requests?state=opened&source_branch=…;
            POST /projects/{id}/merge_requests   ({id} is the URL-encoded path owner/name)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .rest import RestForge


@dataclass(frozen=True)
class RemoteRepository:
    clone_url: str
    default_branch: str


def _base(forge: RestForge, owner: str, name: str) -> str:
    if forge.provider == "gitlab":
        return f"/projects/{quote(f'{owner}/{name}', safe='')}"
    return f"/repos/{quote(owner)}/{quote(name)}"


def remote_repository(forge: RestForge, owner: str, name: str) -> RemoteRepository:
    found = forge.existing_or_422(
        _base(forge, owner, name),
        name=f"{owner}/{name}",
        described=f"repository {owner}/{name}",
        field="repository",
    )
    data = found.json()
    clone_url = data.get("http_url_to_repo") if forge.provider == "gitlab" else data.get("clone_url")
    return RemoteRepository(clone_url=str(clone_url), default_branch=str(data.get("default_branch") or "main"))


def find_change_request(forge: RestForge, owner: str, name: str, branch: str) -> str | None:
    """The web URL of the open pull or merge request from `branch`, if there is one."""
    base = _base(forge, owner, name)
    what = f"looking for an open change request from {branch}"
    if forge.provider == "gitlab":
        found = forge.expect(
            "GET", f"{base}/merge_requests", what, (200,), params={"state": "opened", "source_branch": branch}
        )
        items: list[dict[str, Any]] = found.json()
        return next((str(item["web_url"]) for item in items), None)
    params = {"state": "open", **({"head": f"{owner}:{branch}"} if forge.provider == "github" else {})}
    found = forge.expect("GET", f"{base}/pulls", what, (200,), params=params)
    items = found.json()
    return next((str(item["html_url"]) for item in items if (item.get("head") or {}).get("ref") == branch), None)


def open_change_request(
    forge: RestForge, owner: str, name: str, branch: str, target: str, title: str, body: str
) -> str:
    """Opens a pull or merge request from `branch` into `target`; returns its web URL."""
    base = _base(forge, owner, name)
    what = f"opening a change request from {branch}"
    if forge.provider == "gitlab":
        payload = {"source_branch": branch, "target_branch": target, "title": title, "description": body}
        return str(forge.expect("POST", f"{base}/merge_requests", what, (201,), json=payload).json()["web_url"])
    payload = {"title": title, "head": branch, "base": target, "body": body}
    return str(forge.expect("POST", f"{base}/pulls", what, (201,), json=payload).json()["html_url"])
