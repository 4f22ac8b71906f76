"""The one interface every preview provider implements.

Like httpx's transports: `preview:create` and `preview:destroy` talk to the
`PreviewManager` (persistence, idempotency, the cap, TTLs, the reaper), and the
manager talks to one `PreviewProvider`. A provider does three things and keeps
no state of its own between calls: whatever it must remember about an
environment it returns as a JSON-able `Placement`, which the manager stores
and hands back.

    provider = LocalProvider(settings, redactor)
    spec = PreviewSpec(id="pv-1", name="users-api-pr-7", namespace="users-api-pr-7", service="users-api",
                       repo_url="http://127.0.0.1:8787/git/platform-team/users-api.git", ref=None,
                       pull_request=7, url="http://users-api-pr-7.preview.localhost:8787/", ...)
    placement = provider.create(spec, log=print)         # clone, install, start; raises PltfError
    while (probe := provider.probe(spec, placement)).status == "starting":
        time.sleep(0.1)                                   # the manager polls with a deadline
    print(probe.status, probe.detail, probe.logs)         # "ready", or "failed" with the last log lines
    provider.destroy(spec, placement, log=print)          # idempotent; frees everything

Providers: `local` (the service runs as a supervised process on this host,
served through the action server at its clean URL) and `kubernetes` (GitOps:
manifests committed to a repository that Argo CD applies).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import httpx

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..config import Settings
    from ..events import EventBus
    from ..redact import Redactor

Log = Callable[[str], None]
ProbeStatus = Literal["starting", "ready", "failed"]


class PreviewParts(Protocol):
    """What previews take from the application: naming the process's `Services` here would
    make previews import the module that builds them."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def redactor(self) -> Redactor: ...

    @property
    def events(self) -> EventBus: ...


@dataclass(frozen=True)
class PreviewSpec:
    """What to run, and under which names. Every field is already validated."""

    id: str
    name: str
    """`<service>` or `<service>-pr-<n>`: the host label of the clean URL."""
    namespace: str
    """`<service>-preview` or `<service>-pr-<n>`: the environment's (Kubernetes) namespace."""
    service: str
    repo_url: str
    ref: str | None
    pull_request: int | None
    url: str
    """The clean URL users open."""
    owner: str
    experiment: str | None
    ttl_seconds: int
    expires_at: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Placement:
    """What a provider made, as it wants it remembered (stored as JSON by the manager)."""

    state: dict[str, Any] = field(default_factory=dict)
    upstream: str | None = None
    """Where the action server proxies the clean URL to (`http://127.0.0.1:<port>`); None when not proxied."""

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "upstream": self.upstream}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Placement:
        value = value or {}
        return cls(state=dict(value.get("state") or {}), upstream=value.get("upstream"))


@dataclass
class Probe:
    status: ProbeStatus
    detail: str = ""
    logs: list[str] = field(default_factory=list)
    """The service's last log lines, when the provider can see them."""


def probe_readiness(url: str, timeout: float, logs: Callable[[], list[str]] = list) -> Probe:
    """Ready once a GET of the service's readiness URL answers 200, starting until then; `logs` reads the
    service's last log lines for a service that answers but is not ready."""
    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Probe("starting", f"{url} is not answering yet ({type(exc).__name__})")
    if answer.status_code == 200:
        return Probe("ready")
    return Probe("starting", f"{url} answered {answer.status_code}", logs())


class PreviewProvider(ABC):
    """A place previews run. Methods block (call them from a worker thread) and raise `PltfError`."""

    name: ClassVar[str]
    owner_key: str | None = None
    """Who may manage its environments: the local provider's processes belong to one host and
    preview directory; None means any replica may (the state lives in a cluster)."""

    @abstractmethod
    def create(self, spec: PreviewSpec, log: Log) -> Placement:
        """Makes the environment and starts it. On failure it cleans up what it made, then raises."""

    @abstractmethod
    def probe(self, spec: PreviewSpec, placement: Placement) -> Probe:
        """Is it ready (its `/readyz` answers 200), still starting, or failed? Quick; never waits long."""

    @abstractmethod
    def destroy(self, spec: PreviewSpec, placement: Placement, log: Log) -> None:
        """Stops it and frees everything it used. Idempotent: destroying twice is not an error."""

    def alive(self, spec: PreviewSpec, placement: Placement) -> bool:
        """After a restart: is this environment still there to adopt? (Default: yes, e.g. in a cluster.)"""
        return True

    def logs(self, spec: PreviewSpec, placement: Placement) -> list[str]:
        """The service's last log lines, when the provider can see them."""
        return []

    def restart(self, spec: PreviewSpec, placement: Placement, log: Log) -> Placement | None:
        """Restarts a crashed environment in place; None when the provider does not supervise processes."""
        return None

    def sweep(self, keep: set[str], log: Log) -> list[str]:
        """Removes leftovers (directories, processes) of previews not in `keep`; returns what it removed."""
        return []
