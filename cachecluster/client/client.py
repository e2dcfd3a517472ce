"""The asyncio client: read datasets of a cachecluster through its workers.

    async with AsyncClient("127.0.0.1:7070") as client:
        print(await client.ls("team-a/imagenet/train"))
        async with await client.open("team-a/imagenet/train/0001.tar") as f:
            header = await f.read(512)
            await f.seek(1 << 20)
            n = await f.readinto(buffer)          # straight into your buffer
        data = await client.cat("team-a/imagenet/labels.csv", 0, 4096)

Paths are ``NAMESPACE/DATASET/path/in/the/dataset``; ``ls("")`` lists the
namespaces and ``ls("ns")`` the datasets of one. The client computes block
owners from the ring itself, reads several blocks in parallel, reads ahead on
sequential access and falls back to other workers, then to the UFS, when a
worker fails (see :mod:`cachecluster.client.reader`). Use one client from one
event loop; :class:`cachecluster.client.sync_client.Client` is the blocking
form.
"""

from __future__ import annotations

import io
import types
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, TypeVar, overload

from cachecluster.client.capabilities import CapabilityCache
from cachecluster.client.cluster_view import (
    DEFAULT_EXTRA_WORKERS,
    DEFAULT_METADATA_TTL,
    DEFAULT_RING_REFRESH_INTERVAL,
    DEFAULT_SUSPECT_SECONDS,
    ClusterView,
)
from cachecluster.client.data_conn import DataConnectionPool
from cachecluster.client.master_api import (
    DEFAULT_RPC_TIMEOUT,
    FileInfo,
    MasterApi,
    parse_dataset_path,
    resolve_master_address,
    resolve_token,
)
from cachecluster.client.reader import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_MAX_PARALLEL_BLOCKS,
    DEFAULT_READAHEAD_BLOCKS,
    BlockFetcher,
    BufferPool,
    FetchStats,
    FileReader,
)
from cachecluster.client.short_circuit import ShortCircuitReads
from cachecluster.common.block_key import BlockKey, block_count
from cachecluster.common.errors import InvalidArgument, VersionChanged

SIBLING_FILES = 64
"""Small files after one read in its folder's listing whose block files are asked for then."""
ALL_WORKERS = 1 << 16
"""``extra_workers`` that makes every worker on the ring a candidate for every block."""

