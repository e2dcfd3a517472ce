"""CacheRuntime reconcile: a runtime object in, the Kubernetes objects it needs out.

:func:`desired_runtime_objects` is a pure function (no API calls, no clock):
given a CacheRuntime body (our ``cachecluster.io`` kind, or a Fluid runtime
kind such as ``JindoRuntime`` read as one by :mod:`cachecluster.api`) it
returns, in creation order:

1. the cluster Secret ``<rt>-cluster-secret`` (key ``cluster-secret``, hex);
   its value is the existing one when the caller passes it, else a new one
   from ``new_secret`` (the handler reads the Secret first, so the value is
   generated once and never replaced);
2. the master Service and Deployment ``<rt>-master``;
3. the workers' headless Service and StatefulSet ``<rt>-worker``, one volume
   per tier of ``tieredstore.levels`` and a matching ``--tier`` flag;
4. the FUSE DaemonSet ``<rt>-fuse`` mounting every dataset of the runtime
   under :func:`~cachecluster.operator.naming.fuse_mount_root` on each node.

Every object carries the runtime's labels and an ownerReference to it, so
deleting the runtime removes them. ``spec.master``, ``spec.worker`` and
``spec.fuse`` (Fluid's fields: ``resources``, ``nodeSelector``, ``env``,
``tolerations``) go to their pods; the FUSE pods tolerate every taint unless
``spec.fuse.tolerations`` says otherwise. A bad spec raises one
:class:`~cachecluster.common.errors.ConfigError` line before any object is
built. Tier volumes: ``MEM`` is an ``emptyDir`` of ``medium: Memory`` with
``sizeLimit`` = quota (a ``hostPath`` if ``volumeType: hostPath`` says so);
``SSD``/``HDD`` are a ``hostPath`` (Fluid's default; one sub-folder per pod
via ``subPathExpr``, so two workers on a node never share blocks and a
restarted pod finds its blocks again) or an ``emptyDir`` with
``volumeType: emptyDir``.
"""

from __future__ import annotations

import base64
import copy
import posixpath
import secrets
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from cachecluster.api.documents import Document, parse_document
from cachecluster.api.models import CacheRuntimeSpec, ComponentSpec
from cachecluster.common.auth import SECRET_BYTES, parse_secret
from cachecluster.common.errors import ConfigError
from cachecluster.common.units import format_size, parse_size
from cachecluster.operator import naming
from cachecluster.worker.tiers import Medium, TierConfig

SOURCE = "kubernetes"
"""How errors name where a body came from: ``kubernetes doc 1 (CacheRuntime ns/rt): ...``."""

HOME_DIR = "/var/lib/cachecluster"
"""Each pod's scratch home (an emptyDir): endpoint files, the master's dataset records."""

DEFAULT_TIERS = (TierConfig(Medium.MEM, "/cache/mem", 1 << 30),)
"""Tiers of a runtime without ``tieredstore``: 1 GiB of memory."""

FUSE_TOKEN_TTL = "3650d"
"""Validity of the admin token the FUSE pod mints for itself at start."""

VOLUME_TYPES = ("emptyDir", "hostPath")

RESERVED_ENV = frozenset(
    {"POD_NAME", "POD_IP", "NODE_NAME", "CACHECLUSTER_HOME", "CACHECLUSTER_TOKEN"}
)
"""Environment variables the pods' commands rely on: a component's ``env`` may not set them."""


def new_secret_hex() -> str:
    """A fresh cluster secret: :data:`SECRET_BYTES` random bytes, hex."""
    return secrets.token_hex(SECRET_BYTES)


