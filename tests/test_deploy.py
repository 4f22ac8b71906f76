"""pltf's own Dockerfile and Helm chart (deploy/helm/pltf), checked as the golden template's are."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from actions_server.templates import check as tc
from conftest import ROOT

CHART = ROOT / "deploy" / "helm" / "pltf"


def rendered(values_file: str = "values.yaml") -> dict[str, dict[str, Any]]:
    findings: list[tc.Finding] = []
    manifests = tc.render_charts(ROOT, findings, charts=[CHART])
    assert findings == []
    return {m.obj["kind"]: m.obj for m in manifests if m.source.endswith(f"({values_file})")}


def test_the_dockerfile_is_hadolint_clean_pinned_and_not_root() -> None:
    assert tc.check_dockerfile(ROOT) == []


def test_the_chart_lints_renders_and_validates_against_the_kubernetes_schemas() -> None:
    findings: list[tc.Finding] = []
    manifests = tc.render_charts(ROOT, findings, charts=[CHART])
    assert findings == []
    assert {m.source.rsplit(" ", 1)[1] for m in manifests} == {"(values.yaml)", "(values-single.yaml)"}
    assert tc.check_kubernetes_validate(manifests) == []
    assert tc.check_kubernetes_models(manifests) == []


def test_replicas_share_postgresql_and_a_read_write_many_volume() -> None:
    objects = rendered()
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PLTF_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pltf-database", "key": "url"}
    assert "value" not in env["PLTF_API_TOKEN"] and env["PLTF_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
    assert env["PLTF_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/var/lib/pltf"] == "data"
    [claim] = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if v["name"] == "data"]
    assert objects["PersistentVolumeClaim"]["metadata"]["name"] == claim
    assert objects["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"]
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert objects["NetworkPolicy"]["spec"]["policyTypes"] == ["Ingress"]
    assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"


def test_one_replica_on_sqlite_is_recreated_not_rolled() -> None:
    objects = rendered("values-single.yaml")
    deployment = objects["Deployment"]
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert deployment["spec"]["replicas"] == 1 and "PLTF_DATABASE_URL" not in env
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert objects["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "PodDisruptionBudget" not in objects


def test_several_replicas_without_postgresql_do_not_render(tmp_path: Path) -> None:
    chart = tmp_path / "charts" / "pltf"
    shutil.copytree(CHART, chart)
    (chart / "values-sqlite.yaml").write_text("replicaCount: 3\ndatabase:\n  existingSecret: ''\n")
    findings: list[tc.Finding] = []
    tc.render_charts(tmp_path, findings)
    assert any("values-sqlite.yaml" in f.message and "needs database.existingSecret" in f.message for f in findings)


def test_scratch_on_tmpfs_is_one_value_and_still_validates(tmp_path: Path) -> None:
    [default_tmp] = [v for v in rendered()["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
    assert default_tmp["emptyDir"] == {"sizeLimit": "1Gi"}, "on the node's disk unless asked"
    chart = tmp_path / "charts" / "pltf"
    shutil.copytree(CHART, chart)
    (chart / "values-memory.yaml").write_text("tmp:\n  medium: Memory\n  sizeLimit: 256Mi\n")
    findings: list[tc.Finding] = []
    manifests = [m for m in tc.render_charts(tmp_path, findings) if m.source.endswith("(values-memory.yaml)")]
    assert findings == []
    [deployment] = [m.obj for m in manifests if m.obj["kind"] == "Deployment"]
    [memory_tmp] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
    assert memory_tmp["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    assert tc.check_kubernetes_validate(manifests) == []
