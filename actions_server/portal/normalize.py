"""From each source's payload to changes, deployments and incidents (Four Keys' `events_raw` → tables).

Each function takes the payload as it came and returns what it means; nothing
here touches the database. Payloads are untrusted: anything missing or of the
wrong type is skipped, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .model import (
    SHA,
    Change,
    Deployment,
    Incident,
    Normalised,
    PushCommit,
    ServiceUpdate,
    maybe_time,
    service_name,
)

ZERO_SHA = "0" * 40


def _get(payload: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(payload, Mapping):
            return None
        payload = payload.get(key)
    return payload


def _sha(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and SHA.match(value) else None


def _ci_deployment(id: str, service: str, success: bool, time: float, sha: Any) -> Deployment:
    """A CI run that deploys (a deploy workflow on GitHub, a default-branch pipeline on GitLab): to production."""
    return Deployment(id=id, service=service, environment="production", success=success, time=time, sha=_sha(sha))


def _environment(value: Any) -> str:
    return value.strip().lower()[:100] if isinstance(value, str) and value.strip() else "production"


def _commits(out: Normalised, service: str, head: str | None, commits: Any, time_key: str = "timestamp") -> None:
    if not isinstance(commits, list):
        return
    for commit in commits:
        sha = _sha(_get(commit, "id") or _get(commit, "sha"))
        when = maybe_time(_get(commit, time_key))
        if sha is None or when is None:
            continue
        out.changes.append(Change(service, sha, when))
        if head is not None:
            out.push_commits.append(PushCommit(service, head, sha))


# -- GitHub -------------------------------------------------------------------


def github(event_type: str, payload: Mapping[str, Any], deploy_workflow: str) -> Normalised:
    out = Normalised()
    service = service_name(_get(payload, "repository", "name"))
    if service is None:
        return out
    if event_type == "push":
        head = _sha(payload.get("after"))
        if head is not None and head != ZERO_SHA and not payload.get("deleted"):
            _commits(out, service, head, payload.get("commits"))
    elif event_type == "pull_request":
        pr = payload.get("pull_request")
        merged_sha = _sha(_get(pr, "merge_commit_sha"))
        opened = maybe_time(_get(pr, "created_at"))
        if payload.get("action") == "closed" and _get(pr, "merged") and merged_sha and opened is not None:
            # The merge commit's work started when the PR was opened (DevLake's change_timespan).
            out.changes.append(Change(service, merged_sha, opened))
    elif event_type == "deployment_status":
        state = _get(payload, "deployment_status", "state")
        deployment = payload.get("deployment")
        when = maybe_time(_get(payload, "deployment_status", "created_at"))
        deployment_id = _get(deployment, "id")
        if state in ("success", "failure", "error") and when is not None and deployment_id is not None:
            environment = _get(payload, "deployment_status", "environment") or _get(deployment, "environment")
            out.deployments.append(
                Deployment(
                    id=f"github:{service}:{deployment_id}",
                    service=service,
                    environment=_environment(environment),
                    success=state == "success",
                    time=when,
                    sha=_sha(_get(deployment, "sha")),
                )
            )
    elif event_type == "workflow_run":
        run = payload.get("workflow_run")
        name = str(_get(run, "name") or _get(payload, "workflow", "name") or "")
        conclusion = _get(run, "conclusion")
        when = maybe_time(_get(run, "updated_at"))
        run_id = _get(run, "id")
        if (
            payload.get("action") == "completed"
            and deploy_workflow
            and re.search(deploy_workflow, name, re.IGNORECASE)
            and conclusion in ("success", "failure")
            and when is not None
            and run_id is not None
        ):
            out.deployments.append(
                _ci_deployment(
                    f"github-run:{service}:{run_id}", service, conclusion == "success", when, _get(run, "head_sha")
                )
            )
    return out


# -- GitLab -------------------------------------------------------------------


def gitlab(event_type: str, payload: Mapping[str, Any]) -> Normalised:
    out = Normalised()
    project = payload.get("project")
    service = service_name(_get(project, "path") or _get(project, "name"))
    if service is None:
        return out
    kind = payload.get("object_kind") or event_type
    attributes = payload.get("object_attributes")
    if kind in ("push", "Push Hook"):
        head = _sha(payload.get("after") or payload.get("checkout_sha"))
        if head is not None and head != ZERO_SHA:
            _commits(out, service, head, payload.get("commits"))
    elif kind in ("merge_request", "Merge Request Hook"):
        merged_sha = _sha(_get(attributes, "merge_commit_sha"))
        opened = maybe_time(_get(attributes, "created_at"))
        if _get(attributes, "state") == "merged" and merged_sha and opened is not None:
            out.changes.append(Change(service, merged_sha, opened))
    elif kind in ("pipeline", "Pipeline Hook"):
        status = _get(attributes, "status")
        default_branch = _get(project, "default_branch")
        on_default = _get(attributes, "ref") == default_branch and not _get(attributes, "tag")
        when = maybe_time(_get(attributes, "finished_at"))
        pipeline_id = _get(attributes, "id")
        if on_default and status in ("success", "failed") and when is not None and pipeline_id is not None:
            # As in Four Keys: a pipeline that finishes on the default branch deploys it.
            out.deployments.append(
                _ci_deployment(
                    f"gitlab-pipeline:{service}:{pipeline_id}",
                    service,
                    status == "success",
                    when,
                    _get(attributes, "sha"),
                )
            )
    return out


# -- Argo CD notifications ------------------------------------------------------


def argocd(payload: Mapping[str, Any]) -> Normalised:
    """The body of the webhook template in docs/dora.md: app, revision, phase, finishedAt[, service, environment]."""
    out = Normalised()
    service = service_name(payload.get("service") or payload.get("app"))
    when = maybe_time(payload.get("finishedAt"))
    phase = payload.get("phase")
    if service is None or when is None or phase not in ("Succeeded", "Failed", "Error"):
        return out
    revision = _sha(payload.get("revision"))
    out.deployments.append(
        Deployment(
            id=f"argocd:{service}:{payload.get('app')}:{revision}:{payload.get('finishedAt')}",
            service=service,
            environment=_environment(payload.get("environment")),
            success=phase == "Succeeded",
            time=when,
            sha=revision,
        )
    )
    return out


# -- Alertmanager ---------------------------------------------------------------


def alertmanager(payload: Mapping[str, Any]) -> Normalised:
    """Webhook v4: each alert opens an incident while firing and closes it once resolved."""
    out = Normalised()
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        return out
    for alert in alerts:
        labels = _get(alert, "labels") or {}
        annotations = _get(alert, "annotations") or {}
        if not isinstance(labels, Mapping) or not isinstance(annotations, Mapping):
            continue
        service = service_name(labels.get("service") or labels.get("app") or labels.get("job"))
        started = maybe_time(_get(alert, "startsAt"))
        if service is None or started is None:
            continue
        fingerprint = _get(alert, "fingerprint") or "-".join(f"{k}={v}" for k, v in sorted(labels.items()))
        resolved = maybe_time(_get(alert, "endsAt")) if _get(alert, "status") == "resolved" else None
        title = annotations.get("summary") or labels.get("alertname")
        out.incidents.append(
            Incident(
                id=f"alertmanager:{fingerprint}:{_get(alert, 'startsAt')}",
                service=service,
                started_at=started,
                resolved_at=resolved,
                root_cause=_sha(annotations.get("root_cause") or labels.get("root_cause")),
                title=str(title)[:500] if title else None,
            )
        )
    return out


# -- The platform's own events --------------------------------------------------

PLATFORM_KINDS = ("repo.created", "forge.push", "preview.deployed", "preview.destroyed", "spec.applied")


def platform(kind: str, payload: Mapping[str, Any]) -> Normalised:
    out = Normalised()
    service = service_name(payload.get("service") or payload.get("name"))
    if service is None:
        return out
    if kind == "repo.created":
        owner = payload.get("team") or payload.get("owner")
        out.services.append(ServiceUpdate(service, team=_team(owner)))
    elif kind == "forge.push":
        head = _sha(payload.get("after"))
        if head is not None and head != ZERO_SHA:
            _commits(out, service, head, payload.get("commits"))
    elif kind == "preview.deployed":
        url = payload.get("url") or payload.get("previewUrl")
        out.services.append(ServiceUpdate(service, preview_url=str(url) if url else None))
        when = maybe_time(payload.get("timestamp"))
        preview_id = payload.get("previewId") or url
        if when is not None and preview_id:
            out.deployments.append(
                Deployment(
                    id=f"preview:{service}:{preview_id}:{payload.get('timestamp')}",
                    service=service,
                    environment=_environment(payload.get("environment") or "preview"),
                    success=True,
                    time=when,
                    sha=_sha(payload.get("sha")),
                )
            )
    elif kind == "preview.destroyed":
        out.services.append(ServiceUpdate(service, clear_preview=True))
    elif kind == "spec.applied":
        env = payload.get("env")
        given = payload.get("budget")
        budget: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        spec = {
            "monthlyUsd": budget.get("monthly_usd", budget.get("monthlyUsd")),
            "cpu": budget.get("cpu"),
            "memory": budget.get("memory"),
            "namespace": payload.get("namespace"),
            "experiment": payload.get("experiment"),
        }
        out.services.append(
            ServiceUpdate(
                service,
                team=_team(payload.get("team") or payload.get("owner")),
                spec_env=str(env) if isinstance(env, str) and env else "prod",
                spec=spec,
            )
        )
    return out


def _team(owner: Any) -> str | None:
    """`group:default/platform-team` or `platform-team` → `platform-team`."""
    if not isinstance(owner, str) or not owner.strip():
        return None
    return owner.strip().rsplit("/", 1)[-1].split(":")[-1][:200] or None