def desired_runtime_objects(
    body: Mapping[str, Any],
    *,
    image: str = naming.DEFAULT_IMAGE,
    image_pull_policy: str = "IfNotPresent",
    cluster_secret: str | None = None,
    new_secret: Callable[[], str] = new_secret_hex,
) -> list[dict[str, Any]]:
    """Every object the runtime ``body`` needs, in creation order (see the module doc).

    ``cluster_secret`` is the hex value already stored in the runtime's Secret
    (read it before calling); ``None`` asks ``new_secret`` for one.
    """
    document = parse_runtime(body)
    spec = document.spec
    assert isinstance(spec, CacheRuntimeSpec)
    tiers = spec.tiers or DEFAULT_TIERS
    for i, tier in enumerate(tiers):
        check_tier_for_pod(tier, f"{document.where}: spec.tieredstore.levels[{i}]")
    check_memory_limit(tiers, spec.worker.resources, document.where)
    for component in ("master", "worker", "fuse"):
        check_env(getattr(spec, component), f"{document.where}: spec.{component}.env")
        check_pod_labels(
            getattr(spec, component), f"{document.where}: spec.{component}.podMetadata.labels"
        )
    if cluster_secret is None:
        cluster_secret = new_secret()
    parse_secret(
        cluster_secret, f"{document.where}: Secret {naming.cluster_secret_name(document.name)}"
    )
    context = _Context(
        name=document.name,
        namespace=document.namespace,
        owner=naming.owner_reference(dict(body)),
        image=image,
        pull_policy=image_pull_policy,
    )
    return [
        cluster_secret_object(context, cluster_secret),
        master_service(context),
        master_deployment(context, spec.master),
        worker_service(context),
        worker_statefulset(context, spec.replicas, tiers, spec.worker),
        fuse_daemonset(context, spec.fuse),
    ]


def parse_runtime(body: Mapping[str, Any]) -> Document:
    """The body validated by :mod:`cachecluster.api`; a ``ConfigError`` if it is not a runtime."""
    document = parse_document(body, SOURCE)
    if document.category != "CacheRuntime":
        raise ConfigError(f"{document.where}: kind", f"{document.kind} is not a runtime kind")
    return document


def check_tier_for_pod(tier: TierConfig, field: str) -> None:
    """A tier path must be absolute and free of ``:`` (it is a mountPath and a ``--tier`` flag)."""
    if not posixpath.isabs(tier.path) or ":" in tier.path:
        raise ConfigError(f"{field}.path", f"{tier.path!r} must be an absolute path without ':'")
    if posixpath.normpath(tier.path) == "/":
        raise ConfigError(f"{field}.path", "'/' cannot hold a tier")
    if tier.volume_type is not None and tier.volume_type not in VOLUME_TYPES:
        raise ConfigError(
            f"{field}.volumeType",
            f"unknown volume type {tier.volume_type!r} (expected {' or '.join(VOLUME_TYPES)})",
        )


def check_env(component: ComponentSpec, field: str) -> None:
    """Refuse a component ``env`` entry that would replace one the pod's command needs."""
    for item in component.env:
        if item.name in RESERVED_ENV:
            raise ConfigError(
                f"{field}.{item.name}", "is set by the operator (choose another name)"
            )


def check_pod_labels(component: ComponentSpec, field: str) -> None:
    """Refuse a pod label that would replace one of ours (selectors and owners rely on them)."""
    ours = naming.labels("x", "x")
    for key in component.pod_labels:
        if key in ours:
            raise ConfigError(f"{field}.{key}", "is set by the operator (choose another label)")


def memory_tiers_bytes(tiers: tuple[TierConfig, ...]) -> int:
    """Bytes of the tiers held in a ``medium: Memory`` emptyDir (they count as pod memory)."""
    return sum(
        tier.quota
        for tier in tiers
        if tier.medium is Medium.MEM and (tier.volume_type or "emptyDir") == "emptyDir"
    )


def check_memory_limit(
    tiers: tuple[TierConfig, ...], resources: Mapping[str, Mapping[str, str]], where: str
) -> None:
    """Refuse a worker memory limit below its memory tiers: the kernel would kill the pod."""
    limit_text = (resources.get("limits") or {}).get("memory")
    in_memory = memory_tiers_bytes(tiers)
    if limit_text is None or not in_memory:
        return
    try:
        limit = parse_size(limit_text, "memory")
    except ConfigError:
        return  # a valid quantity parse_size does not read (e.g. 1e9): left to Kubernetes
    if limit < in_memory:
        raise ConfigError(
            f"{where}: spec.worker.resources.limits.memory",
            f"{limit_text} is below the MEM tier quota {format_size(in_memory)} "
            "(a Memory emptyDir counts as the pod's memory)",
        )


