"""The Kubernetes provider (GitOps): manifests committed to a GitOps repository that Argo CD applies.

For a preview `<service>-pr-<n>` (or `<service>-preview` for a branch) it writes,
in the GitOps repository (`actions_server.gitops`: the embedded forge's
`platform/gitops` unless `PLTF_GITOPS_URL` names another), under
`previews/<name>/`:

- `namespace.yaml`: the Namespace, labelled with owner, service, environment, TTL and experiment;
- `networkpolicy.yaml`: deny all ingress by default; allow from the ingress controller's namespace
  and from inside the namespace;
- `resourcequota.yaml` and `limitrange.yaml`: the preview's budget;
- `application.yaml`: an Argo CD Application deploying the service repository's chart
  (`charts/<service>`) with `values-preview.yaml`, its ingress host set to the clean URL's host.

`bootstrap/previews.yaml` is the root Application (app of apps, `prune: true`) an
administrator applies once; it syncs `previews/`. Destroying a preview removes
its directory, so Argo CD prunes the Namespace with everything in it. Nothing
relies on `CreateNamespace=true`, which leaves namespaces behind.

For the repository itself it also writes `previews/applicationsets/<service>.yaml`,
an ApplicationSet with the pull-request generator (GitHub, GitLab or Gitea, by
the repository's host): every open pull request gets an Application named with
`branch_slug` and `number`, in its own namespace `<service>-pr-<number>`, made
with the same Namespace, policies and budget by the `charts/preview-namespace`
chart (a second source of the Application, so the namespace goes when the PR closes).

With `PLTF_PREVIEW_KUBECONFIG`, readiness comes from the Application's health
in the cluster and destroy also deletes the Namespace and Application at once;
without it, readiness is the clean URL's `/readyz` answering 200.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import yaml

from ..config import Settings
from ..errors import PltfError
from ..forges.base import GitAuthor
from ..forges.gitpush import as_text, git
from ..forges.hosts import pr_generator
from .base import Log, Placement, PreviewParts, PreviewProvider, PreviewSpec, Probe, probe_readiness

if TYPE_CHECKING:
    from ..gitops import GitOpsRepository

AUTHOR = GitAuthor("pltf", "pltf@localhost")
IN_CLUSTER = "https://kubernetes.default.svc"
FINALIZER = "resources-finalizer.argocd.argoproj.io"
NAMESPACE_CHART = "charts/preview-namespace"


def dump(objects: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(obj, sort_keys=False) for obj in objects)


# -- manifests ---------------------------------------------------------------


def namespace_objects(
    namespace: str, labels: dict[str, str], settings: Settings, annotations: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The Namespace and its guard rails, by file name."""
    meta = {"namespace": namespace, "labels": dict(labels)}
    return {
        "namespace.yaml": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": dict(labels),
                **({"annotations": annotations} if annotations else {}),
            },
        },
        "networkpolicy.yaml": {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress", **meta},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {
                                        "kubernetes.io/metadata.name": settings.previews.preview_ingress_namespace
                                    }
                                }
                            },
                            {"podSelector": {}},
                        ]
                    }
                ],
            },
        },
        "resourcequota.yaml": {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "preview-budget", **meta},
            "spec": {
                "hard": {
                    "requests.cpu": settings.previews.preview_quota_cpu,
                    "requests.memory": settings.previews.preview_quota_memory,
                    "limits.cpu": settings.previews.preview_quota_cpu,
                    "limits.memory": settings.previews.preview_quota_memory,
                    "pods": "10",
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                    "persistentvolumeclaims": "2",
                }
            },
        },
        "limitrange.yaml": {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "preview-defaults", **meta},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "500m", "memory": "256Mi"},
                        "defaultRequest": {"cpu": "50m", "memory": "64Mi"},
                        "max": {
                            "cpu": settings.previews.preview_quota_cpu,
                            "memory": settings.previews.preview_quota_memory,
                        },
                    }
                ]
            },
        },
    }


def chart_source(repo_url: str, revision: str, service: str, host: str, image_tag: str | None) -> dict[str, Any]:
    parameters = [{"name": "ingress.host", "value": host}, {"name": "environment", "value": "preview"}]
    if image_tag:
        parameters.append({"name": "image.tag", "value": image_tag})
    return {
        "repoURL": repo_url,
        "targetRevision": revision,
        "path": f"charts/{service}",
        "helm": {"releaseName": service, "valueFiles": ["values-preview.yaml"], "parameters": parameters},
    }


