"""The notebook API: ``mount("s3://bucket/dir")`` returns a local path to read it from.

    from cachecluster import mount, unmount, list_mounts
    path = mount("s3://bucket/imagenet", options={"endpoint": "..."})
    # -> ~/.cachecluster/mnt/default/imagenet, read with open(), numpy, PIL...
    unmount(path)          # deletes the dataset; unmount(root) removes the mount

``mount`` adds (or updates) dataset ``NAMESPACE/NAME`` whose root is the
source, makes sure one background FUSE mount of the namespace is running at
the mount root (``<home>/mnt/<namespace>`` unless ``root`` is given) and
returns the dataset's folder once it shows there (within the metadata TTL:
the live mount sees new datasets without remounting).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cachecluster.client.cluster_view import DEFAULT_METADATA_TTL
from cachecluster.client.master_api import resolve_master_address, resolve_token
from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.fuse import mount as fuse_mount
from cachecluster.fuse.mount import MountError, MountOptions

DEFAULT_NAMESPACE = "default"
APPEAR_TIMEOUT_S = 30.0


def default_root(namespace: str) -> Path:
    """``<home>/mnt/<namespace>``, home being ``$CACHECLUSTER_HOME`` or ``~/.cachecluster``."""
    return fuse_mount.mounts_dir().parent / "mnt" / namespace


def dataset_name(source: str) -> str:
    """A dataset name from a source URI: its last path component, lower case, ``[a-z0-9-]``."""
    last = source.rstrip("/").rsplit("/", 1)[-1].split("://")[-1]
    name = re.sub(r"[^a-z0-9-]+", "-", last.lower()).strip("-")
    if not name:
        raise InvalidArgument(f"{source!r}: cannot make a dataset name from it, pass name=")
    return name


def mount(
    source: str,
    name: str | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    root: str | Path | None = None,
    options: Mapping[str, str] | None = None,
    master: str | None = None,
    token: str | None = None,
    metadata_ttl: float = DEFAULT_METADATA_TTL,
    timeout: float = APPEAR_TIMEOUT_S,
) -> str:
    """Add ``source`` (``s3://...``, ``local:///dir``, ...) as a dataset; its local path."""
    from cachecluster.local.cluster_calls import apply_dataset

    name = name or dataset_name(source)
    address = resolve_master_address(master)
    token = resolve_token(token)
    apply_dataset(address, namespace, name, source, options, token=token)
    mount_root = os.path.abspath(os.path.expanduser(root or default_root(namespace)))
    if not fuse_mount.is_mounted(mount_root):
        fuse_mount.mount_background(
            MountOptions(
                mountpoint=mount_root,
                prefix=namespace,
                master=address,
                token=token,
                metadata_ttl=metadata_ttl,
            )
        )
    path = os.path.join(mount_root, name)
    deadline = time.monotonic() + timeout
    while not os.path.isdir(path):
        if time.monotonic() > deadline:
            raise MountError(f"{path}: dataset {namespace}/{name} did not show within {timeout}s")
        time.sleep(0.1)
    return path


def unmount(path: str | Path, *, master: str | None = None, token: str | None = None) -> None:
    """Remove a dataset a :func:`mount` added (its path), or a whole mount (its root)."""
    target = os.path.abspath(os.path.expanduser(path))
    if fuse_mount.is_mounted(target):
        fuse_mount.unmount(target)
        return
    parent, name = os.path.split(target)
    record = next((m for m in list_mounts() if m["mountpoint"] == parent), None)
    if record is None or "/" in record["prefix"] or not record["prefix"]:
        raise NotFound(f"{target}: not a mount nor a dataset of a namespace mount")
    _delete_dataset(
        resolve_master_address(master or record["master"]), record["prefix"], name, token
    )


def _delete_dataset(address: str, namespace: str, name: str, token: str | None) -> None:
    from cachecluster.common.grpc_errors import rpc_errors
    from cachecluster.local.cluster_calls import master_channel, run_sync
    from cachecluster.protos import master_pb2, master_pb2_grpc

    async def call() -> bool:
        async with master_channel(address, resolve_token(token)) as channel:
            stub = master_pb2_grpc.DatasetServiceStub(channel)
            with rpc_errors():
                answer = await stub.DeleteDataset(
                    master_pb2.DeleteDatasetRequest(
                        ref=master_pb2.DatasetRef(namespace=namespace, name=name)
                    ),
                    timeout=10,
                )
        return bool(answer.deleted)

    if not run_sync(call()):
        raise NotFound(f"no dataset {namespace}/{name}")


def list_mounts() -> list[dict[str, Any]]:
    """The live mounts: ``mountpoint``, ``prefix`` (the view), ``pid``, ``log_file``, ``master``."""
    return fuse_mount.list_mounts()
