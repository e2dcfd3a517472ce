"""The client's connection to the master: one ``grpc.aio`` channel and typed calls.

:class:`MasterApi` wraps the generated stubs of ``MasterService``,
``MetadataService`` and ``DatasetService``. Every call has a deadline, and a
failed call raises the cachecluster error of its status code (through
:func:`~cachecluster.common.grpc_errors.rpc_errors`): ``NotFound`` for a
missing path, ``Unavailable`` when the master cannot be reached. Answers come
back as small frozen dataclasses (:class:`FileInfo`, :class:`MountInfo`,
:class:`RingInfo`), so the layers above never touch protobuf messages.

Dataset paths are written ``NS/DATASET/sub/path`` (:func:`parse_dataset_path`);
:func:`resolve_master_address` finds the master as the CLI does.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cachecluster.common.auth import ADMIN_NAMESPACE, SECRET_FILE, issue_token, load_secret
from cachecluster.common.errors import ConfigError, InvalidPath, Unavailable
from cachecluster.common.grpc_auth import auth_interceptors
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.common.paths import normalize_path
from cachecluster.common.ring import DEFAULT_VNODES, RING_SCHEME, RingSnapshot, RingWorker
from cachecluster.protos import auth_pb2, auth_pb2_grpc, master_pb2, master_pb2_grpc

DEFAULT_RPC_TIMEOUT = 10.0
"""Seconds a control-plane call may take before it counts as ``Unavailable``."""

PROTOCOL_PREFIX = "cachecluster://"

# Short reconnect backoff: a restarted master is found again within a second or two.
_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)
_LIST_PAGE_SIZE = 1000


# ---------------------------------------------------------------- paths


@dataclass(frozen=True, slots=True)
class DatasetPath:
    """A path as a reader writes it: ``NS/DATASET/sub/path``.

    ``namespace`` and ``dataset`` may be empty for the listing levels above a
    dataset (``""`` lists namespaces, ``"ns"`` lists the datasets of ``ns``);
    ``path`` is normalised, relative to the dataset root (``""`` is the root).
    """

    namespace: str = ""
    dataset: str = ""
    path: str = ""

    @property
    def is_dataset_level(self) -> bool:
        """True when the path names a file or directory inside a dataset."""
        return bool(self.namespace and self.dataset)

    def child(self, name: str) -> DatasetPath:
        """The path of entry ``name`` below this one."""
        if not self.namespace:
            return DatasetPath(name)
        if not self.dataset:
            return DatasetPath(self.namespace, name)
        inner = f"{self.path}/{name}" if self.path else name
        return DatasetPath(self.namespace, self.dataset, inner)

    def __str__(self) -> str:
        return "/".join(part for part in (self.namespace, self.dataset, self.path) if part)


def parse_dataset_path(text: str) -> DatasetPath:
    """``"ns/ds/a/b.bin"`` (optionally ``cachecluster://``-prefixed) as a :class:`DatasetPath`.

    ``..`` may not leave the dataset: :class:`InvalidPath`.
    """
    if text.startswith(PROTOCOL_PREFIX):
        text = text[len(PROTOCOL_PREFIX) :]
    parts = [part for part in text.split("/") if part not in ("", ".")]
    head = [normalize_path(part) for part in parts[:2]]  # refuses '..', NUL, backslash
    if len(parts) <= 2:
        return DatasetPath(*head)
    return DatasetPath(head[0], head[1], normalize_path("/".join(parts[2:])))


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One file or directory of a dataset, as the master reports it.

    ``path`` is the full reader path (``ns/ds/sub/file``); ``mount_id`` and
    ``mount_path`` (the path under the mount's UFS root) make block ids with
    ``version`` and a block index.
    """

    path: str
    size: int
    is_dir: bool
    mtime: float = 0.0
    version: str = ""
    mount_id: str = ""
    mount_path: str = ""

    @property
    def name(self) -> str:
        """The last component of ``path``."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def type(self) -> str:
        """``"directory"`` or ``"file"``, as fsspec names them."""
        return "directory" if self.is_dir else "file"

    def to_dict(self) -> dict[str, Any]:
        """The fsspec ``info`` form: ``name``, ``size``, ``type`` plus the other fields."""
        return {
            "name": self.path,
            "size": self.size,
            "type": self.type,
            "mtime": self.mtime,
            "version": self.version,
            "mount_id": self.mount_id,
            "mount_path": self.mount_path,
        }

    @classmethod
    def directory(cls, path: str) -> FileInfo:
        """A directory entry made up by the client (a namespace or the root)."""
        return cls(path=path, size=0, is_dir=True)


def _file_info(dataset: DatasetPath, status: master_pb2.FileStatus) -> FileInfo:
    path = normalize_path(status.path)
    full = f"{dataset.namespace}/{dataset.dataset}"
    return FileInfo(
        path=f"{full}/{path}" if path else full,
        size=int(status.size),
        is_dir=bool(status.is_dir),
        mtime=float(status.mtime),
        version=status.version,
        mount_id=status.mount_id,
        mount_path=status.mount_path,
    )


@dataclass(frozen=True, slots=True)
class MountInfo:
    """Where a mount's bytes live: its UFS root and backend options (credentials included)."""

    mount_id: str
    uri: str
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A worker on the ring: where its data server listens and what state the master sees."""

    worker_id: str
    host: str
    data_port: int
    unix_socket: str
    state: int  # master_pb2.WorkerState

    @property
    def suspect(self) -> bool:
        """The master saw it miss heartbeats: readers try it last."""
        return self.state == master_pb2.WORKER_STATE_SUSPECT


@dataclass(frozen=True, slots=True)
class RingInfo:
    """A ``GetRing`` answer: membership with its epoch, and the placement parameters."""

    epoch: int
    members: tuple[MemberInfo, ...]
    vnodes: int
    replicas: int
    block_size: int
    scheme: str

    def snapshot(self) -> RingSnapshot:
        """The ring the master places blocks with, ready for ``HashRing.from_snapshot``."""
        return RingSnapshot(
            workers=tuple(
                RingWorker(m.worker_id, f"{m.host}:{m.data_port}")
                for m in sorted(self.members, key=lambda m: m.worker_id)
            ),
            vnodes=self.vnodes,
            scheme=self.scheme,
        )


def _ring_info(response: master_pb2.GetRingResponse) -> RingInfo:
    members = tuple(
        MemberInfo(
            worker_id=m.worker_id,
            host=m.endpoint.host,
            data_port=int(m.endpoint.data_port),
            unix_socket=m.endpoint.unix_socket,
            state=int(m.state),
        )
        for m in response.members
    )
    return RingInfo(
        epoch=int(response.epoch),
        members=members,
        vnodes=int(response.vnodes) or DEFAULT_VNODES,
        replicas=max(1, int(response.replicas)),
        block_size=int(response.block_size),
        scheme=response.scheme or RING_SCHEME,
    )


# ---------------------------------------------------------------- the API


class MasterApi:
    """Typed calls to one master over a ``grpc.aio`` channel.

    The channel opens on first use, on the running event loop; use one
    ``MasterApi`` from one loop. :meth:`close` closes it. ``token`` (a namespace
    token, see :func:`resolve_token`) goes with every call as
    ``authorization: Bearer``; ``None`` sends none (an open cluster).
    """

    def __init__(
        self, address: str, *, timeout: float = DEFAULT_RPC_TIMEOUT, token: str | None = None
    ) -> None:
        if not address or ":" not in address:
            raise InvalidPath(f"master address {address!r}: expected host:port")
        self.address = address
        self.timeout = timeout
        self.token = token
        self._channel: grpc.aio.Channel | None = None
        self._master: master_pb2_grpc.MasterServiceStub | None = None
        self._metadata: master_pb2_grpc.MetadataServiceStub | None = None
        self._datasets: master_pb2_grpc.DatasetServiceStub | None = None
        self._auth: auth_pb2_grpc.AuthServiceStub | None = None

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            token = self.token
            self._channel = grpc.aio.insecure_channel(
                self.address,
                options=_CHANNEL_OPTIONS,
                interceptors=auth_interceptors(lambda: token) if token else None,
            )
            self._auth = auth_pb2_grpc.AuthServiceStub(self._channel)
            self._master = master_pb2_grpc.MasterServiceStub(self._channel)
            self._metadata = master_pb2_grpc.MetadataServiceStub(self._channel)
            self._datasets = master_pb2_grpc.DatasetServiceStub(self._channel)
        return self._channel

    @property
    def master(self) -> master_pb2_grpc.MasterServiceStub:
        """The ``MasterService`` stub."""
        self._open()
        assert self._master is not None
        return self._master

    @property
    def metadata(self) -> master_pb2_grpc.MetadataServiceStub:
        """The ``MetadataService`` stub."""
        self._open()
        assert self._metadata is not None
        return self._metadata

    @property
    def datasets(self) -> master_pb2_grpc.DatasetServiceStub:
        """The ``DatasetService`` stub."""
        self._open()
        assert self._datasets is not None
        return self._datasets

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Our errors for failed calls; an unreachable master is named in the message."""
        try:
            with rpc_errors():
                yield
        except Unavailable as exc:
            raise Unavailable(f"master {self.address}: {exc}") from exc

    async def get_ring(self, known_epoch: int = 0) -> RingInfo | None:
        """The master's ring, or ``None`` when it is still ``known_epoch``."""
        with self._errors():
            response = await self.master.GetRing(
                master_pb2.GetRingRequest(known_epoch=known_epoch), timeout=self.timeout
            )
        if response.unchanged:
            return None
        return _ring_info(response)

    async def get_status(self, path: DatasetPath) -> FileInfo:
        """Status of one file or directory of a dataset; ``NotFound`` if absent."""
        request = master_pb2.GetStatusRequest(dataset=_ref(path), path=path.path)
        with self._errors():
            response = await self.metadata.GetStatus(request, timeout=self.timeout)
        return _file_info(path, response.status)

    async def list_status(self, path: DatasetPath, *, recursive: bool = False) -> list[FileInfo]:
        """Every entry of a dataset directory (all pages), sorted by path."""
        entries: list[FileInfo] = []
        token = ""
        while True:
            request = master_pb2.ListStatusRequest(
                dataset=_ref(path),
                path=path.path,
                recursive=recursive,
                page_size=_LIST_PAGE_SIZE,
                page_token=token,
            )
            with self._errors():
                response = await self.metadata.ListStatus(request, timeout=self.timeout)
            entries.extend(_file_info(path, status) for status in response.entries)
            token = response.next_page_token
            if not token:
                return entries

    async def get_mount(self, mount_id: str) -> MountInfo:
        """The UFS root and options of a mount; ``NotFound`` for an unknown id."""
        with self._errors():
            response = await self.metadata.GetMount(
                master_pb2.GetMountRequest(mount_id=mount_id), timeout=self.timeout
            )
        mount = response.mount
        return MountInfo(mount.mount_id or mount_id, mount.uri, dict(mount.options))

    async def issue_capability(self, path: DatasetPath) -> tuple[bytes | None, float]:
        """A read capability for ``path``'s dataset and its expiry (unix seconds).

        ``(None, 0.0)`` when the cluster runs open; ``NotFound`` for a dataset
        this client's namespace cannot see.
        """
        self._open()
        assert self._auth is not None
        with self._errors():
            response = await self._auth.IssueCapability(
                auth_pb2.IssueCapabilityRequest(dataset=_ref(path)), timeout=self.timeout
            )
        if not response.required:
            return None, 0.0
        return bytes(response.capability), response.expires_at_ms / 1000.0

    async def list_datasets(self, namespace: str = "") -> list[tuple[str, str]]:
        """``(namespace, name)`` of every dataset (of one namespace when given), sorted."""
        with self._errors():
            response = await self.datasets.ListDatasets(
                master_pb2.ListDatasetsRequest(namespace=namespace), timeout=self.timeout
            )
        return sorted((d.ref.namespace, d.ref.name) for d in response.datasets)

    async def close(self) -> None:
        """Close the channel; a later call opens a new one."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


def _ref(path: DatasetPath) -> master_pb2.DatasetRef:
    if not path.is_dataset_level:
        raise InvalidPath(f"path {str(path)!r}: expected NAMESPACE/DATASET[/path]")
    return master_pb2.DatasetRef(namespace=path.namespace, name=path.dataset)


def resolve_token(token: str | None = None, home: str | Path | None = None) -> str | None:
    """The token a client sends: ``token``, else ``$CACHECLUSTER_TOKEN``, else the local admin's.

    Whoever can read the local cluster's secret (``<home>/cluster-secret``,
    home as in :func:`resolve_master_address`) is its admin and gets an admin
    token made from it. ``None`` when there is none of these (an open cluster).
    """
    if token:
        return token
    env = os.environ.get("CACHECLUSTER_TOKEN")
    if env:
        return env.strip()
    if home is None:
        home = os.environ.get("CACHECLUSTER_HOME") or Path.home() / ".cachecluster"
    secret_file = Path(home).expanduser() / SECRET_FILE
    if not os.access(secret_file, os.R_OK):
        return None
    try:
        return issue_token(load_secret(secret_file), ADMIN_NAMESPACE, 3600.0)
    except ConfigError:
        return None


def resolve_master_address(master: str | None = None, home: str | Path | None = None) -> str:
    """The master's ``host:port``: ``master``, else ``$CACHECLUSTER_MASTER``, else the local one.

    The local cluster is the ``master`` field of ``<home>/cluster.json``
    (home: ``$CACHECLUSTER_HOME``, else ``~/.cachecluster``), the same order
    the CLI follows.
    """
    if master:
        return master
    env = os.environ.get("CACHECLUSTER_MASTER")
    if env:
        return env
    if home is None:
        home = os.environ.get("CACHECLUSTER_HOME") or Path.home() / ".cachecluster"
    cluster_file = Path(home).expanduser() / "cluster.json"
    try:
        address = json.loads(cluster_file.read_text()).get("master")
    except (FileNotFoundError, ValueError, AttributeError):
        address = None
    if not address:
        raise Unavailable(
            f"no cluster found in {cluster_file.parent} "
            "(run `cachecluster up`, or set CACHECLUSTER_MASTER)"
        )
    return str(address)