def preview_application(spec: PreviewSpec, settings: Settings, revision: str, image_tag: str | None) -> dict[str, Any]:
    host = urlsplit(spec.url).hostname or spec.name
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": f"preview-{spec.name}"[:253],
            "namespace": settings.previews.preview_argocd_namespace,
            "labels": dict(spec.labels),
            "annotations": {"pltf.dev/preview-url": spec.url, "pltf.dev/expires-at": str(int(spec.expires_at))},
            "finalizers": [FINALIZER],
        },
        "spec": {
            "project": settings.previews.preview_argocd_project,
            "source": chart_source(spec.repo_url, revision, spec.service, host, image_tag),
            "destination": {"server": IN_CLUSTER, "namespace": spec.namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["ServerSideApply=true"],
                "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
            },
        },
    }


def root_application(settings: Settings, gitops_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "pltf-previews",
            "namespace": settings.previews.preview_argocd_namespace,
            "labels": {"app.kubernetes.io/managed-by": "pltf"},
        },
        "spec": {
            "project": settings.previews.preview_argocd_project,
            "source": {
                "repoURL": gitops_url,
                "targetRevision": settings.gitops.gitops_branch,
                "path": "previews",
                "directory": {"recurse": True},
            },
            "destination": {"server": IN_CLUSTER, "namespace": settings.previews.preview_argocd_namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


def scm_generator(repo_url: str, settings: Settings) -> dict[str, Any]:
    """The pull-request generator for the repository's forge (forges/hosts.py knows which)."""
    return pr_generator(repo_url, settings)


def applicationset(
    service: str, repo_url: str, owner_label: str, settings: Settings, gitops_url: str
) -> dict[str, Any]:
    namespace = f"{service}-pr-{{{{.number}}}}"
    host = f"{service}-pr-{{{{.number}}}}.{settings.previews.preview_domain}"
    labels = {
        "pltf.dev/owner": owner_label,
        "pltf.dev/service": service,
        "pltf.dev/environment": "preview",
        "app.kubernetes.io/managed-by": "pltf",
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {
            "name": f"{service}-previews",
            "namespace": settings.previews.preview_argocd_namespace,
            "labels": labels,
        },
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"pullRequest": {**scm_generator(repo_url, settings), "requeueAfterSeconds": 300}}],
            "template": {
                "metadata": {
                    # branch_slug is cut to 50 characters, leaving room for the number.
                    "name": f"{service}-{{{{.branch_slug}}}}-{{{{.number}}}}",
                    "labels": {**labels, "pltf.dev/pull-request": "{{.number}}", "pltf.dev/branch": "{{.branch_slug}}"},
                    "annotations": {"pltf.dev/preview-url": f"https://{host}/"},
                    "finalizers": [FINALIZER],
                },
                "spec": {
                    "project": settings.previews.preview_argocd_project,
                    "sources": [
                        chart_source(repo_url, "{{.head_sha}}", service, host, "{{.head_sha}}"),
                        {
                            "repoURL": gitops_url,
                            "targetRevision": settings.gitops.gitops_branch,
                            "path": NAMESPACE_CHART,
                            "helm": {
                                "releaseName": "preview-namespace",
                                "parameters": [
                                    {"name": "namespace", "value": namespace},
                                    {"name": "owner", "value": owner_label},
                                    {"name": "service", "value": service},
                                    {"name": "experiment", "value": "pr-{{.number}}"},
                                    {"name": "ttl", "value": f"{settings.previews.preview_ttl_seconds}s"},
                                ],
                            },
                        },
                    ],
                    "destination": {"server": IN_CLUSTER, "namespace": namespace},
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": True},
                        "syncOptions": ["ServerSideApply=true"],
                    },
                },
            },
        },
    }