__all__ = ["AsyncClient", "AsyncFile", "BlockPlacementInfo", "FileInfo"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BlockPlacementInfo:
    """One block of a file: its index, id, byte range and owners (primary first)."""

    index: int
    block_id: str
    offset: int
    length: int
    owners: tuple[str, ...]


class AsyncFile:
    """An open dataset file: ``read``, ``readinto``, ``seek``, ``tell``, ``close``.

    An async context manager. One task at a time per file; open the file
    again for concurrent readers (opening is cheap: the status is cached).
    """

    def __init__(self, reader: FileReader, client: AsyncClient) -> None:
        self._reader = reader
        self._client = client
        client._open_files.add(self)

    @property
    def info(self) -> FileInfo:
        """The file's status when it was opened (its version pins every block read)."""
        return self._reader.info

    @property
    def path(self) -> str:
        """The file's path, ``ns/ds/...``."""
        return self._reader.info.path

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self._reader.size

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._reader.closed

    def tell(self) -> int:
        """The current position."""
        return self._reader.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position; returns it. Not a coroutine: it does no I/O."""
        return self._reader.seek(offset, whence)

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when negative); ``b""`` at the end.

        ``VersionChanged`` means the file changed on the UFS since it was
        opened: open it again to read the new version.
        """
        return await self._reading(self._reader.read(size))

    async def readinto(self, buf: memoryview | bytearray) -> int:
        """Fill ``buf`` from the position (zero-copy for whole blocks); 0 at the end."""
        return await self._reading(self._reader.readinto(buf))

    async def pread_into(self, offset: int, buf: memoryview | bytearray) -> int:
        """Read at ``offset`` into ``buf`` without moving the position."""
        return await self._reading(self._reader.pread_into(offset, buf))

    async def _reading(self, reading: Awaitable[T]) -> T:
        """Await a read of this file; its cached status dropped on ``VersionChanged``.

        After it, a one-block file's neighbours in its folder are asked for
        (:meth:`AsyncClient.ask_siblings`).
        """
        try:
            return await reading
        except VersionChanged:
            self._client.view.invalidate(self.path)
            raise
        finally:
            self._client.ask_siblings(self._reader)

    def ask_siblings(self) -> None:
        """Ask for the block files of the files after this one in its folder.

        See :meth:`AsyncClient.ask_siblings`; for readers that read it with
        :meth:`read_held` (which does not ask). On the loop's thread only.
        """
        self._client.ask_siblings(self._reader)

    def read_held(self, offset: int, buf: memoryview | bytearray) -> int | None:
        """Read at ``offset`` into ``buf`` on this thread from block files held already, or None.

        Not a coroutine, safe on any thread: the blocking client's fast path
        (see :meth:`cachecluster.client.reader.FileReader.read_held`). None
        means "use :meth:`pread_into`". The position does not move.
        """
        return self._reader.read_held(offset, buf)

    def mapped_view(self, offset: int, size: int) -> memoryview | None:
        """Bytes in one block from its mapping made already, or None (loop thread only).

        See :meth:`cachecluster.client.reader.FileReader.mapped_view`.
        """
        return self._reader.mapped_view(offset, size)

    async def local_view(self, offset: int, size: int) -> memoryview | None:
        """Up to ``size`` bytes at ``offset`` without a copy, or None: use :meth:`pread_into`.

        A read-only view of the block file of a worker on this host (memory
        tier); a range over several blocks is one copy of their views. See
        :meth:`cachecluster.client.reader.FileReader.local_view`.
        """
        try:
            return await self._reader.local_view(offset, size)
        except VersionChanged:
            self._client.view.invalidate(self.path)
            raise

    async def close(self) -> None:
        """Close the file (read-ahead stops). Safe to call twice."""
        self._client._open_files.discard(self)
        await self._reader.close()

    def close_now(self) -> bool:
        """Close the file here and now if nothing of it is in flight; False: :meth:`close` it.

        Not a coroutine, safe on any thread (see :meth:`FileReader.close_now`).
        """
        if not self._reader.close_now():
            return False
        self._client._open_files.discard(self)
        return True

    async def __aenter__(self) -> AsyncFile:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()


class AsyncClient:
    """A reader of one cachecluster, reached through its master at ``host:port``.

    ``master`` defaults to ``$CACHECLUSTER_MASTER``, then to the local
    cluster of ``$CACHECLUSTER_HOME`` (``~/.cachecluster``), as the CLI does.
    ``readahead_blocks`` whole blocks stay in flight ahead of a sequential
    reader; ``metadata_ttl`` is how long a stat or listing is reused;
    ``prefer_unix`` reads from same-host workers over their Unix socket, and
    ``short_circuit`` (with it) reads their block files directly when they
    pass them (:mod:`cachecluster.client.short_circuit`).
    ``token`` is the namespace token (default ``$CACHECLUSTER_TOKEN``, else the
    local cluster admin's, see :func:`resolve_token`); with one, reads carry
    the master's read capabilities and never go to the UFS directly.
    """

    def __init__(
        self,
        master: str | None = None,
        *,
        readahead_blocks: int = DEFAULT_READAHEAD_BLOCKS,
        metadata_ttl: float = DEFAULT_METADATA_TTL,
        ring_refresh_interval: float = DEFAULT_RING_REFRESH_INTERVAL,
        suspect_seconds: float = DEFAULT_SUSPECT_SECONDS,
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        max_parallel_blocks: int = DEFAULT_MAX_PARALLEL_BLOCKS,
        connections_per_worker: int = 2,
        prefer_unix: bool = True,
        short_circuit: bool = True,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT,
        token: str | None = None,
    ) -> None:
        if readahead_blocks < 0:
            raise InvalidArgument(f"readahead_blocks {readahead_blocks}: must be >= 0")
        self.master = resolve_master_address(master)
        self.readahead_blocks = readahead_blocks
        self.token = resolve_token(token)
        self.api = MasterApi(self.master, timeout=rpc_timeout, token=self.token)
        self.view = ClusterView(
            self.api,
            # No UFS credentials with a token: any live worker is the fallback.
            extra_workers=ALL_WORKERS if self.token else DEFAULT_EXTRA_WORKERS,
            metadata_ttl=metadata_ttl,
            ring_refresh_interval=ring_refresh_interval,
            suspect_seconds=suspect_seconds,
            prefer_unix=prefer_unix,
        )
        self.pool = DataConnectionPool(
            connections_per_worker=connections_per_worker, prefer_unix=prefer_unix
        )
        self.fetcher = BlockFetcher(
            self.view,
            self.pool,
            block_timeout=block_timeout,
            max_parallel_blocks=max_parallel_blocks,
            capabilities=CapabilityCache(self.api) if self.token else None,
            local=ShortCircuitReads() if prefer_unix and short_circuit else None,
        )
        self.buffers = BufferPool()
        # folder -> (its listing, index of the entry up to which block files were asked
        # for, each entry's index by path, index of the entry whose read asked last)
        self._siblings: dict[str, tuple[list[FileInfo], int, dict[str, int], int]] = {}
        self._open_files: set[AsyncFile] = set()
        self._closed = False

    @property
    def stats(self) -> FetchStats:
        """Counters of block reads: from workers, failed, from the UFS, read-ahead hits."""
        return self.fetcher.stats

    # ------------------------------------------------------------ metadata

    async def stat(self, path: str) -> FileInfo:
        """Status of a file or directory; ``NotFound`` when it does not exist."""
        self._check_open()
        return await self.view.stat(parse_dataset_path(path))

    @overload
    async def ls(self, path: str = "", detail: Literal[False] = False) -> list[str]: ...

    @overload
    async def ls(self, path: str, detail: Literal[True]) -> list[FileInfo]: ...

    async def ls(self, path: str = "", detail: bool = False) -> list[str] | list[FileInfo]:
        """Entries of a directory: full paths, or :class:`FileInfo` with ``detail``.

        A file lists as itself.
        """
        self._check_open()
        target = parse_dataset_path(path)
        info = await self.view.stat(target)
        entries = [info] if not info.is_dir else await self.view.list_dir(target)
        return entries if detail else [entry.path for entry in entries]

    async def walk_files(self, path: str) -> list[FileInfo]:
        """Every file under a directory (the file itself for a file), sorted by path."""
        self._check_open()
        target = parse_dataset_path(path)
        info = await self.view.stat(target)
        if not info.is_dir:
            return [info]
        if target.is_dataset_level:
            entries = await self.view.list_dir(target, recursive=True)
            return sorted((e for e in entries if not e.is_dir), key=lambda e: e.path)
        files: list[FileInfo] = []
        for entry in await self.view.list_dir(target):
            files.extend(await self.walk_files(entry.path))
        return files

    # ------------------------------------------------------------ reads

    async def open(self, path: str, *, readahead_blocks: int | None = None) -> AsyncFile:
        """Open a file for reading; ``NotFound`` or ``IsADirectoryError`` otherwise."""
        self._check_open()
        info = await self.view.stat(parse_dataset_path(path))
        if info.is_dir:
            raise IsADirectoryError(f"{info.path}: is a directory")
        ring = await self.view.ring()
        return self._file(info, ring.block_size, readahead_blocks)

    def open_cached(self, path: str, *, readahead_blocks: int | None = None) -> AsyncFile | None:
        """:meth:`open` from the cached status and ring, without waiting; None if not cached.

        Not a coroutine, safe on any thread: the blocking client opens files
        this way without a trip to its loop. The status is the one :meth:`open`
        would use (cached for ``metadata_ttl`` seconds).
        """
        self._check_open()
        info = self.view.cached_stat(parse_dataset_path(path))
        ring = self.view.cached_ring()
        if info is None or ring is None:
            return None
        if info.is_dir:
            raise IsADirectoryError(f"{info.path}: is a directory")
        return self._file(info, ring.block_size, readahead_blocks)

    def _file(self, info: FileInfo, block_size: int, readahead_blocks: int | None) -> AsyncFile:
        """An open file of ``info`` (:meth:`open` and :meth:`open_cached`)."""
        reader = FileReader(
            self.fetcher,
            info,
            block_size,
            readahead_blocks=(
                self.readahead_blocks if readahead_blocks is None else readahead_blocks
            ),
            buffers=self.buffers,
        )
        return AsyncFile(reader, self)

    def ask_siblings(self, reader: FileReader) -> None:
        """After a read of a one-block file: ask for the files of the next ones in its folder.

        When the folder's listing is cached (see
        :meth:`ClusterView.cached_listing`), the block files of the next
        :data:`SIBLING_FILES` one-block files in listing order are asked for
        in one round trip a worker, in the background: a reader going through
        the folder then opens (from the listing's status) and reads them on
        its own thread. Block ids carry each file's version in the listing;
        a file opened with another status has other ids and is read anew.
        A read well before the file that asked last (the folder read again from
        its start: the client may have let those files go) asks again.
        """
        info = reader.info
        if self.fetcher.local is None or self._closed or info.size > reader.block_size:
            return
        folder = info.path.rpartition("/")[0]
        entries = self.view.cached_listing(parse_dataset_path(folder))
        if entries is None:
            return
        asked = self._siblings.get(folder)
        if asked is not None and asked[0] is entries:
            positions = asked[2]
        else:  # one pass over a new listing, not one a file read
            positions = {entry.path: index for index, entry in enumerate(entries)}
        position = positions.get(info.path, -1)
        if position < 0:
            return
        if (
            asked is not None
            and asked[0] is entries
            and asked[3] - SIBLING_FILES // 4 <= position < asked[1] - SIBLING_FILES // 4
        ):
            return
        batch = [
            (entry, 0)
            for entry in entries[position + 1 : position + 1 + SIBLING_FILES]
            if not entry.is_dir and 0 < entry.size <= reader.block_size
        ]
        if len(self._siblings) >= 256:
            self._siblings.clear()
        self._siblings[folder] = (entries, position + 1 + SIBLING_FILES, positions, position)
        if batch:
            self.fetcher.spawn_quiet(self.fetcher.prefetch_blocks(batch))

    async def cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of a file (the whole file by default).

        Negative ``start``/``end`` count from the end of the file, as in
        ``fsspec``'s ``cat_file``. A file changed on the UFS since it was
        last stat'ed is read again once with its new status.
        """
        self._check_open()
        for attempt in (1, 2):
            file = await self.open(path, readahead_blocks=0)
            try:
                size = file.size
                first = _bound(start, size, 0)
                last = _bound(end, size, size)
                buffer = bytearray(max(0, last - first))
                got = await file.pread_into(first, buffer)
                del buffer[got:]
                return bytes(buffer)
            except VersionChanged:  # the file was invalidated: stat it again, once
                if attempt == 2:
                    raise
            finally:
                await file.close()
        raise AssertionError("unreachable")

    async def blocks(self, path: str) -> list[BlockPlacementInfo]:
        """The blocks of a file and the workers the ring names for each (primary first)."""
        info = await self.stat(path)
        if info.is_dir:
            raise IsADirectoryError(f"{info.path}: is a directory")
        ring = await self.view.ring()
        placements: list[BlockPlacementInfo] = []
        for index in range(block_count(info.size, ring.block_size)):
            key = BlockKey(info.mount_id, info.mount_path, info.version, index)
            block_id = key.id
            offset = index * ring.block_size
            placements.append(
                BlockPlacementInfo(
                    index,
                    block_id,
                    offset,
                    min(ring.block_size, info.size - offset),
                    tuple(ring.owners(key)),
                )
            )
        return placements

    async def block_size(self) -> int:
        """The cluster's block size in bytes."""
        return (await self.view.ring()).block_size

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Close open files, stop read-ahead and background refreshes, close connections."""
        if self._closed:
            return
        self._closed = True
        for file in list(self._open_files):
            await file.close()
        await self.fetcher.close()
        if self.fetcher.local is not None:
            await self.fetcher.local.close()
        await self.view.close()
        await self.pool.close()
        await self.api.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument("the client is closed")


def _bound(value: int | None, size: int, default: int) -> int:
    if value is None:
        return default
    if value < 0:
        value += size
    return max(0, min(value, size))
