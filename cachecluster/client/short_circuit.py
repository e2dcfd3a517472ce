"""Short-circuit reads: a same-host worker passes its block files; the client reads them itself.

What HDFS and Alluxio call short-circuit reads. Over the worker's Unix
socket, :class:`FdChannel` sends an ``open`` for a block (with the read
capability); the worker checks it as it checks a ``read`` and passes a
read-only descriptor of the block file (``SCM_RIGHTS``, see
:mod:`cachecluster.common.frames`). :class:`LocalBlock` then reads the bytes
with ``preadv`` straight into the caller's buffer, or maps a memory-tier
block so that the FUSE mount can hand the kernel a view of it without a copy.

:class:`ShortCircuitReads` keeps the blocks it was given, least recently used
first, at most ``max_blocks`` of them and ``max_bytes`` of their bytes
(what a client can keep alive of blocks the workers evicted), each for
``ttl`` seconds (then the
worker is asked again: it sees the access, counts it for its LRU, and checks
the capability anew; the same file passed again keeps the block held and
its mapping). A block whose file was unlinked (evicted, demoted or
promoted: ``st_nlink`` 0) is asked again at once; until then its descriptor
still reads the old inode's bytes, which are right for that block id (ids
carry the file version). A worker that exits or is killed closes its socket:
its files are then dropped (checked before every use), and its blocks are read
from the next source. One ``open`` runs per block at a time (single flight);
the ``open``s of many blocks go out together and their answers come back in
order (:meth:`FdChannel.open_many`, :meth:`ShortCircuitReads.prefetch`): one
round trip for a batch, each key checked by the worker as a single ``open``.
Held files are read on any thread (:meth:`ShortCircuitReads.held`,
:meth:`LocalBlock.read_now`): the blocking client copies from them on the
caller's thread, without its event loop.

Anything else going wrong means "read it over the data protocol": a worker
that does not know ``open`` (older, or reached over TCP) is not asked again, a
broken socket not for :data:`RETRY_AFTER_S` seconds. Errors the worker
answers (``PermissionDenied``, ``VersionChanged``, ``NotFound``...) reach the
caller as a ``read`` would raise them.
"""

from __future__ import annotations

import array
import asyncio
import collections
import enum
import errno
import functools
import itertools
import logging
import math
import mmap
import os
import resource
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cachecluster.client.data_conn import DEFAULT_CONNECT_TIMEOUT, WorkerAddress
from cachecluster.common import frames
from cachecluster.common.errors import CacheClusterError, InvalidArgument, Unavailable
from cachecluster.common.frames import BlockRef, FdGrant, FrameError, OpenRequest

log = logging.getLogger("cachecluster.client.short_circuit")

DEFAULT_MAX_BLOCKS = 16384
"""Block files kept open at most, fewer when the descriptor limit is low: each
takes two once mapped (see :func:`max_blocks_for_fd_limit`). Small files'
blocks count here (a pass over more small files than this asks the workers
again for every one: least recently used goes first); big blocks hit
:data:`DEFAULT_MAX_BYTES` first."""
DEFAULT_MAX_BYTES = 4 << 30
"""Bytes of the block files kept open at most (1,024 blocks of 4 MiB: a 1 GiB
file read again finds all its blocks). A block the worker evicts while a
client holds its file keeps its memory until the client lets it go."""
DEFAULT_TTL_S = 10.0
"""Seconds a passed block file is used before the worker is asked again."""
RETRY_AFTER_S = 5.0
"""Seconds a worker whose socket failed is read over the data protocol only."""
_MAX_FDS = 4  # room for more than the one fd an answer carries: extra ones are closed
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_INBOX_SIZE = frames.PREFIX_SIZE + frames.MAX_HEADER  # a whole answer always fits


