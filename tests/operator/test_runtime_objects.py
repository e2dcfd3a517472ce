"""CacheRuntime reconcile: the objects of every example runtime, complete, valid, consistent.

Every object validates with ``kubernetes_validate`` (strict). The commands the
pods run are parsed by our real CLI parser and turned into the real
configurations (worker, master), and the FUSE pod's token step is run for
real, so a flag the CLI lacks or a token the master would refuse fails here.
"""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachecluster.api.documents import FLUID_RUNTIME_KINDS
from cachecluster.cli import worker_cmd
from cachecluster.cli.main import build_parser
from cachecluster.common.auth import ADMIN_NAMESPACE, verify_token
from cachecluster.common.errors import ConfigError
from cachecluster.master.config import MasterConfig
from cachecluster.operator import naming
from cachecluster.operator.runtime_objects import (
    HOME_DIR,
    desired_runtime_objects,
    new_secret_hex,
)
from cachecluster.worker.tiers import Medium, parse_tier_flag
from tests.operator.schemas import validate_builtin

EXAMPLES = Path(__file__).resolve().parents[2] / "operator" / "examples"
SECRET = "ab" * 32
POD_ENV = {"POD_NAME": "rt-worker-0", "POD_IP": "10.1.2.3", "NODE_NAME": "node-a"}
RUNTIME_KINDS = ("CacheRuntime", *FLUID_RUNTIME_KINDS)


def example_runtimes() -> list[dict[str, Any]]:
    """Every runtime document of operator/examples/, with what the API server adds."""
    found: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in RUNTIME_KINDS:
                doc["metadata"]["uid"] = f"uid-{len(found)}"
                found.append(doc)
    return found