class _Context:
    """What every object of one runtime shares."""

    def __init__(
        self, *, name: str, namespace: str, owner: dict[str, Any], image: str, pull_policy: str
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.owner = owner
        self.image = image
        self.pull_policy = pull_policy

    def metadata(self, name: str, component: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": naming.labels(self.name, component),
            "ownerReferences": [copy.deepcopy(self.owner)],
        }

    def pod_metadata(self, component: str, spec: ComponentSpec) -> dict[str, Any]:
        """The pods' labels (``podMetadata.labels`` added to ours) and annotations."""
        metadata: dict[str, Any] = {
            "labels": {**spec.pod_labels, **naming.labels(self.name, component)}
        }
        if spec.pod_annotations:
            metadata["annotations"] = dict(spec.pod_annotations)
        return metadata


# ------------------------------------------------------------------ the secret


def cluster_secret_object(context: _Context, value: str) -> dict[str, Any]:
    """The runtime's cluster Secret (signs tokens and read capabilities)."""
    encoded = base64.b64encode(value.encode("ascii")).decode("ascii")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": context.metadata(naming.cluster_secret_name(context.name), "cluster-secret"),
        "type": "Opaque",
        "data": {naming.CLUSTER_SECRET_KEY: encoded},
    }


def _secret_volume(context: _Context) -> dict[str, Any]:
    return {
        "name": "cluster-secret",
        "secret": {
            "secretName": naming.cluster_secret_name(context.name),
            "defaultMode": 0o400,
            "items": [{"key": naming.CLUSTER_SECRET_KEY, "path": naming.CLUSTER_SECRET_KEY}],
        },
    }


_SECRET_MOUNT = {"name": "cluster-secret", "mountPath": naming.CLUSTER_SECRET_DIR, "readOnly": True}
_HOME_VOLUME = {"name": "home", "emptyDir": {}}
_HOME_MOUNT = {"name": "home", "mountPath": HOME_DIR}


