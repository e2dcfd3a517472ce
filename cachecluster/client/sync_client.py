"""The blocking client: :class:`AsyncClient` on an event loop in a background thread.

    with Client() as client:                     # $CACHECLUSTER_MASTER or the local cluster
        names = client.ls("team-a/imagenet")
        with client.open("team-a/imagenet/labels.csv") as f:
            text = f.read().decode()

Every call runs the async client's coroutine on a uvloop loop owned by the
client (one thread), so many Python threads may share one client; each open
:class:`File` is for one thread at a time. Files are ``io.RawIOBase``
objects: wrap one in ``io.BufferedReader`` for many small reads, or use
``readinto`` with a large buffer for speed (blocks land straight in it).

Reads of blocks whose files a same-host worker passed (and the client holds)
run on the calling thread: a ``preadv`` from the block file straight into the
caller's buffer, no trip to the loop (``pread_into`` allocates nothing). So
does ``open`` of a file whose status is cached, and ``close``. Everything
else (asking workers, fallbacks, read-ahead) runs on the loop.

A client does not survive ``fork()``: gRPC cannot run in the forked child of
a process that used it (it hangs or aborts), so a call in such a child raises
``InvalidArgument`` at once instead. Start PyTorch DataLoader workers with
``multiprocessing_context="forkserver"`` (or ``"spawn"``) and make the client
in the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import threading
import types
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, overload

import uvloop

from cachecluster.client.client import AsyncClient, AsyncFile, BlockPlacementInfo
from cachecluster.client.master_api import FileInfo
from cachecluster.client.reader import FetchStats
from cachecluster.common.errors import InvalidArgument

__all__ = ["Client", "File"]

T = TypeVar("T")

FORK_MESSAGE = (
    "a cachecluster client does not survive fork(): gRPC cannot be used in a forked child "
    "of a process that used it. Start worker processes with the 'spawn' or 'forkserver' "
    "method (e.g. DataLoader(..., multiprocessing_context='forkserver'))"
)


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cachecluster-client", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (re-raising its error)."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a blocking cachecluster Client was called from its own loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:  # KeyboardInterrupt included: stop the coroutine too
            if not future.done():
                future.cancel()
                concurrent.futures.wait([future], timeout=5)
            raise

    def call_soon(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` on the loop without waiting (safe from any thread, the loop's too)."""
        if threading.current_thread() is self.thread:
            self.loop.create_task(coro)
        else:
            asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Stop the loop and join the thread."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class File(io.RawIOBase):
    """A dataset file opened by :meth:`Client.open`: read-only, seekable, binary."""

    def __init__(self, client: Client, file: AsyncFile) -> None:
        super().__init__()
        self._client = client
        self._file = file
        self._pid = os.getpid()

    @property
    def name(self) -> str:
        """The file's path, ``ns/ds/...``."""
        return self._file.path

    @property
    def mode(self) -> str:
        """Always ``"rb"``."""
        return "rb"

    @property
    def info(self) -> FileInfo:
        """The file's status when it was opened."""
        return self._file.info

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self._file.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the position; 0 at the end of the file."""
        position = self.tell()
        got = self.pread_into(position, buffer)
        self._file.seek(position + got)
        return got

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (the rest of the file when negative or None)."""
        self._check_open()
        position = self._file.tell()
        remaining = max(0, self.size - position)
        count = remaining if size is None or size < 0 else min(size, remaining)
        buffer = bytearray(count)
        got = self.readinto(buffer)
        del buffer[got:]
        return bytes(buffer)

    def readall(self) -> bytes:
        """The rest of the file in one call."""
        return self.read(-1)

    def pread_into(self, offset: int, buffer: Any) -> int:
        """Fill ``buffer`` with the bytes at ``offset`` (fewer at the end), position unchanged.

        No allocation; blocks whose files a same-host worker passed already
        are copied on this thread, without a trip to the client's loop.
        """
        self._check_open()
        view = memoryview(buffer).cast("B")
        got = self._file.read_held(offset, view)
        if got is None:
            return self._client._call(self._file.pread_into(offset, view))
        return got

    def pread(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer at the end), position unchanged."""
        buffer = bytearray(max(0, min(length, self.size - offset)))
        got = self.pread_into(offset, buffer)
        del buffer[got:]
        return bytes(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        self._check_open()
        return self._file.tell()

    def close(self) -> None:
        """Close the file. Does not wait (it may run in a garbage collection anywhere)."""
        if not self.closed:
            try:
                if (
                    not self._client.closed
                    and os.getpid() == self._pid
                    and not self._file.close_now()
                ):
                    self._client._loop.call_soon(self._file.close())
            finally:
                super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self._file.path}: I/O operation on a closed file")
        if os.getpid() != self._pid:
            raise InvalidArgument(f"{self._file.path}: {FORK_MESSAGE}")


class Client:
    """The blocking form of :class:`AsyncClient`; takes the same arguments."""

    def __init__(self, master: str | None = None, **options: Any) -> None:
        self._options = options
        self._master = master
        self._closed = False
        self._pid = os.getpid()
        self._loop = _LoopThread()
        try:
            self._async = self._loop.call(self._make_async())
        except BaseException:
            self._loop.stop()
            raise
        self.master = self._async.master

    async def _make_async(self) -> AsyncClient:
        return AsyncClient(self._master, **self._options)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise InvalidArgument("the client is closed")
        return self._loop.call(coro)

    def _run(self, make: Callable[[AsyncClient], Coroutine[Any, Any, T]]) -> T:
        if os.getpid() != self._pid:
            raise InvalidArgument(FORK_MESSAGE)
        return self._call(make(self._async))

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def stats(self) -> FetchStats:
        """Counters of block reads (see :class:`FetchStats`)."""
        return self._async.stats

    def stat(self, path: str) -> FileInfo:
        """Status of a file or directory; ``NotFound`` when it does not exist."""
        return self._run(lambda c: c.stat(path))

    @overload
    def ls(self, path: str = "", detail: Literal[False] = False) -> list[str]: ...

    @overload
    def ls(self, path: str, detail: Literal[True]) -> list[FileInfo]: ...

    def ls(self, path: str = "", detail: bool = False) -> list[str] | list[FileInfo]:
        """Entries of a directory: full paths, or :class:`FileInfo` with ``detail``."""
        if detail:
            return self._run(lambda c: c.ls(path, detail=True))
        return self._run(lambda c: c.ls(path))

    def walk_files(self, path: str) -> list[FileInfo]:
        """Every file under a directory, sorted by path."""
        return self._run(lambda c: c.walk_files(path))

    def open(self, path: str, *, readahead_blocks: int | None = None) -> File:
        """Open a dataset file for reading (a binary, seekable ``io.RawIOBase``).

        With the file's status cached (``metadata_ttl``) no trip to the loop.
        """
        if os.getpid() != self._pid:
            raise InvalidArgument(FORK_MESSAGE)
        if self._closed:
            raise InvalidArgument("the client is closed")
        file = self._async.open_cached(path, readahead_blocks=readahead_blocks)
        if file is None:
            file = self._run(lambda c: c.open(path, readahead_blocks=readahead_blocks))
        return File(self, file)

    def cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of a file (negative values count from the end)."""
        return self._run(lambda c: c.cat(path, start, end))

    def blocks(self, path: str) -> list[BlockPlacementInfo]:
        """The blocks of a file and their owners on the ring."""
        return self._run(lambda c: c.blocks(path))

    def block_size(self) -> int:
        """The cluster's block size in bytes."""
        return self._run(lambda c: c.block_size())

    def close(self) -> None:
        """Close the async client and stop the loop thread. Safe to call twice."""
        if self._closed:
            return
        try:
            if os.getpid() == self._pid:
                self._loop.call(self._async.close())
        finally:
            self._closed = True
            if os.getpid() == self._pid:
                self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()