def namespace_chart(settings: Settings) -> dict[str, str]:
    """`charts/preview-namespace`: the same Namespace, policies and budget, for ApplicationSet previews."""
    placeholder = {
        "pltf.dev/owner": "{{ .Values.owner }}",
        "pltf.dev/service": "{{ .Values.service }}",
        "pltf.dev/environment": "preview",
        "pltf.dev/ttl": "{{ .Values.ttl }}",
        "pltf.dev/experiment": "{{ .Values.experiment }}",
        "app.kubernetes.io/managed-by": "pltf",
    }
    objects = namespace_objects("{{ .Values.namespace }}", placeholder, settings)
    files = {
        f"{NAMESPACE_CHART}/Chart.yaml": yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "preview-namespace",
                "description": "A preview's Namespace, default-deny NetworkPolicy, ResourceQuota and LimitRange (pltf)",
                "type": "application",
                "version": "1.0.0",
            },
            sort_keys=False,
        ),
        f"{NAMESPACE_CHART}/values.yaml": yaml.safe_dump(
            {"namespace": "", "owner": "unknown", "service": "", "experiment": "none", "ttl": "14400s"}, sort_keys=False
        ),
    }
    for name, obj in objects.items():
        files[f"{NAMESPACE_CHART}/templates/{name}"] = yaml.safe_dump(obj, sort_keys=False)
    return files


# -- a small Kubernetes API client -------------------------------------------