def runtime(spec: dict[str, Any], kind: str = "CacheRuntime", **meta: Any) -> dict[str, Any]:
    group = naming.FLUID_GROUP if kind in FLUID_RUNTIME_KINDS else naming.GROUP
    metadata = {"name": "rt", "namespace": "share", "uid": "1234-uid", **meta}
    return {"apiVersion": f"{group}/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


THREE_TIERS = {
    "replicas": 2,
    "tieredstore": {
        "levels": [
            {"mediumtype": "MEM", "path": "/dev/shm", "quota": "2Gi"},
            {"mediumtype": "SSD", "path": "/mnt/ssd/cc", "quota": "100Gi", "high": "0.9"},
            {"mediumtype": "HDD", "volumeType": "emptyDir", "path": "/mnt/hdd", "quota": "1Ti"},
        ]
    },
}


def runtime_object_names(name: str) -> list[tuple[str, str]]:
    """(kind, name) of a runtime's objects, in creation order."""
    return [
        ("Secret", naming.cluster_secret_name(name)),
        ("Service", naming.master_name(name)),
        ("Deployment", naming.master_name(name)),
        ("Service", naming.worker_name(name)),
        ("StatefulSet", naming.worker_name(name)),
        ("DaemonSet", naming.fuse_name(name)),
    ]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for obj in objects:
        key = obj["kind"]
        if key == "Service":
            key = "HeadlessService" if obj["spec"].get("clusterIP") == "None" else "Service"
        assert key not in out
        out[key] = obj
    return out


def expand(args: list[str]) -> list[str]:
    """What the kubelet does with ``$(VAR)`` in a container's args, for :data:`POD_ENV`."""
    return [re.sub(r"\$\(([A-Z_]+)\)", lambda m: POD_ENV[m.group(1)], arg) for arg in args]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


@pytest.fixture(
    params=example_runtimes(), ids=lambda doc: f"{doc['kind']}-{doc['metadata']['name']}"
)
def example(request: pytest.FixtureRequest) -> dict[str, Any]:
    body: dict[str, Any] = request.param
    return body


def test_examples_hold_runtimes() -> None:
    kinds = {doc["kind"] for doc in example_runtimes()}
    assert "CacheRuntime" in kinds and kinds & set(FLUID_RUNTIME_KINDS)


def test_every_object_is_valid_and_owned(example: dict[str, Any]) -> None:
    objects = desired_runtime_objects(example, cluster_secret=SECRET)
    name, namespace = example["metadata"]["name"], example["metadata"]["namespace"]
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == runtime_object_names(name)
    for obj in objects:
        validate_builtin(obj)
        meta = obj["metadata"]
        assert meta["namespace"] == namespace
        assert meta["labels"][naming.LABEL_RUNTIME] == name
        assert meta["ownerReferences"] == [
            {
                "apiVersion": example["apiVersion"],
                "kind": example["kind"],
                "name": name,
                "uid": example["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_selectors_ports_and_probes_fit_together(example: dict[str, Any]) -> None:
    objects = by_kind(desired_runtime_objects(example, cluster_secret=SECRET))
    name = example["metadata"]["name"]
    for kind, component in (
        ("Deployment", "master"),
        ("StatefulSet", "worker"),
        ("DaemonSet", "fuse"),
    ):
        workload = objects[kind]
        selector = workload["spec"]["selector"]["matchLabels"]
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector == naming.selector(name, component)
        assert selector.items() <= pod_labels.items()
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod["volumes"]}
        assert {m["name"] for m in container(workload)["volumeMounts"]} == volumes
    for service_kind, workload_kind in (
        ("Service", "Deployment"),
        ("HeadlessService", "StatefulSet"),
    ):
        service, workload = objects[service_kind], objects[workload_kind]
        assert (
            service["spec"]["selector"].items()
            <= workload["spec"]["template"]["metadata"]["labels"].items()
        )
        ports = {p["name"]: p["containerPort"] for p in container(workload)["ports"]}
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"]
    assert (
        objects["StatefulSet"]["spec"]["serviceName"]
        == objects["HeadlessService"]["metadata"]["name"]
    )
    assert container(objects["Deployment"])["readinessProbe"]["grpc"]["port"] == naming.MASTER_PORT
    assert (
        container(objects["StatefulSet"])["livenessProbe"]["grpc"]["port"]
        == naming.WORKER_GRPC_PORT
    )
    master_host, _, master_port = naming.master_address(
        name, example["metadata"]["namespace"]
    ).partition(":")
    assert master_host.startswith(objects["Service"]["metadata"]["name"] + ".")
    assert int(master_port) in {p["port"] for p in objects["Service"]["spec"]["ports"]}


def test_tier_flags_match_volumes(tmp_path: Path) -> None:
    for body in [*example_runtimes(), runtime(THREE_TIERS)]:
        statefulset = by_kind(desired_runtime_objects(body, cluster_secret=SECRET))["StatefulSet"]
        worker = container(statefulset)
        volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
        levels = body["spec"]["tieredstore"]["levels"]
        flags = [a.removeprefix("--tier=") for a in worker["args"] if a.startswith("--tier=")]
        assert len(flags) == len(levels)
        for flag in flags:
            tier = parse_tier_flag(flag)
            level = next(lv for lv in levels if lv["mediumtype"] == tier.medium.value)
            assert tier.path == level["path"]
            volume = volumes[mounts[tier.path]["name"]]
            volume_type = level.get(
                "volumeType", "emptyDir" if tier.medium is Medium.MEM else "hostPath"
            )
            if volume_type == "hostPath":
                assert volume["hostPath"] == {"path": tier.path, "type": "DirectoryOrCreate"}
                assert mounts[tier.path]["subPathExpr"] == "$(POD_NAME)"
            else:
                assert set(volume) == {"name", "emptyDir"}
                assert volume["emptyDir"]["sizeLimit"] == str(tier.quota)
                assert (volume["emptyDir"].get("medium") == "Memory") == (tier.medium is Medium.MEM)
    three = by_kind(desired_runtime_objects(runtime(THREE_TIERS), cluster_secret=SECRET))
    volumes = three["StatefulSet"]["spec"]["template"]["spec"]["volumes"]
    assert {
        v["name"]: sorted(set(v) - {"name"}) for v in volumes if v["name"].startswith("tier-")
    } == {
        "tier-mem": ["emptyDir"],
        "tier-ssd": ["hostPath"],
        "tier-hdd": ["emptyDir"],
    }


def test_worker_and_master_commands_are_real_configurations(
    example: dict[str, Any], tmp_path: Path
) -> None:
    objects = by_kind(desired_runtime_objects(example, cluster_secret=SECRET))
    secret_file = tmp_path / "cluster-secret"
    secret_file.write_text(SECRET)
    parser = build_parser()

    worker = container(objects["StatefulSet"])
    assert {e["name"] for e in worker["env"]} >= {"POD_NAME", "POD_IP"}
    args = parser.parse_args(expand(worker["args"]))
    assert args.cluster_secret_file == Path(naming.CLUSTER_SECRET_FILE)
    assert args.home == Path(HOME_DIR) / "worker"
    # The pod's files are this test's: the secret file and the home.
    args.cluster_secret_file, args.home = secret_file, tmp_path / "w"
    config = worker_cmd.config_from_args(args, default_home=tmp_path / "unused")
    assert config.unix_socket is None  # --unix-socket=none
    name, namespace = example["metadata"]["name"], example["metadata"]["namespace"]
    assert config.master == naming.master_address(name, namespace)
    assert (config.worker_id, config.host, config.advertise_host) == (
        "rt-worker-0",
        "0.0.0.0",
        "10.1.2.3",
    )
    assert (config.data_port, config.grpc_port, config.metrics_port) == (
        naming.WORKER_DATA_PORT,
        naming.WORKER_GRPC_PORT,
        naming.WORKER_METRICS_PORT,
    )
    assert config.cluster_secret == bytes.fromhex(SECRET)
    mounted = {m["mountPath"] for m in worker["volumeMounts"]}
    assert {tier.path for tier in config.tiers} <= mounted
    assert any(
        m["mountPath"] == str(Path(naming.CLUSTER_SECRET_FILE).parent)
        for m in worker["volumeMounts"]
    )

    master = container(objects["Deployment"])
    margs = parser.parse_args(master["args"])
    assert margs.cluster_secret_file == naming.CLUSTER_SECRET_FILE
    margs.cluster_secret_file = str(secret_file)
    mconfig = MasterConfig.from_args(margs, default_home=tmp_path / "m")
    assert (mconfig.host, mconfig.port, mconfig.metrics_port) == (
        "0.0.0.0",
        naming.MASTER_PORT,
        naming.MASTER_METRICS_PORT,
    )


def test_fuse_pod_mints_an_admin_token_and_mounts_the_runtime_view(
    example: dict[str, Any], tmp_path: Path
) -> None:
    fuse = by_kind(desired_runtime_objects(example, cluster_secret=SECRET))["DaemonSet"]
    name, namespace = example["metadata"]["name"], example["metadata"]["namespace"]
    root = naming.fuse_mount_root(namespace, name)
    pod = fuse["spec"]["template"]["spec"]
    fuse_container = container(fuse)
    assert fuse_container["securityContext"] == {"privileged": True}
    assert pod["tolerations"] == [{"operator": "Exists"}]  # every node, as the CSI plugin
    propagated = [m for m in fuse_container["volumeMounts"] if m.get("mountPropagation")]
    assert len(propagated) == 1 and propagated[0]["mountPropagation"] == "Bidirectional"
    assert root.startswith(propagated[0]["mountPath"] + "/")
    host = next(v for v in pod["volumes"] if v["name"] == propagated[0]["name"])
    assert host["hostPath"]["path"] == propagated[0]["mountPath"]

    shell, flag, script = fuse_container["command"]
    assert (shell, flag) == ("sh", "-c")
    script = script.replace("$$", "$")  # the kubelet's unescaping
    token_cmd = re.search(r"\$\((cachecluster token [^)]*)\)", script)
    assert token_cmd is not None, script
    secret_file = tmp_path / "cluster-secret"
    secret_file.write_text(SECRET)
    argv = [
        a.replace(naming.CLUSTER_SECRET_FILE, str(secret_file))
        for a in shlex.split(token_cmd.group(1))
    ]
    minted = subprocess.run(
        [sys.executable, "-m", "cachecluster", *argv[1:]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert verify_token(bytes.fromhex(SECRET), minted) == ADMIN_NAMESPACE
    mount_argv = shlex.split(script.rpartition("exec ")[2])
    args = build_parser().parse_args(mount_argv[1:])
    assert (args.mountpoint, args.foreground, args.master) == (
        root,
        True,
        naming.master_address(name, namespace),
    )
    assert args.namespace is None and args.dataset is None  # the view of every namespace
    assert fuse_container["lifecycle"]["preStop"]["exec"]["command"] == [
        "cachecluster",
        "unmount",
        root,
    ]
    sh = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True, check=False)
    assert sh.returncode == 0, sh.stderr
    assert naming.dataset_fuse_path(namespace, name, "ref", "ds").startswith(root + "/")


def test_scale_changes_only_replicas() -> None:
    one = desired_runtime_objects(runtime({**THREE_TIERS, "replicas": 1}), cluster_secret=SECRET)
    five = desired_runtime_objects(runtime({**THREE_TIERS, "replicas": 5}), cluster_secret=SECRET)
    changed = [(a["kind"], a["metadata"]["name"]) for a, b in zip(one, five, strict=True) if a != b]
    assert changed == [("StatefulSet", "rt-worker")]
    assert by_kind(one)["StatefulSet"]["spec"]["replicas"] == 1
    by_kind(one)["StatefulSet"]["spec"]["replicas"] = 5
    assert one == five


def test_cluster_secret_is_generated_once() -> None:
    calls: list[int] = []

    def generator() -> str:
        calls.append(1)
        return SECRET

    body = runtime(THREE_TIERS)
    secret = desired_runtime_objects(body, new_secret=generator)[0]
    assert calls == [1]
    assert base64.b64decode(secret["data"][naming.CLUSTER_SECRET_KEY]).decode() == SECRET
    kept = desired_runtime_objects(body, cluster_secret="cd" * 32, new_secret=generator)[0]
    assert calls == [1]
    assert base64.b64decode(kept["data"][naming.CLUSTER_SECRET_KEY]).decode() == "cd" * 32
    fresh = new_secret_hex()
    assert len(bytes.fromhex(fresh)) == 32 and fresh != new_secret_hex()
    with pytest.raises(ConfigError, match="cluster secret is not hex"):
        desired_runtime_objects(body, cluster_secret="not hex")


def test_defaults_without_tieredstore() -> None:
    plain = by_kind(desired_runtime_objects(runtime({}), cluster_secret=SECRET))
    flags = [a for a in container(plain["StatefulSet"])["args"] if a.startswith("--tier=")]
    assert (
        len(flags) == 1 and parse_tier_flag(flags[0].removeprefix("--tier=")).medium is Medium.MEM
    )
    assert plain["StatefulSet"]["spec"]["replicas"] == 1
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        assert "resources" not in container(plain[kind])
        assert "nodeSelector" not in plain[kind]["spec"]["template"]["spec"]
    assert "tolerations" not in plain["Deployment"]["spec"]["template"]["spec"]
    assert plain["DaemonSet"]["spec"]["template"]["spec"]["tolerations"] == [{"operator": "Exists"}]


COMPONENTS: dict[str, Any] = {
    "master": {
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "nodeSelector": {"cache-node": "true"},
        "env": {"GRPC_VERBOSITY": "ERROR"},  # Fluid's Jindo/Alluxio form: a mapping
        "podMetadata": {
            "labels": {"team": "ml"},
            "annotations": {"sidecar.istio.io/inject": "false"},
        },
    },
    "worker": {
        "resources": {"limits": {"memory": "4Gi", "cpu": 2}},
        "nodeSelector": {"cache-node": "true"},
        "tolerations": [{"key": "cache", "operator": "Exists", "effect": "NoSchedule"}],
        "env": [  # Fluid's JuiceFS form: Kubernetes EnvVars
            {"name": "TZ", "value": "UTC"},
            {
                "name": "NODE_IP",
                "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
            },
        ],
    },
    "fuse": {
        "nodeSelector": {"gpu": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
    },
}


@pytest.mark.parametrize("kind", ["CacheRuntime", "JindoRuntime"])
def test_component_resources_node_selector_env_and_tolerations(kind: str) -> None:
    """Fluid's ``spec.master/worker/fuse`` fields reach the pods, for our kind and Fluid's."""
    objects = desired_runtime_objects(
        runtime({**THREE_TIERS, **COMPONENTS}, kind=kind), cluster_secret=SECRET
    )
    for obj in objects:
        validate_builtin(obj)
    found = by_kind(objects)
    master, worker, fuse = found["Deployment"], found["StatefulSet"], found["DaemonSet"]
    pod = {
        name: obj["spec"]["template"]["spec"]
        for name, obj in (("master", master), ("worker", worker), ("fuse", fuse))
    }
    assert container(master)["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    assert container(worker)["resources"] == {"limits": {"memory": "4Gi", "cpu": "2"}}
    assert "resources" not in container(fuse)
    assert pod["master"]["nodeSelector"] == pod["worker"]["nodeSelector"] == {"cache-node": "true"}
    assert pod["fuse"]["nodeSelector"] == {"gpu": "true"}
    assert "tolerations" not in pod["master"]
    assert pod["worker"]["tolerations"] == COMPONENTS["worker"]["tolerations"]
    # Given tolerations replace the FUSE pod's default (every taint).
    assert pod["fuse"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    master_env = {e["name"]: e for e in container(master)["env"]}
    assert master_env["GRPC_VERBOSITY"] == {"name": "GRPC_VERBOSITY", "value": "ERROR"}
    assert {"POD_NAME", "POD_IP"} <= set(master_env)  # ours stay
    master_meta = master["spec"]["template"]["metadata"]
    assert master_meta["labels"] == {"team": "ml", **naming.labels("rt", "master")}
    assert master["spec"]["selector"]["matchLabels"].items() <= master_meta["labels"].items()
    assert master_meta["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert "annotations" not in worker["spec"]["template"]["metadata"]
    worker_env = [e["name"] for e in container(worker)["env"]]
    assert worker_env == ["POD_NAME", "POD_IP", "TZ", "NODE_IP"]
    assert container(worker)["env"][-1]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}


BAD_SPECS = [
    ({"replicas": -1}, "CacheRuntime", "spec.replicas"),
    ({"replicas": "3"}, "CacheRuntime", "spec.replicas"),
    (
        {"tieredstore": {"levels": [{"mediumtype": "MEM", "path": "/m", "quota": "5Gix"}]}},
        "CacheRuntime",
        "quota",
    ),
    (
        {"tieredstore": {"levels": [{"mediumtype": "NVME", "path": "/m", "quota": "5Gi"}]}},
        "CacheRuntime",
        "mediumtype",
    ),
    (
        {"tieredstore": {"levels": [{"mediumtype": "SSD", "path": "rel/dir", "quota": "5Gi"}]}},
        "CacheRuntime",
        "path",
    ),
    (
        {"tieredstore": {"levels": [{"mediumtype": "SSD", "path": "/a:b", "quota": "5Gi"}]}},
        "CacheRuntime",
        "path",
    ),
    (
        {
            "tieredstore": {
                "levels": [{"mediumtype": "SSD", "path": "/s", "quota": "1Gi", "volumeType": "nfs"}]
            }
        },
        "CacheRuntime",
        "volumeType",
    ),
    ({"master": {"replicas": 1}}, "CacheRuntime", "spec.master.replicas: unknown field"),
    (
        {"worker": {"resources": {"limits": {"memory": "lots"}}}},
        "CacheRuntime",
        "spec.worker.resources.limits.memory",
    ),
    (
        {**THREE_TIERS, "worker": {"resources": {"limits": {"memory": "1Gi"}}}},
        "CacheRuntime",
        "spec.worker.resources.limits.memory: 1Gi is below the MEM tier quota 2.00GiB",
    ),
    ({"master": {"nodeSelector": {"zone": 1}}}, "CacheRuntime", "spec.master.nodeSelector.zone"),
    (
        {"worker": {"podMetadata": {"labels": {naming.LABEL_COMPONENT: "master"}}}},
        "CacheRuntime",
        f"spec.worker.podMetadata.labels.{naming.LABEL_COMPONENT}: is set by the operator",
    ),
    ({"fuse": {"podMetadata": {"label": {}}}}, "CacheRuntime", "spec.fuse.podMetadata.label"),
    ({"worker": {"env": {"POD_IP": "1.2.3.4"}}}, "CacheRuntime", "spec.worker.env.POD_IP: is set"),
    ({"fuse": {"env": {"CACHECLUSTER_TOKEN": "x"}}}, "JindoRuntime", "spec.fuse.env.CACHECLUSTER"),
    ({"worker": {"env": [{"name": "A", "value": 1}]}}, "CacheRuntime", "spec.worker.env[0].value"),
    ({"worker": {"env": [{"value": "v"}]}}, "CacheRuntime", "spec.worker.env[0].name"),
    ({"worker": {"env": {"A": "1", "9x": "2"}}}, "CacheRuntime", "spec.worker.env.9x"),
    (
        {"fuse": {"tolerations": [{"key": "k", "operator": "In"}]}},
        "CacheRuntime",
        "spec.fuse.tolerations[0].operator",
    ),
    (
        {"fuse": {"tolerations": [{"operator": "Exists", "value": "v"}]}},
        "CacheRuntime",
        "spec.fuse.tolerations[0].value",
    ),
    (
        {"worker": {"resources": {"limits": {"memory": "lots"}}}},
        "JindoRuntime",
        "spec.worker.resources.limits.memory",
    ),
    ({"fuse": {"resources": {"wants": {}}}}, "JindoRuntime", "spec.fuse.resources.wants"),
    (
        {**THREE_TIERS, "worker": {"resources": {"limits": {"memory": "1Gi"}}}},
        "JindoRuntime",
        "spec.worker.resources.limits.memory: 1Gi is below the MEM tier quota 2.00GiB",
    ),
]


@pytest.mark.parametrize(("spec", "kind", "field"), BAD_SPECS)
def test_bad_specs_are_one_line_before_any_object(
    spec: dict[str, Any], kind: str, field: str
) -> None:
    calls: list[int] = []

    def generator() -> str:
        calls.append(1)
        return SECRET

    with pytest.raises(ConfigError) as caught:
        desired_runtime_objects(runtime(spec, kind=kind), new_secret=generator)
    message = str(caught.value)
    assert "\n" not in message and field in message, message
    assert f"({kind} share/rt)" in message
    assert calls == []  # refused before even a secret was made


def test_not_a_runtime_is_refused() -> None:
    body = {
        "apiVersion": "cachecluster.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "share", "uid": "u"},
        "spec": {"mounts": [{"mountPoint": "local:///data"}]},
    }
    with pytest.raises(ConfigError, match="Dataset is not a runtime kind"):
        desired_runtime_objects(body)
