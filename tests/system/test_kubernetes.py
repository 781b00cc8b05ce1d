"""deploy/kubernetes: every manifest valid (strict: no unknown fields) against the schemas of
every Kubernetes version kubernetes-validate knows from 1.29 on (the first where native
sidecars are on by default), the kustomize base renders, and the pieces agree: probes, drain
budget, settings, Secret reference, Prometheus annotations.

No cluster runs here; these are schema and consistency checks.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from proxy.config import ENV_PREFIX, Settings
from tests.system.wheelhouses import REPO

BASE = REPO / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
VERSIONS = sorted({v for v in kv_utils.all_versions()
                   if tuple(map(int, v.split(".")[:2])) >= (1, 29)},
                  key=lambda v: tuple(map(int, v.split("."))))
PROXY_PORT = 8090


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _rendered() -> list[dict[str, Any]]:
    """The base as kustomize renders it, or, without kubectl, its resources as listed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
        return [doc for name in listed for doc in _documents(BASE / name)]
    out = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return _rendered()


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_versions_from_1_29_are_known() -> None:
    assert VERSIONS[0] == "1.29.0" and len(VERSIONS) >= 5


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_for_every_version(path: Path) -> None:
    for doc in _documents(path):
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']} "
                            f"on {version}: {exc.message}")


def test_rendered_base_is_valid_and_lists_every_manifest(rendered: list[dict[str, Any]]) -> None:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]
    assert len(rendered) == sum(len(_documents(p)) for p in MANIFESTS)
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "agent-memory-proxy"
        for version in (VERSIONS[0], VERSIONS[-1]):
            kubernetes_validate.validate(doc, version, strict=True)


def test_proxy_is_a_native_sidecar_with_probes_and_resources(
        rendered: list[dict[str, Any]]) -> None:
    pod = _one(rendered, "Deployment", "example-app")["spec"]["template"]
    (proxy,) = pod["spec"]["initContainers"]
    assert proxy["restartPolicy"] == "Always"
    assert [p["containerPort"] for p in proxy["ports"]] == [PROXY_PORT]
    assert proxy["startupProbe"]["httpGet"]["path"] == "/-/healthz"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/-/healthz"
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/-/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(proxy["resources"][kind])
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in proxy["volumeMounts"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PROXY_PORT)
    assert annotations["prometheus.io/path"] == "/-/metrics"
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the image's USER


def test_settings_come_from_the_configmap_and_the_secret(rendered: list[dict[str, Any]]) -> None:
    known = {f"{ENV_PREFIX}{f.name.upper()}" for f in dataclasses.fields(Settings)}
    config = _one(rendered, "ConfigMap", "agent-memory-proxy")["data"]
    proxy = _one(rendered, "Deployment", "example-app")["spec"]["template"]["spec"][
        "initContainers"][0]
    assert proxy["envFrom"] == [{"configMapRef": {"name": "agent-memory-proxy"}}]
    (token,) = proxy["env"]
    assert token["name"] == "AMP_UPSTREAM_SERVICE_TOKEN"
    assert token["valueFrom"]["secretKeyRef"]["optional"] is False
    # Every variable is a setting the proxy knows, and together they load.
    settings = Settings.load({**config, token["name"]: "secret"})
    assert set(config) <= known, set(config) - known
    assert settings.log_format == "json"
    redis = _one(rendered, "Service", "agent-memory-proxy-redis")
    assert settings.redis_url.startswith(f"redis://{redis['metadata']['name']}:6379")


def test_grace_period_covers_the_drain_and_the_flush(rendered: list[dict[str, Any]]) -> None:
    config = _one(rendered, "ConfigMap", "agent-memory-proxy")["data"]
    settings = Settings.load(config)
    pod = _one(rendered, "Deployment", "example-app")["spec"]["template"]["spec"]
    (app,) = pod["containers"]
    pre_stop = int(app["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pre_stop == settings.drain_seconds
    # The app stops first (its preStop, then up to 10 s), then the sidecar drains and flushes.
    budget = pre_stop + 10 + settings.drain_seconds + settings.shutdown_timeout
    assert pod["terminationGracePeriodSeconds"] >= budget + 5


def test_the_readme_overlay_renders(tmp_path: Path) -> None:
    """deploy/README.md's example overlay: namespace and both images replaced."""
    readme = (REPO / "deploy" / "README.md").read_text().splitlines()
    start = readme.index("       # deploy/overlays/prod/kustomization.yaml") + 1
    end = readme.index("", start)
    overlay = yaml.safe_load(textwrap.dedent("\n".join(readme[start:end])))
    assert overlay["resources"] == ["../../kubernetes"]
    overlay["resources"] = [os.path.relpath(BASE, tmp_path)]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # without kustomize: the names it would replace are the base's
        base_images = {i["newName"] if "newName" in i else i["name"]
                       for i in yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]}
        assert {i["name"] for i in overlay["images"]} == base_images
        return
    out = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    assert {d["metadata"]["namespace"] for d in docs} == {"agents"}
    pod = _one(docs, "Deployment", "example-app")["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "registry.example.com/agent-memory-proxy:0.1.0"
    assert pod["containers"][0]["image"] == "registry.example.com/my-agent:2.3.0"