class KubeClient:
    """Just enough of the Kubernetes API, configured from a kubeconfig (token or client certificate)."""

    def __init__(
        self, kubeconfig: Path, context: str | None = None, transport: httpx.BaseTransport | None = None
    ) -> None:
        config = yaml.safe_load(kubeconfig.read_text()) or {}
        name = context or config.get("current-context")
        ctx = _named(config.get("contexts"), name, "context")
        cluster = _named(config.get("clusters"), ctx.get("cluster"), "cluster")
        user = _named(config.get("users"), ctx.get("user"), "user") if ctx.get("user") else {}
        self.server = str(cluster["server"]).rstrip("/")
        self._scratch = tempfile.TemporaryDirectory(prefix="pltf-kube-")
        headers = {}
        if user.get("token"):
            headers["Authorization"] = f"Bearer {user['token']}"
        elif user.get("tokenFile"):
            headers["Authorization"] = f"Bearer {Path(user['tokenFile']).read_text().strip()}"
        verify: ssl.SSLContext | bool = True
        if cluster.get("insecure-skip-tls-verify"):
            verify = False
        else:
            verify = ssl.create_default_context()
            ca = self._material(cluster, "certificate-authority")
            if ca is not None:
                verify.load_verify_locations(ca)
            cert, key = self._material(user, "client-certificate"), self._material(user, "client-key")
            if cert is not None and key is not None:
                verify.load_cert_chain(cert, key)
        self.client = httpx.Client(
            base_url=self.server, headers=headers, verify=verify, timeout=10.0, transport=transport
        )

    def _material(self, section: dict[str, Any], key: str) -> str | None:
        if section.get(f"{key}-data"):
            path = Path(self._scratch.name) / key
            path.write_bytes(base64.b64decode(section[f"{key}-data"]))
            path.chmod(0o600)
            return str(path)
        return str(section[key]) if section.get(key) else None

    def get(self, path: str) -> dict[str, Any] | None:
        response = self.client.get(path)
        if response.status_code == 404:
            return None
        self._raise(response, f"GET {path}")
        return dict(response.json())

    def delete(self, path: str) -> bool:
        response = self.client.delete(path, params={"propagationPolicy": "Foreground"})
        if response.status_code == 404:
            return False
        self._raise(response, f"DELETE {path}")
        return True

    def application(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications/{name}")

    @staticmethod
    def _raise(response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            reason = ""
            try:
                reason = str(response.json().get("message", ""))
            except ValueError:
                reason = response.text[:200]
            raise PltfError(f"Kubernetes API {what}: {response.status_code} {reason}", 502, "kubernetes_error")

    def close(self) -> None:
        self.client.close()
        self._scratch.cleanup()


def _named(items: Any, name: Any, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(what) or {})
    raise PltfError(f"the kubeconfig has no {what} {name!r}", 500, "kubeconfig")


# -- the provider ------------------------------------------------------------


class KubernetesProvider(PreviewProvider):
    name = "kubernetes"

    def __init__(self, services: PreviewParts, root: Path, kube: KubeClient | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.root = root
        self._gitops: GitOpsRepository | None = None
        self.kube = kube
        if kube is None and self.settings.previews.preview_kubeconfig is not None:
            self.kube = KubeClient(
                self.settings.previews.preview_kubeconfig, self.settings.previews.preview_kube_context
            )

    @property
    def gitops(self) -> GitOpsRepository:
        if self._gitops is None:
            from ..gitops import GitOpsRepository

            self._gitops = GitOpsRepository.from_settings(self.settings, self.services.redactor)
        return self._gitops

    def files(self, spec: PreviewSpec, revision: str, image_tag: str | None) -> dict[str, str]:
        """Every file a preview adds to the GitOps repository (the shared ones included)."""
        settings = self.settings
        base = f"previews/{spec.name}"
        annotations = {"pltf.dev/preview-url": spec.url, "pltf.dev/preview-id": spec.id}
        objects = namespace_objects(spec.namespace, spec.labels, settings, annotations)
        files = {f"{base}/{name}": yaml.safe_dump(obj, sort_keys=False) for name, obj in objects.items()}
        files[f"{base}/application.yaml"] = yaml.safe_dump(
            preview_application(spec, settings, revision, image_tag), sort_keys=False
        )
        owner = spec.labels.get("pltf.dev/owner", "unknown")
        files[f"previews/applicationsets/{spec.service}.yaml"] = yaml.safe_dump(
            applicationset(spec.service, spec.repo_url, owner, settings, self.gitops.url), sort_keys=False
        )
        files["bootstrap/previews.yaml"] = yaml.safe_dump(root_application(settings, self.gitops.url), sort_keys=False)
        files.update(namespace_chart(settings))
        return files

    def _resolve(self, spec: PreviewSpec) -> tuple[str, str | None]:
        """The revision Argo CD deploys, and the image tag CI pushed for it (the commit sha), when known."""
        pull = f"refs/pull/{spec.pull_request}/head" if spec.pull_request is not None else None
        revision = pull or spec.ref or "HEAD"
        try:
            done = as_text(
                git(["ls-remote", "--", spec.repo_url, revision], timeout=self.settings.forges.git_timeout_seconds)
            )
        except subprocess.TimeoutExpired:
            return revision, None
        sha = done.stdout.split("\t", 1)[0].strip() if done.returncode == 0 and done.stdout.strip() else None
        return (sha, sha) if sha else (revision, None)

    def create(self, spec: PreviewSpec, log: Log) -> Placement:
        revision, image_tag = self._resolve(spec)
        files = self.files(spec, revision, image_tag)
        from ..gitops import Changes

        log(f"writing {len(files)} manifests for {spec.namespace} to the GitOps repository {self.gitops.url}")
        sha = self.gitops.apply(
            Changes(files, replace=(f"previews/{spec.name}",)), f"preview {spec.name}: create ({spec.id})", AUTHOR
        )
        log(f"committed {sha[:12] if sha else '(no change)'}; Argo CD applies it (root app bootstrap/previews.yaml)")
        return Placement(
            state={
                "gitopsCommit": sha,
                "revision": revision,
                "application": f"preview-{spec.name}"[:253],
                "files": sorted(files),
            }
        )

    def probe(self, spec: PreviewSpec, placement: Placement) -> Probe:
        if self.kube is not None:
            try:
                app = self.kube.application(
                    self.settings.previews.preview_argocd_namespace, placement.state["application"]
                )
            except (PltfError, httpx.HTTPError) as exc:
                return Probe("starting", f"cannot read the Application: {exc}")
            if app is None:
                return Probe("starting", "Argo CD has not created the Application yet")
            status = app.get("status") or {}
            health = (status.get("health") or {}).get("status", "Unknown")
            sync = (status.get("sync") or {}).get("status", "Unknown")
            if health == "Healthy" and sync == "Synced":
                return Probe("ready")
            conditions = [c.get("message", "") for c in status.get("conditions") or []]
            return Probe("starting", f"Application is {sync}/{health}", conditions[-5:])
        return probe_readiness(f"{spec.url.rstrip('/')}/readyz", timeout=2.0)

    def destroy(self, spec: PreviewSpec, placement: Placement, log: Log) -> None:
        from ..gitops import Changes

        sha = self.gitops.apply(
            Changes({}, replace=(f"previews/{spec.name}",)), f"preview {spec.name}: destroy ({spec.id})", AUTHOR
        )
        log(
            f"removed previews/{spec.name}/ from the GitOps repository"
            + (f" ({sha[:12]})" if sha else " (already gone)")
        )
        if self.kube is not None:
            application = placement.state.get("application") or f"preview-{spec.name}"
            if self.kube.delete(
                f"/apis/argoproj.io/v1alpha1/namespaces/{self.settings.previews.preview_argocd_namespace}/applications/{application}"
            ):
                log(f"deleted Application {application}")
            if self.kube.delete(f"/api/v1/namespaces/{spec.namespace}"):
                log(f"deleted Namespace {spec.namespace}")