class LocalBlock:
    """One block file the worker at ``source`` (its Unix socket) passed: ``length`` bytes.

    ``memory`` blocks (tmpfs) are read on the caller's thread and can be
    mapped (:meth:`view`); others are read in a thread. The descriptor is
    closed once the block is retired and no read uses it any more; reads pin
    it under a lock, so any thread may read (:meth:`read_now`) while the
    loop thread retires it.
    """

    __slots__ = (
        "_fd",
        "_lock",
        "_mapping",
        "_offset",
        "_retired",
        "_users",
        "block_id",
        "expires",
        "length",
        "memory",
        "source",
    )

    def __init__(self, block_id: str, source: str, fd: int, grant: FdGrant, expires: float) -> None:
        self.block_id = block_id
        self.source = source
        self._fd = fd
        self.length = grant.length
        self.memory = grant.memory
        self.expires = expires
        self._offset = grant.offset
        self._mapping: mmap.mmap | None = None
        self._users = 0
        self._retired = False
        self._lock = threading.Lock()

    def linked(self) -> bool:
        """Not retired and its file still linked (not evicted, demoted or promoted)."""
        if self._retired:
            return False
        try:
            return os.fstat(self._fd).st_nlink > 0
        except OSError:
            return False

    def renew(self, fd: int, expires: float) -> bool:
        """Take a new grant of the same file: keep this one (and its mapping) until ``expires``.

        False (nothing changed) when ``fd`` is another file; ``fd`` is
        closed either way when True.
        """
        if self._retired:
            return False
        try:
            mine, theirs = os.fstat(self._fd), os.fstat(fd)
        except OSError:
            return False
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
            return False
        os.close(fd)
        self.expires = expires
        return True

    @property
    def mapped(self) -> bool:
        """Whether :meth:`view` has mapped the block already (a view then costs nothing)."""
        return self._mapping is not None

    def view(self) -> memoryview:
        """The block's bytes, mapped read-only (memory blocks only: no I/O can fail later)."""
        if not self.memory:
            raise InvalidArgument(f"block {self.block_id} is not on a memory tier: no mapping")
        if self._mapping is None:
            self._mapping = mmap.mmap(
                self._fd,
                self.length,
                flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                prot=mmap.PROT_READ,
                offset=self._offset,
            )
        return memoryview(self._mapping)

    async def read_into(self, start: int, view: memoryview) -> int:
        """Copy the block's bytes from ``start`` into ``view``; fewer where the block ends."""
        count = max(0, min(len(view), self.length - start))
        if count == 0:
            return 0
        fd = self._pin()
        if fd < 0:
            raise OSError(errno.EBADF, f"block {self.block_id}: its file was closed")
        try:
            if self.memory:
                return _pread_into(fd, view[:count], self._offset + start)
            return await asyncio.to_thread(_pread_into, fd, view[:count], self._offset + start)
        finally:
            self._unpin()

    def read_now(self, start: int, view: memoryview) -> int | None:
        """Copy the block's bytes from ``start`` into ``view`` on this thread (any thread).

        Fewer bytes where the block ends; None when the block was retired
        (its file is closed or about to be: read it another way).
        """
        fd = self._pin()
        if fd < 0:
            return None
        try:
            count = max(0, min(len(view), self.length - start))
            return _pread_into(fd, view[:count], self._offset + start)
        finally:
            self._unpin()

    def retire(self) -> None:
        """No new reads; the descriptor closes when the last read in progress ends."""
        with self._lock:
            self._retired = True
            self._close_if_unused()

    def _pin(self) -> int:
        """The descriptor, kept open until :meth:`_unpin`; -1 when retired."""
        with self._lock:
            if self._retired or self._fd < 0:
                return -1
            self._users += 1
            return self._fd

    def _unpin(self) -> None:
        with self._lock:
            self._users -= 1
            self._close_if_unused()

    def _close_if_unused(self) -> None:
        # Called with the lock held.
        if self._retired and self._users == 0 and self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
            self._mapping = None  # unmapped once the last view of it is gone


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            break
        done += got
    return done


