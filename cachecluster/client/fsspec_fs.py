"""``cachecluster://`` for fsspec: pandas, PyTorch, Dask and friends read datasets through it.

    import fsspec
    with fsspec.open("cachecluster://team-a/imagenet/labels.csv") as f:
        text = f.read()
    fs = fsspec.filesystem("cachecluster", master="10.0.0.5:7070")
    fs.ls("team-a/imagenet/train")

Only fsspec's primitives are implemented (``ls``, ``info``, ``_open``,
``cat_file``); ``walk``, ``find``, ``glob``, ``cat`` and the rest come from
:class:`fsspec.AbstractFileSystem`. The master address comes from the
``master`` storage option, else ``$CACHECLUSTER_MASTER``, else the local
cluster's ``cluster.json`` (``home`` option or ``$CACHECLUSTER_HOME``).

Every filesystem object of one process and master shares one blocking
:class:`Client` (one loop thread, one set of connections), however many
threads fsspec makes instances for. Registered through the ``fsspec.specs``
entry point of this package.
"""

from __future__ import annotations

import threading
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from cachecluster.client.master_api import resolve_master_address
from cachecluster.client.sync_client import Client, File

__all__ = ["CacheClusterFile", "CacheClusterFileSystem"]

_clients: dict[tuple[Any, ...], Client] = {}
_clients_lock = threading.Lock()


def shared_client(master: str, options: dict[str, Any]) -> Client:
    """The process's client for ``master`` with ``options`` (made on first use)."""
    key = (master, tuple(sorted(options.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None or client.closed:
            client = Client(master, **options)
            _clients[key] = client
        return client


class CacheClusterFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Read-only fsspec filesystem over a cachecluster's datasets (``ns/dataset/path``)."""

    protocol = "cachecluster"
    root_marker = ""

    def __init__(
        self,
        master: str | None = None,
        home: str | None = None,
        *,
        readahead_blocks: int | None = None,
        metadata_ttl: float | None = None,
        token: str | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        self.master = resolve_master_address(master, home)
        options: dict[str, Any] = {}
        if readahead_blocks is not None:
            options["readahead_blocks"] = readahead_blocks
        if metadata_ttl is not None:
            options["metadata_ttl"] = metadata_ttl
        if token is not None:
            options["token"] = token
        self._client_options = options

    @property
    def client(self) -> Client:
        """The blocking client this filesystem reads through."""
        return shared_client(self.master, self._client_options)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """Entries of a directory (a file lists as itself): dicts, or names without ``detail``."""
        entries = self.client.ls(self._strip_protocol(path), detail=True)
        if detail:
            return [entry.to_dict() for entry in entries]
        return [entry.path for entry in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``name``, ``size``, ``type`` (plus mtime, version) of one path."""
        return self.client.stat(self._strip_protocol(path)).to_dict()

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """Bytes ``[start, end)`` of a file in one call."""
        return self.client.cat(self._strip_protocol(path), start, end)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> CacheClusterFile:
        if mode != "rb":
            raise PermissionError(f"{path}: cachecluster datasets are read-only (mode {mode!r})")
        return CacheClusterFile(
            self,
            self._strip_protocol(path),
            block_size=block_size,
            cache_options=cache_options,
            **kwargs,
        )

    def ukey(self, path: str) -> str:
        """The file's version: changes whenever its bytes change."""
        info = self.info(path)
        return f"{info['name']}@{info['version']}"


class CacheClusterFile(AbstractBufferedFile):  # type: ignore[misc]
    """A dataset file for fsspec: its ranges come from the cluster's client."""

    def __init__(
        self,
        fs: CacheClusterFileSystem,
        path: str,
        block_size: int | str | None = None,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._file: File = fs.client.open(path)
        if block_size in (None, "default"):
            block_size = fs.client.block_size()
        try:
            super().__init__(
                fs,
                path,
                mode="rb",
                block_size=block_size,
                cache_type=cache_type,
                cache_options=cache_options,
                size=self._file.size,
                **kwargs,
            )
        except BaseException:
            self._file.close()
            raise
        self.details = self._file.info.to_dict()

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self._file.pread(start, end - start)

    def close(self) -> None:
        """Close the file and its client-side reader."""
        try:
            super().close()
        finally:
            self._file.close()
