"""The Kubernetes provider: GitOps manifests in the embedded forge's platform/gitops repository.

Every manifest is validated with the golden template's validators (kubernetes-validate --strict
and the npm kubernetes-models / @kubernetes-models/argo-cd schemas). No cluster is reachable
here, so the Kubernetes API client is exercised against an in-process fake (httpx.MockTransport)
that answers the documented request and response shapes.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from previews_support import service_repository

from actions_server.config import Settings
from actions_server.previews import PreviewManager, PreviewRequest
from actions_server.previews.kubernetes import KubeClient, KubernetesProvider, scm_generator
from actions_server.services import Services
from actions_server.templates.check import Manifest, check_kubernetes_models, check_kubernetes_validate
from conftest import admin_client as running
from conftest import make_settings

PREVIEW_FILES = ["application.yaml", "limitrange.yaml", "namespace.yaml", "networkpolicy.yaml", "resourcequota.yaml"]


def k8s_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "preview_provider": "kubernetes",
        "preview_sources": [f"file://{tmp_path}/"],
        "run_wait_seconds": 3.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def gitops_files(settings: Settings) -> dict[str, str]:
    bare = settings.storage.data_dir / "git" / "platform" / "gitops.git"
    names = subprocess.run(
        ["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        name: subprocess.run(
            ["git", "--git-dir", str(bare), "show", f"main:{name}"], capture_output=True, text=True, check=True
        ).stdout
        for name in names
    }


def manifests(files: dict[str, str]) -> list[Manifest]:
    found = []
    for path, text in files.items():
        if path.endswith(".yaml") and "/templates/" not in path and not path.startswith("charts/"):
            found += [Manifest(path, doc) for doc in yaml.safe_load_all(text) if doc]
    return found


def render_namespace_chart(files: dict[str, str], tmp_path: Path, values: dict[str, Any]) -> list[Manifest]:
    import helm_python as helm

    chart = tmp_path / "chart-copy"
    for path, text in files.items():
        if path.startswith("charts/preview-namespace/"):
            target = chart / path.removeprefix("charts/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    with helm.Chart.load(str(chart / "preview-namespace")) as loaded:
        rendered = loaded.render(values, name="preview-namespace", namespace=values["namespace"], is_install=True)
    return [
        Manifest(f"preview-namespace/{name}", doc)
        for name, text in sorted(rendered.items())
        for doc in yaml.safe_load_all(text)
        if doc
    ]


@pytest.fixture
def repo(tmp_path: Path) -> str:
    return service_repository(tmp_path)


def test_create_writes_valid_manifests_and_destroy_removes_them(tmp_path: Path, repo: str) -> None:
    settings = k8s_settings(tmp_path)
    with running(settings) as client:
        body = {
            "repoUrl": repo,
            "service": "users-api",
            "pullRequest": 7,
            "owner": "group:default/team-a",
            "experiment": "exp-1",
        }
        started = time.monotonic()
        response = client.post("/v1/actions/preview:create/runs", json={"input": body})
        assert time.monotonic() - started < 3.0
        assert response.status_code == 200, response.text
        out = response.json()["output"]
        # No cluster answers here: the run answers within its bound, with the URL and "starting".
        assert out == {
            "previewId": out["previewId"],
            "previewUrl": "https://users-api-pr-7.preview.localhost/",
            "namespace": "users-api-pr-7",
            "status": "starting",
            "expiresAt": out["expiresAt"],
            "provider": "kubernetes",
        }
        files = gitops_files(settings)
        assert sorted(p.rsplit("/", 1)[1] for p in files if p.startswith("previews/users-api-pr-7/")) == PREVIEW_FILES
        assert "previews/applicationsets/users-api.yaml" in files and "bootstrap/previews.yaml" in files

        found = manifests(files)
        found += render_namespace_chart(
            files,
            tmp_path,
            {
                "namespace": "users-api-pr-9",
                "owner": "team-a",
                "service": "users-api",
                "experiment": "pr-9",
                "ttl": "14400s",
            },
        )
        kinds = sorted(m.obj["kind"] for m in found)
        assert kinds.count("Namespace") == 2 and "ApplicationSet" in kinds and kinds.count("Application") == 2
        assert check_kubernetes_validate(found) == []
        assert check_kubernetes_models(found) == []

        namespace = yaml.safe_load(files["previews/users-api-pr-7/namespace.yaml"])
        assert namespace["metadata"]["name"] == "users-api-pr-7"
        labels = namespace["metadata"]["labels"]
        assert labels["pltf.dev/owner"] == "team-a" and labels["pltf.dev/service"] == "users-api"
        assert labels["pltf.dev/environment"] == "preview" and labels["pltf.dev/experiment"] == "exp-1"
        assert labels["pltf.dev/ttl"] == "14400s"
        policy = yaml.safe_load(files["previews/users-api-pr-7/networkpolicy.yaml"])
        assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "ingress-nginx"
        }
        app = yaml.safe_load(files["previews/users-api-pr-7/application.yaml"])
        source = app["spec"]["source"]
        sha = subprocess.run(
            ["git", "ls-remote", repo, "refs/pull/7/head"], capture_output=True, text=True
        ).stdout.split()[0]
        assert source["targetRevision"] == sha and source["path"] == "charts/users-api"
        assert source["helm"]["valueFiles"] == ["values-preview.yaml"]
        assert {"name": "ingress.host", "value": "users-api-pr-7.preview.localhost"} in source["helm"]["parameters"]
        assert {"name": "image.tag", "value": sha} in source["helm"]["parameters"]
        assert app["spec"]["destination"]["namespace"] == "users-api-pr-7"
        assert "CreateNamespace=true" not in str(files)

        destroyed = client.post("/v1/actions/preview:destroy/runs", json={"input": {"previewId": out["previewId"]}})
        assert destroyed.status_code == 200, destroyed.text
        after = gitops_files(settings)
        assert not any(p.startswith("previews/users-api-pr-7/") for p in after)  # the Namespace included
        assert "previews/applicationsets/users-api.yaml" in after  # PR previews of the repository stay wired


def test_the_applicationset_uses_the_pull_request_generator(tmp_path: Path, repo: str) -> None:
    settings = k8s_settings(tmp_path)
    with running(settings) as client:
        client.post("/v1/actions/preview:create/runs", json={"input": {"repoUrl": repo, "service": "users-api"}})
        appset = yaml.safe_load(gitops_files(settings)["previews/applicationsets/users-api.yaml"])
    spec = appset["spec"]
    assert spec["goTemplate"] is True
    (generator,) = spec["generators"]
    assert set(generator["pullRequest"]) == {"gitea", "requeueAfterSeconds"}  # a self-hosted forge
    template = spec["template"]
    assert template["metadata"]["name"] == "users-api-{{.branch_slug}}-{{.number}}"
    assert template["spec"]["destination"]["namespace"] == "users-api-pr-{{.number}}"
    chart, namespace_chart = template["spec"]["sources"]
    assert chart["targetRevision"] == "{{.head_sha}}"
    assert {"name": "ingress.host", "value": "users-api-pr-{{.number}}.preview.localhost"} in chart["helm"][
        "parameters"
    ]
    assert namespace_chart["path"] == "charts/preview-namespace"
    assert {"name": "namespace", "value": "users-api-pr-{{.number}}"} in namespace_chart["helm"]["parameters"]
    assert "resources-finalizer.argocd.argoproj.io" in template["metadata"]["finalizers"]


def test_the_generator_fits_the_forge(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, preview_pr_labels="preview")
    github = scm_generator("https://github.com/acme/users-api.git", settings)
    assert github == {
        "github": {
            "owner": "acme",
            "repo": "users-api",
            "tokenRef": {"secretName": "pltf-scm-token", "key": "token"},
            "labels": ["preview"],
        }
    }
    gitlab = scm_generator("https://gitlab.example.com/group/sub/users-api.git", settings)["gitlab"]
    assert gitlab["project"] == "group/sub/users-api" and gitlab["pullRequestState"] == "opened"
    assert gitlab["api"] == "https://gitlab.example.com/"
    gitea = scm_generator("https://git.example.com/acme/users-api.git", settings)["gitea"]
    assert gitea == {
        "owner": "acme",
        "repo": "users-api",
        "api": "https://git.example.com",
        "tokenRef": gitea["tokenRef"],
    }


def test_the_validators_catch_broken_manifests() -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "twenty"}},
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"podSelector": {}, "bogus": 1},
    }
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "a"},
        "spec": {"project": "default", "source": {"repoURL": "x"}},
    }
    assert check_kubernetes_validate([Manifest("policy", policy)]) != []
    assert len(check_kubernetes_models([Manifest("quota", quota), Manifest("app", app)])) == 2


def test_with_a_kubeconfig_readiness_comes_from_argo_cd_and_destroy_deletes_the_namespace(
    tmp_path: Path, repo: str
) -> None:
    seen: list[tuple[str, str, str | None]] = []

    def cluster(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        if request.method == "GET" and request.url.path.endswith("/applications/preview-users-api"):
            status = {"health": {"status": "Healthy"}, "sync": {"status": "Synced"}}
            return httpx.Response(200, json={"kind": "Application", "status": status})
        if request.method == "DELETE":
            return httpx.Response(200, json={"kind": "Status", "status": "Success"})
        return httpx.Response(404, json={"kind": "Status", "message": "not found"})

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dev",
                "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": "https://k8s.example.test:6443", "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "kube-token-123"}}],
            }
        )
    )
    settings = k8s_settings(tmp_path)
    services = Services.create(settings)
    try:
        kube = KubeClient(kubeconfig, transport=httpx.MockTransport(cluster))
        provider = KubernetesProvider(services, tmp_path / "previews", kube=kube)
        manager = PreviewManager(settings, services.engine, services.redactor, provider)
        lines: list[str] = []
        request = PreviewRequest(service="users-api", repo_url=repo, owner="group:default/team-a")
        preview = manager.create(request, None, lines.append, time.monotonic() + 10)
        assert preview["status"] == "ready" and preview["namespace"] == "users-api-preview"
        destroyed = manager.destroy(preview["id"], lines.append)
        assert destroyed["status"] == "destroyed"
        assert ("DELETE", "/api/v1/namespaces/users-api-preview", "Bearer kube-token-123") in seen
        assert (
            "DELETE",
            "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/preview-users-api",
            "Bearer kube-token-123",
        ) in seen
        assert "kube-token-123" not in "\n".join(lines)
        kube.close()
    finally:
        services.close()