def max_blocks_for_fd_limit(wanted: int = DEFAULT_MAX_BLOCKS) -> int:
    """``wanted``, cut to a quarter of this process's soft descriptor limit (at least 16).

    A held block takes one descriptor (the blocking client's reads), two once
    mapped (the mount's): at most half the limit, the rest left to the process.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft // 4))


class _Sent:
    """One ``open`` sent on a channel: its id and the future its answer settles."""

    __slots__ = ("future", "request_id")

    def __init__(self, request_id: int, future: asyncio.Future[tuple[FdGrant, int | None]]) -> None:
        self.request_id = request_id
        self.future = future


class FdChannel:
    """One Unix connection to a worker's data server for ``open`` requests, pipelined.

    Any number of callers send their requests at once; one reader task takes
    the answers in order (the worker answers in request order), with the
    descriptors that came along, and settles each caller's own request as
    soon as its answer is in: a batch does not wait for its slowest key, and
    nobody waits for another caller's batch. With nothing asked, a readable
    socket means the worker closed it (it exited or was killed): the channel
    closes and calls ``on_lost``.
    """

    def __init__(
        self, sock: socket.socket, path: str, on_lost: Callable[[str], None] | None = None
    ) -> None:
        sock.setblocking(False)
        self.path = path
        self.on_lost = on_lost
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._asked: collections.deque[_Sent] = collections.deque()
        self._inbox = bytearray(_INBOX_SIZE)
        self._have = 0  # bytes of the inbox received and not yet taken as answers
        self._fds: collections.deque[int] = collections.deque()  # passed, not yet matched
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None  # the reader's wait for the socket
        self._reader = self._loop.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        path: str,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        on_lost: Callable[[str], None] | None = None,
    ) -> FdChannel:
        """Connect to ``path``; :class:`Unavailable` when nobody listens there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, path), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise Unavailable(f"cannot connect to data server unix:{path}: {exc}") from exc
        return cls(sock, path, on_lost)

    @property
    def closed(self) -> bool:
        """True once the channel failed or was closed."""
        return self._closed

    async def open(
        self, block_id: str, key: BlockRef, cap: bytes | None, *, cached_only: bool = False
    ) -> tuple[FdGrant, int | None]:
        """Ask for a block's file: the grant and its descriptor (None for a memory-only block).

        Raises the error the worker answered, or :class:`Unavailable` when the
        channel breaks (it is closed then; so it is when a call is cancelled
        mid-send).
        """
        (future,) = await self.ask([(block_id, key)], cap, cached_only=cached_only)
        return await _own_answer(future)

    async def open_many(
        self, blocks: list[tuple[str, BlockRef]], cap: bytes | None, *, cached_only: bool = False
    ) -> list[tuple[FdGrant, int | None] | CacheClusterError]:
        """Ask for many blocks' files in one round trip: all requests out, then the answers.

        The worker checks and answers each request as it would a single
        ``open`` (in request order, each descriptor on its own answer), so a
        refused key or an older worker's "unknown op" is that key's error in
        the list. Raises :class:`Unavailable` when the channel breaks (the
        descriptors already received are closed then).
        """
        futures = await self.ask(blocks, cap, cached_only=cached_only)
        answers: list[tuple[FdGrant, int | None] | CacheClusterError] = []
        try:
            for future in futures:
                try:
                    answers.append(await _own_answer(future))
                except Unavailable:
                    raise
                except CacheClusterError as exc:
                    answers.append(exc)  # the worker's answer for this key
        except BaseException:
            for future in futures:
                future.cancel()  # an answer still to come: its descriptor is closed on arrival
            _close_answers(answers)
            raise
        return answers

    async def ask(
        self,
        blocks: list[tuple[str, BlockRef]],
        cap: bytes | None,
        *,
        cached_only: bool = False,
        file_blocks: int = 0,
    ) -> list[asyncio.Future[tuple[FdGrant, int | None]]]:
        """Send an ``open`` for each block; one future a block, settled when its answer is in.

        A future ends with the grant and descriptor, the error the worker
        answered for that key, or :class:`Unavailable` when the channel
        breaks. A future cancelled before its answer arrives has the
        descriptor that came with it closed. Raises :class:`Unavailable`
        when the channel is closed or the send fails. ``file_blocks`` (the
        file's block count) is a sequential reader's hint: each request says
        it reads the blocks after its own to the end (``ahead``).
        """
        futures: list[asyncio.Future[tuple[FdGrant, int | None]]] = []
        async with self._send_lock:
            if self._closed:
                raise Unavailable(f"fd channel to unix:{self.path} is closed")
            requests: list[bytes] = []
            for block_id, key in blocks:
                request_id = next(self._ids)
                requests.append(
                    frames.encode_request(
                        OpenRequest(
                            request_id,
                            block_id,
                            key,
                            cap,
                            cached_only=cached_only,
                            ahead=max(0, file_blocks - 1 - key.index),
                        )
                    )
                )
                future: asyncio.Future[tuple[FdGrant, int | None]] = self._loop.create_future()
                self._asked.append(_Sent(request_id, future))
                futures.append(future)
            try:
                await self._loop.sock_sendall(self._sock, b"".join(requests))
            except BaseException as exc:  # a part may be out: the stream is out of step
                self._fail(f"sending failed: {exc!r}")
                if isinstance(exc, OSError):
                    raise Unavailable(f"fd channel to unix:{self.path} broken: {exc}") from exc
                raise
        return futures

    # ------------------------------------------------------------ the reader

    async def _read_loop(self) -> None:
        """Take answers off the socket as they come, until the channel closes."""
        ancillary = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)
        try:
            while not self._closed:
                try:
                    n, cmsgs, flags, _ = self._sock.recvmsg_into(
                        [memoryview(self._inbox)[self._have :]], ancillary, _CLOEXEC
                    )
                except (BlockingIOError, InterruptedError):
                    await self._readable()
                    continue
                for level, kind, data in cmsgs:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        passed = array.array("i")
                        passed.frombytes(data[: len(data) - len(data) % passed.itemsize])
                        self._fds.extend(passed)
                if flags & socket.MSG_CTRUNC:
                    raise FrameError("descriptors were cut off (more than expected)")
                if n == 0:
                    raise ConnectionResetError("closed by the worker")
                self._have += n
                self._take_answers()
        except asyncio.CancelledError:
            self._fail("closed")
            raise
        except (OSError, FrameError) as exc:
            if self._closed:
                return
            reason = str(exc) if isinstance(exc, FrameError) else "closed by the worker"
            lost = not self._asked  # nothing was asked: the worker went away
            self._fail(reason)
            log.info("fd channel to unix:%s %s", self.path, reason)
            if lost and self.on_lost is not None:
                self.on_lost(self.path)

    def _take_answers(self) -> None:
        """Settle the requests whose answers are whole in the inbox; keep the rest."""
        view = memoryview(self._inbox)
        start = 0
        try:
            while self._have - start >= frames.PREFIX_SIZE:
                header_length, payload_length = frames.decode_prefix(
                    view[start : start + frames.PREFIX_SIZE], 0
                )
                end = start + frames.PREFIX_SIZE + header_length
                if end > self._have:
                    break
                answer = frames.decode_grant(view[start + frames.PREFIX_SIZE : end], payload_length)
                start = end
                self._settle(answer)
        finally:
            if start:
                view[: self._have - start] = view[start : self._have]
                self._have -= start
            del view

    def _settle(self, answer: FdGrant | frames.Response) -> None:
        if not self._asked:
            raise FrameError("sent bytes nobody asked for")
        asked = self._asked.popleft()
        if answer.request_id != asked.request_id:
            raise FrameError(f"answer {answer.request_id} where {asked.request_id} was due")
        fd: int | None = None
        if isinstance(answer, FdGrant) and answer.passed:
            if not self._fds:
                raise FrameError("an answer with fd=1 came without a descriptor")
            fd = self._fds.popleft()
        elif self._fds and not self._asked:
            raise FrameError(f"{len(self._fds)} descriptors came with no answer for them")
        if asked.future.done():  # its caller gave up
            if fd is not None:
                os.close(fd)
        elif isinstance(answer, frames.Response):
            asked.future.set_exception(answer.error(f"unix:{self.path}"))
        else:
            asked.future.set_result((answer, fd))

    async def _readable(self) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self._waiter = waiter
        self._loop.add_reader(self._sock, wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if not self._closed:  # _fail took the reader off already (the socket is gone)
                self._loop.remove_reader(self._sock)

    def alive(self) -> bool:
        """Whether the worker still holds its end (one non-blocking peek; no wait)."""
        if self._closed:
            return False
        if not self._asked:  # nothing asked: nothing may be readable
            try:
                data = self._sock.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                data = b""
            reason = "closed by the worker" if not data else "sent bytes nobody asked for"
            log.info("fd channel to unix:%s %s", self.path, reason)
            self._fail(reason)
            if self.on_lost is not None:
                self.on_lost(self.path)
        return not self._closed

    def _fail(self, reason: str) -> None:
        """Close the channel: every request still waiting ends with :class:`Unavailable`."""
        if self._closed:
            return
        self._closed = True
        waiter = self._waiter
        if waiter is not None:  # the reader waits for the socket: it ends now
            self._loop.remove_reader(self._sock)
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the channel was closed"))
        if self._reader is not asyncio.current_task() and not self._reader.done():
            self._reader.cancel()
        error = Unavailable(f"fd channel to unix:{self.path} broken: {reason}")
        while self._asked:
            future = self._asked.popleft().future
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller that gave up is no error to log
        while self._fds:
            os.close(self._fds.popleft())
        self._sock.close()

    def close(self) -> None:
        """Close the socket; requests waiting and later calls raise :class:`Unavailable`."""
        self._fail("closed")


async def _own_answer(
    future: asyncio.Future[tuple[FdGrant, int | None]],
) -> tuple[FdGrant, int | None]:
    """Await one request's answer; the caller cancelled, the descriptor is not lost."""
    try:
        return await future
    except asyncio.CancelledError:
        if future.done() and not future.cancelled() and future.exception() is None:
            _close_answers([future.result()])
        raise


def _close_answers(answers: list[tuple[FdGrant, int | None] | CacheClusterError]) -> None:
    for answer in answers:
        if isinstance(answer, tuple) and answer[1] is not None:
            os.close(answer[1])


class _Miss(enum.Enum):
    """An ``open`` with ``cached`` found the block not cached: nothing was fetched."""

    MISS = 0


_Got = LocalBlock | None | Literal[_Miss.MISS]
"""What asking a worker for a block's file got (see :meth:`ShortCircuitReads._answered`)."""


@dataclass
class ShortCircuitStats:
    """Counters of a client's short-circuit reads."""

    opens: int = 0  # block files the workers passed
    reuses: int = 0  # reads served by a block file already held
    renewals: int = 0  # held files the worker passed again after their time (kept)
    memory_only: int = 0  # answers without a file (the block was held in memory)
    fallbacks: int = 0  # asks that ended in "read it over the data protocol"


class ShortCircuitReads:
    """The block files same-host workers passed to this client (see the module doc)."""

    def __init__(
        self,
        *,
        max_blocks: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = DEFAULT_TTL_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if max_blocks is None:
            max_blocks = max_blocks_for_fd_limit()
        if max_blocks < 1:
            raise InvalidArgument(f"max_blocks {max_blocks} must be at least 1")
        self.max_blocks = max_blocks
        self.max_bytes = max_bytes
        self._held_bytes = 0
        self.ttl = ttl
        self.connect_timeout = connect_timeout
        self.stats = ShortCircuitStats()
        self._blocks: collections.OrderedDict[str, LocalBlock] = collections.OrderedDict()
        self._flights: dict[str, asyncio.Task[_Got]] = {}
        self._channels: dict[str, FdChannel] = {}
        self._channel_locks: dict[str, asyncio.Lock] = {}
        self._off_until: dict[str, float] = {}
        self._closed = False

    def usable(self, address: WorkerAddress) -> bool:
        """Whether to ask ``address`` for block files now (same host, socket not failing)."""
        path = address.unix_path
        if self._closed or not path:
            return False
        return time.monotonic() >= self._off_until.get(path, 0.0)

    async def block(
        self,
        address: WorkerAddress,
        block_id: str,
        key: BlockRef,
        cap: bytes | None,
        *,
        file_blocks: int = 0,
    ) -> LocalBlock | None:
        """The block's file, held already or asked of the worker; None: use the data protocol.

        ``file_blocks``: a sequential reader's hint (see :meth:`FdChannel.ask`).
        """
        held = self._blocks.get(block_id)
        if held is not None:
            channel = self._channels.get(held.source)
            if held.linked() and channel is not None and channel.alive():
                if time.monotonic() < held.expires:
                    self._blocks.move_to_end(block_id)
                    self.stats.reuses += 1
                    return held
                # Expired: ask again; the same file keeps this block and its mapping.
            else:
                self._forget(block_id)
        for _ in range(2):  # a prefetch's "not cached" answer: ask once more, to fetch it
            if not self.usable(address):
                return None
            flight = self._flights.get(block_id)
            if flight is None:
                flight = asyncio.ensure_future(self._ask(address, block_id, key, cap, file_blocks))
                self._track(block_id, flight)
            got = await asyncio.shield(flight)
            if got is not _Miss.MISS:
                return got
        return None

    def held(self, block_id: str, *, stale: float = 0.0) -> LocalBlock | None:
        """The block's file if held and fresh, else None; safe on any thread (no loop, no wait).

        For reads on the caller's thread (:meth:`LocalBlock.read_now`).
        ``stale`` seconds past its time a block still counts (the caller then
        has it asked again in the background: :meth:`prefetch`). It does not
        ask the worker: a block not held (or expired, or unlinked) is None,
        and the loop's :meth:`block` asks for it.
        """
        held = self._blocks.get(block_id)
        if held is None or time.monotonic() >= held.expires + stale or not held.linked():
            return None
        return held

    async def prefetch(
        self,
        address: WorkerAddress,
        blocks: list[tuple[str, BlockRef]],
        cap: bytes | None,
        *,
        fetch: bool = True,
        file_blocks: int = 0,
    ) -> None:
        """Ask ``address`` for the files of ``blocks`` in one round trip.

        ``file_blocks``: a sequential reader's hint (see :meth:`FdChannel.ask`).

        With ``fetch`` False the ``open`` requests ask only for blocks cached
        there (``cached``): a cold block is not fetched by this (its reader
        asks for it, and the worker fetches it then). Blocks held and fresh, or asked for already,
        are skipped; at most a quarter of :attr:`max_blocks` are asked for.
        :meth:`block` calls for these blocks meanwhile wait for their own
        answer (not the batch's). Errors stay with their blocks (a later
        :meth:`block` asks again); nothing is raised.
        """
        if not self.usable(address):
            return
        budget = max(1, self.max_blocks // 4)
        wanted: dict[str, BlockRef] = {}
        for block_id, key in blocks:
            if len(wanted) >= budget:
                break
            if block_id not in self._flights and self.held(block_id) is None:
                wanted[block_id] = key
        if not wanted:
            return
        sent = asyncio.ensure_future(
            self._send(
                address, list(wanted.items()), cap, cached=not fetch, file_blocks=file_blocks
            )
        )
        flights: list[asyncio.Task[_Got]] = []
        for index, block_id in enumerate(wanted):
            flight = asyncio.ensure_future(self._answered(address, block_id, sent, index))
            self._track(block_id, flight)
            flights.append(flight)
        await asyncio.gather(*flights, return_exceptions=True)

    async def close(self) -> None:
        """Close every block file and channel; later calls answer None."""
        self._closed = True
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)
        for block_id in list(self._blocks):
            self._forget(block_id)
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    # ------------------------------------------------------------ internals

    def _track(self, block_id: str, flight: asyncio.Task[_Got]) -> None:
        """``flight`` asks for ``block_id``: later asks for it wait for this one."""
        self._flights[block_id] = flight
        flight.add_done_callback(functools.partial(self._flight_done, block_id))

    def _flight_done(self, block_id: str, flight: asyncio.Task[_Got]) -> None:
        if self._flights.get(block_id) is flight:
            del self._flights[block_id]
        if not flight.cancelled():
            flight.exception()  # retrieved: the waiters (if any) got it

    def _worker_lost(self, path: str) -> None:
        """The worker at ``path`` went away: drop its files (its blocks move to other workers)."""
        for block_id in [b.block_id for b in self._blocks.values() if b.source == path]:
            self._forget(block_id)

    def _forget(self, block_id: str) -> None:
        held = self._blocks.pop(block_id, None)
        if held is not None:
            self._held_bytes -= held.length
            held.retire()

    async def _ask(
        self,
        address: WorkerAddress,
        block_id: str,
        key: BlockRef,
        cap: bytes | None,
        file_blocks: int = 0,
    ) -> LocalBlock | None:
        """One block's file (the worker fetches it if need be); None: use the data protocol.

        The worker's refusal is raised (and the block is no longer held).
        """
        sent = asyncio.ensure_future(
            self._send(address, [(block_id, key)], cap, cached=False, file_blocks=file_blocks)
        )
        answer = await self._answered(address, block_id, sent, 0)
        return None if answer is _Miss.MISS else answer

    async def _send(
        self,
        address: WorkerAddress,
        blocks: list[tuple[str, BlockRef]],
        cap: bytes | None,
        *,
        cached: bool,
        file_blocks: int = 0,
    ) -> list[asyncio.Future[tuple[FdGrant, int | None]]] | None:
        """Send ``open``s for ``blocks``: the futures of their answers; None: the socket failed."""
        path = address.unix_path
        assert path is not None
        try:
            channel = await self._channel(path)
            return await channel.ask(blocks, cap, cached_only=cached, file_blocks=file_blocks)
        except Unavailable as exc:
            self._pause(path, exc)
            return None

    async def _answered(
        self,
        address: WorkerAddress,
        block_id: str,
        sent: asyncio.Future[list[asyncio.Future[tuple[FdGrant, int | None]]] | None],
        index: int,
    ) -> _Got:
        """What request ``index`` of ``sent`` (for ``block_id``) got: the block held, or not.

        None: read it over the data protocol (the socket failed, an older
        worker, a memory-only block); :attr:`_Miss.MISS`: not cached there (an
        ``open`` with ``cached``). The worker's refusal is raised, and the
        block is no longer held.
        """
        path = address.unix_path
        assert path is not None
        futures = await asyncio.shield(sent)
        if futures is None:
            return None
        try:
            grant, fd = await _own_answer(futures[index])
        except Unavailable as exc:
            self._pause(path, exc)
            return None
        except InvalidArgument as exc:  # no ``open`` there: an older worker
            if self._off_until.get(path) != math.inf:
                log.info("worker unix:%s does not pass block files (%s)", path, exc)
            self._off_until[path] = math.inf
            self.stats.fallbacks += 1
            return None
        except CacheClusterError:
            self._forget(block_id)  # refused now (or gone): no stale reads of it either
            raise
        if grant.missing:
            return _Miss.MISS
        return self._keep(path, block_id, grant, fd)

    def _pause(self, path: str, exc: Unavailable) -> None:
        """The socket to ``path`` failed: read over the data protocol for a while."""
        if time.monotonic() >= self._off_until.get(path, 0.0):
            log.info("short-circuit reads from unix:%s paused: %s", path, exc)
            self._off_until[path] = time.monotonic() + RETRY_AFTER_S
        self.stats.fallbacks += 1

    def _keep(self, path: str, block_id: str, grant: FdGrant, fd: int | None) -> LocalBlock | None:
        """Hold the file the worker at ``path`` passed for ``block_id`` (None: it passed none)."""
        if fd is None:
            self.stats.memory_only += 1
            return None
        if self._closed:
            os.close(fd)
            return None
        expires = time.monotonic() + self.ttl
        held = self._blocks.get(block_id)
        if held is not None and held.source == path and held.renew(fd, expires):
            self._blocks.move_to_end(block_id)
            self.stats.renewals += 1
            return held
        self.stats.opens += 1
        block = LocalBlock(block_id, path, fd, grant, expires)
        self._forget(block_id)
        self._blocks[block_id] = block
        self._held_bytes += block.length
        while len(self._blocks) > self.max_blocks or self._held_bytes > self.max_bytes:
            self._forget(next(iter(self._blocks)))
        return block

    async def _channel(self, path: str) -> FdChannel:
        channel = self._channels.get(path)
        if channel is not None and not channel.closed:
            return channel
        lock = self._channel_locks.setdefault(path, asyncio.Lock())
        async with lock:
            channel = self._channels.get(path)
            if channel is None or channel.closed:
                channel = await FdChannel.connect(
                    path, timeout=self.connect_timeout, on_lost=self._worker_lost
                )
                self._channels[path] = channel
            return channel