def _downward_env(*names: str) -> list[dict[str, Any]]:
    paths = {"POD_NAME": "metadata.name", "POD_IP": "status.podIP", "NODE_NAME": "spec.nodeName"}
    return [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": paths[name]}}} for name in names]


def _grpc_probes(port: int) -> dict[str, Any]:
    """Readiness and liveness from the standard gRPC health service (open without a token)."""
    return {
        "readinessProbe": {"grpc": {"port": port}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            "grpc": {"port": port},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }


def _container(
    context: _Context,
    name: str,
    component: ComponentSpec,
    env: list[dict[str, Any]],
    **fields: Any,
) -> dict[str, Any]:
    """A container of ``component``: our ``env`` first, then the spec's, and its resources."""
    container: dict[str, Any] = {
        "name": name,
        "image": context.image,
        "imagePullPolicy": context.pull_policy,
        **fields,
        "env": [*env, *(item.to_dict() for item in component.env)],
    }
    if component.resources:
        container["resources"] = copy.deepcopy(component.to_dict()["resources"])
    return container


def _pod_spec(
    component: ComponentSpec, containers: list[dict[str, Any]], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    """A pod spec with the component's ``nodeSelector`` and ``tolerations`` where given."""
    spec: dict[str, Any] = {"containers": containers, "volumes": volumes}
    if component.node_selector:
        spec["nodeSelector"] = dict(component.node_selector)
    if component.tolerations:
        spec["tolerations"] = [dict(item) for item in component.tolerations]
    return spec


# ------------------------------------------------------------------ master


def master_service(context: _Context) -> dict[str, Any]:
    """ClusterIP Service in front of the master: gRPC and metrics."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": context.metadata(naming.master_name(context.name), "master"),
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector(context.name, "master"),
            "ports": [
                {"name": "grpc", "port": naming.MASTER_PORT, "targetPort": "grpc"},
                {"name": "metrics", "port": naming.MASTER_METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def master_args() -> list[str]:
    """``cachecluster master`` flags in a pod: fixed ports on every address, auth on."""
    return [
        "master",
        "--host=0.0.0.0",
        f"--port={naming.MASTER_PORT}",
        f"--metrics-port={naming.MASTER_METRICS_PORT}",
        f"--home={HOME_DIR}/master",
        f"--cluster-secret-file={naming.CLUSTER_SECRET_FILE}",
    ]


def master_deployment(context: _Context, component: ComponentSpec) -> dict[str, Any]:
    """One master (its state is soft: rebuilt from workers and dataset specs after a restart)."""
    container = _container(
        context, "master", component, _downward_env("POD_NAME", "POD_IP"), args=master_args()
    )
    container.update(
        ports=[
            {"name": "grpc", "containerPort": naming.MASTER_PORT},
            {"name": "metrics", "containerPort": naming.MASTER_METRICS_PORT},
        ],
        volumeMounts=[dict(_SECRET_MOUNT), dict(_HOME_MOUNT)],
        **_grpc_probes(naming.MASTER_PORT),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": context.metadata(naming.master_name(context.name), "master"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": naming.selector(context.name, "master")},
            "template": {
                "metadata": context.pod_metadata("master", component),
                "spec": _pod_spec(
                    component, [container], [_secret_volume(context), dict(_HOME_VOLUME)]
                ),
            },
        },
    }


# ------------------------------------------------------------------ workers


def worker_service(context: _Context) -> dict[str, Any]:
    """Headless Service of the StatefulSet (stable pod DNS names)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": context.metadata(naming.worker_name(context.name), "worker"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": naming.selector(context.name, "worker"),
            "ports": [
                {"name": "data", "port": naming.WORKER_DATA_PORT, "targetPort": "data"},
                {"name": "grpc", "port": naming.WORKER_GRPC_PORT, "targetPort": "grpc"},
                {"name": "metrics", "port": naming.WORKER_METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def tier_volume_name(tier: TierConfig) -> str:
    """``tier-mem``, ``tier-ssd``, ``tier-hdd`` (one tier per medium)."""
    return f"tier-{tier.medium.value.lower()}"


def tier_flag(tier: TierConfig) -> str:
    """The worker's ``--tier MEDIUM:PATH:QUOTA:HIGH:LOW`` for a tier mounted at its path."""
    return f"--tier={tier.medium.value}:{tier.path}:{tier.quota}:{tier.high}:{tier.low}"


def tier_volume(tier: TierConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod volume and the container's volumeMount of one tier (see the module doc)."""
    name = tier_volume_name(tier)
    mount: dict[str, Any] = {"name": name, "mountPath": tier.path}
    default = "emptyDir" if tier.medium is Medium.MEM else "hostPath"
    if (tier.volume_type or default) == "hostPath":
        volume: dict[str, Any] = {
            "name": name,
            "hostPath": {"path": tier.path, "type": "DirectoryOrCreate"},
        }
        mount["subPathExpr"] = "$(POD_NAME)"
    elif tier.medium is Medium.MEM:
        volume = {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": str(tier.quota)}}
    else:
        volume = {"name": name, "emptyDir": {"sizeLimit": str(tier.quota)}}
    return volume, mount


def worker_args(context: _Context, tiers: tuple[TierConfig, ...]) -> list[str]:
    """``cachecluster worker`` flags in a pod: listen everywhere, announce the pod IP."""
    return [
        "worker",
        f"--master={naming.master_address(context.name, context.namespace)}",
        "--id=$(POD_NAME)",
        "--host=0.0.0.0",
        "--advertise-host=$(POD_IP)",
        f"--data-port={naming.WORKER_DATA_PORT}",
        f"--grpc-port={naming.WORKER_GRPC_PORT}",
        f"--metrics-port={naming.WORKER_METRICS_PORT}",
        "--unix-socket=none",
        f"--home={HOME_DIR}/worker",
        f"--cluster-secret-file={naming.CLUSTER_SECRET_FILE}",
        *(tier_flag(tier) for tier in tiers),
    ]


def worker_statefulset(
    context: _Context,
    replicas: int,
    tiers: tuple[TierConfig, ...],
    component: ComponentSpec,
) -> dict[str, Any]:
    """The workers: stable ids (the pod names) keep each worker's place on the ring."""
    volumes = [_secret_volume(context), dict(_HOME_VOLUME)]
    mounts = [dict(_SECRET_MOUNT), dict(_HOME_MOUNT)]
    for tier in tiers:
        volume, mount = tier_volume(tier)
        volumes.append(volume)
        mounts.append(mount)
    container = _container(
        context,
        "worker",
        component,
        _downward_env("POD_NAME", "POD_IP"),
        args=worker_args(context, tiers),
    )
    container.update(
        ports=[
            {"name": "data", "containerPort": naming.WORKER_DATA_PORT},
            {"name": "grpc", "containerPort": naming.WORKER_GRPC_PORT},
            {"name": "metrics", "containerPort": naming.WORKER_METRICS_PORT},
        ],
        volumeMounts=mounts,
        **_grpc_probes(naming.WORKER_GRPC_PORT),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": context.metadata(naming.worker_name(context.name), "worker"),
        "spec": {
            "replicas": replicas,
            "serviceName": naming.worker_name(context.name),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": naming.selector(context.name, "worker")},
            "template": {
                "metadata": context.pod_metadata("worker", component),
                "spec": _pod_spec(component, [container], volumes),
            },
        },
    }


# ------------------------------------------------------------------ FUSE


def fuse_command(context: _Context) -> list[str]:
    """The FUSE container's command: mint an admin token from the secret, then mount.

    The view has neither ``-n`` nor ``--dataset``: ``<root>/<ns>/<dataset>/...``
    for every namespace, which the CSI plugin bind-mounts per dataset.
    """
    root = naming.fuse_mount_root(context.namespace, context.name)
    token = shlex.join(
        [
            "cachecluster",
            "token",
            "--admin",
            f"--secret-file={naming.CLUSTER_SECRET_FILE}",
            f"--ttl={FUSE_TOKEN_TTL}",
        ]
    )
    mount = shlex.join(
        [
            "cachecluster",
            "mount",
            root,
            "--foreground",
            f"--master={naming.master_address(context.name, context.namespace)}",
        ]
    )
    # "$$(" is how a pod spec writes "$(": Kubernetes reads $(NAME) as a variable.
    script = f'CACHECLUSTER_TOKEN="$$({token})" && export CACHECLUSTER_TOKEN && exec {mount}'
    return ["sh", "-c", script]


def fuse_daemonset(context: _Context, component: ComponentSpec) -> dict[str, Any]:
    """A FUSE mount of the runtime's view on every node, propagated to the host."""
    root = naming.fuse_mount_root(context.namespace, context.name)
    host_dir = posixpath.dirname(root)
    env = [
        *_downward_env("POD_NAME", "NODE_NAME"),
        {"name": "CACHECLUSTER_HOME", "value": HOME_DIR},
    ]
    container = _container(context, "fuse", component, env, command=fuse_command(context))
    volumes = [
        _secret_volume(context),
        dict(_HOME_VOLUME),
        {"name": "fuse-root", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}},
    ]
    container.update(
        securityContext={"privileged": True},
        volumeMounts=[
            dict(_SECRET_MOUNT),
            dict(_HOME_MOUNT),
            {"name": "fuse-root", "mountPath": host_dir, "mountPropagation": "Bidirectional"},
        ],
        readinessProbe={"exec": {"command": ["mountpoint", "-q", root]}, "periodSeconds": 5},
        lifecycle={"preStop": {"exec": {"command": ["cachecluster", "unmount", root]}}},
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": context.metadata(naming.fuse_name(context.name), "fuse"),
        "spec": {
            "selector": {"matchLabels": naming.selector(context.name, "fuse")},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": context.pod_metadata("fuse", component),
                "spec": {
                    # Wherever a pod may mount a dataset (tainted GPU nodes too): the
                    # CSI plugin binds from this node's FUSE mount, as it runs everywhere.
                    "tolerations": [{"operator": "Exists"}],
                    **_pod_spec(component, [container], volumes),
                },
            },
        },
    }
