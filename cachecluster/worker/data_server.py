"""The worker's data server: block bytes to clients over the framed data protocol.

Raw non-blocking sockets on the running loop (asyncio or uvloop), TCP and
optionally a Unix socket. Per connection one task reads requests as they come
and opens their blocks concurrently (at most ``max_in_flight`` at a time);
another writes the responses in request order. A file-backed block goes out
with ``os.sendfile`` on the socket's fd, waiting for writability with
``loop.add_writer`` (uvloop implements neither ``loop.sendfile`` nor
``loop.sock_sendfile``); an in-memory block with ``loop.sock_sendall``.

Short-circuit reads: over the Unix socket a client on this host may ``open``
a block instead of reading it. The opener checks the request exactly as for a
``read`` (the id against its key, the capability; a disk block's checksum is
verified when the store opens it), then the block file's descriptor goes to
the client with ``SCM_RIGHTS`` (see :mod:`cachecluster.common.frames`); the
client then reads the file itself, without a byte through this process. A
block held only in memory is answered without a descriptor. Over TCP an
``open`` is refused with an ``invalid`` error.

Errors from the opener become error responses and the connection goes on. A
broken frame, a peer reset or a failed send closes that one connection, logged
in one line; every other connection keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import socket
from dataclasses import dataclass
from typing import Protocol

from cachecluster.common import frames
from cachecluster.common.error_map import kind_of
from cachecluster.common.errors import ConfigError, ErrorKind, InvalidArgument, NotCached
from cachecluster.common.frames import FrameError, OpenRequest, PingRequest, ReadRequest

log = logging.getLogger("cachecluster.worker.data_server")

DEFAULT_MAX_IN_FLIGHT = 8
_BACKLOG = 128
_UNIX_SNDBUF = 4 * 1024 * 1024


class BlockLeaseLike(Protocol):
    """What the server needs of a block lease (``BlockStore.get`` returns one).

    ``fd`` is an open file for a block kept in a file (``fileno()`` gives its
    descriptor and the data starts at ``offset``), or None for a block kept in
    memory, whose bytes ``read()`` returns (or, without a copy, a ``buffer``
    memoryview when the lease has one, as ``BlockLease`` does). The bytes stay
    valid until ``close()``.
    """

    @property
    def fd(self) -> object | None: ...

    @property
    def offset(self) -> int: ...

    @property
    def length(self) -> int: ...

    def fileno(self) -> int: ...

    def read(self) -> bytes: ...

    def close(self) -> None: ...


class BlockOpener(Protocol):
    """Finds (or fetches) the block a read asks for and leases it to the server.

    Raises cachecluster errors (``NotFound``, ``PermissionDenied``,
    ``Unavailable``...) which reach the client as error responses. The worker
    plugs its block store, UFS loader and capability check in here. A request
    with ``cached_only`` for a block not held raises ``NotCached`` (answered
    as a ``miss``) instead of fetching it.
    """

    async def open_block(self, request: ReadRequest) -> BlockLeaseLike: ...


@dataclass
class DataServerStats:
    """Counters of one server; the worker's metrics module exports them."""

    connections_accepted: int = 0
    connections_open: int = 0
    connections_failed: int = 0
    requests: int = 0
    bytes_sent: int = 0
    errors: int = 0  # error responses sent
    fds_passed: int = 0  # block file descriptors handed to same-host clients


class DataServer:
    """Serves blocks from ``opener`` on TCP ``host:port`` and optionally ``unix_path``."""

    def __init__(
        self,
        opener: BlockOpener,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str | None = None,
        max_payload: int = frames.DEFAULT_MAX_PAYLOAD,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if not 0 < max_payload <= 0xFFFFFFFF:
            raise ConfigError("max_payload", f"{max_payload} not in 1..{0xFFFFFFFF}")
        if max_in_flight < 1:
            raise ConfigError("max_in_flight", f"{max_in_flight} must be at least 1")
        self.opener = opener
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.max_payload = max_payload
        self.max_in_flight = max_in_flight
        self.stats = DataServerStats()
        self._listeners: list[socket.socket] = []
        self._accept_tasks: list[asyncio.Task[None]] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        """Bind and listen; ``port`` holds the bound TCP port afterwards."""
        loop = asyncio.get_running_loop()
        tcp = socket.create_server((self.host, self.port), backlog=_BACKLOG, reuse_port=False)
        self._listeners.append(tcp)
        self.port = tcp.getsockname()[1]
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
            unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                unix.bind(self.unix_path)
                unix.listen(_BACKLOG)
            except OSError:
                unix.close()
                tcp.close()
                self._listeners.clear()
                raise
            self._listeners.append(unix)
        for listener in self._listeners:
            listener.setblocking(False)
            self._accept_tasks.append(loop.create_task(self._accept_loop(listener)))
        log.info(
            "data server listening on %s:%d%s",
            self.host,
            self.port,
            f" and {self.unix_path}" if self.unix_path else "",
        )

    async def close(self) -> None:
        """Stop listening and close every live connection; pending reads fail at the client."""
        self._closing = True
        for task in self._accept_tasks:
            task.cancel()
        await asyncio.gather(*self._accept_tasks, return_exceptions=True)
        self._accept_tasks.clear()
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    async def __aenter__(self) -> DataServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and friends: keep serving who we have
                log.warning("data server accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if self._closing:
                sock.close()
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                peer = f"{address[0]}:{address[1]}"
            else:
                # The default buffer (about 200 KiB) costs a loop round trip per
                # 200 KiB sent; a block-sized one lets sendfile move a block at once.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _UNIX_SNDBUF)
                peer = f"unix:{self.unix_path}"
            self.stats.connections_accepted += 1
            conn = _Connection(self, sock, peer)
            task = loop.create_task(conn.serve())
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
            # A task cancelled before it ever ran never reaches its own cleanup.
            task.add_done_callback(functools.partial(_close_socket, sock))


class _ConnectionClosed(Exception):
    """The peer closed its end between two frames: a normal end."""


@dataclass(slots=True)
class _Pending:
    """One request awaiting its response: ``future`` gives the lease (None for a ping)."""

    request_id: int
    request: ReadRequest | OpenRequest | None
    future: asyncio.Future[BlockLeaseLike | None]


class _Connection:
    """One client connection: a request reader and an in-order response writer."""

    def __init__(self, server: DataServer, sock: socket.socket, peer: str) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.stats = server.stats
        # Bounds the requests between read and answered: opens in flight and leases held.
        self.slots = asyncio.Semaphore(server.max_in_flight)
        self.queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self.prefix = bytearray(frames.PREFIX_SIZE)
        self.header = bytearray(frames.MAX_HEADER)

    async def serve(self) -> None:
        self.stats.connections_open += 1
        reader = self.loop.create_task(self._read_loop())
        writer = self.loop.create_task(self._write_loop())
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_EXCEPTION)
            for task in (reader, writer):
                if task in done and not task.cancelled() and task.exception() is not None:
                    self._log_failure(task.exception())
                    break
        finally:
            reader.cancel()
            writer.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            await self._release_queued()
            self.sock.close()
            self.stats.connections_open -= 1

    def _log_failure(self, exc: BaseException | None) -> None:
        self.stats.connections_failed += 1
        if isinstance(exc, FrameError):
            reason = f"bad frame: {exc}"
        elif isinstance(exc, OSError):
            reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("data connection from %s closed: %s", self.peer, reason)

    async def _release_queued(self) -> None:
        """Cancel opens nobody will answer and close the leases some of them got."""
        futures: list[asyncio.Future[BlockLeaseLike | None]] = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                item.future.cancel()
                futures.append(item.future)
        await asyncio.gather(*futures, return_exceptions=True)
        for future in futures:
            _close_result(future)

    # ------------------------------------------------------------ requests

    async def _recv_exactly(self, view: memoryview, *, at_frame_start: bool = False) -> None:
        got = 0
        while got < len(view):
            n = await self.loop.sock_recv_into(self.sock, view[got:])
            if n == 0:
                if at_frame_start and got == 0:
                    raise _ConnectionClosed
                raise ConnectionError(
                    f"peer closed the connection after {got} of {len(view)} bytes"
                )
            got += n

    async def _read_loop(self) -> None:
        prefix = memoryview(self.prefix)
        header = memoryview(self.header)
        max_payload = self.server.max_payload
        try:
            while True:
                await self._recv_exactly(prefix, at_frame_start=True)
                header_length, payload_length = frames.decode_prefix(prefix, max_payload)
                await self._recv_exactly(header[:header_length])
                if payload_length:
                    raise FrameError(f"a request carries no payload, got {payload_length} bytes")
                fields = frames.unpack_header(header[:header_length])
                await self.slots.acquire()
                self.stats.requests += 1
                future: asyncio.Future[BlockLeaseLike | None]
                try:
                    request = frames.decode_request_header(fields, max_payload)
                except FrameError as exc:
                    request_id = frames.request_id_of(fields)
                    if request_id is None:
                        raise
                    # The frame itself is whole: answer it, and keep the connection.
                    future = self.loop.create_future()
                    future.set_exception(exc)
                    self.queue.put_nowait(_Pending(request_id, None, future))
                    continue
                if isinstance(request, PingRequest):
                    future = self.loop.create_future()
                    future.set_result(None)
                    self.queue.put_nowait(_Pending(request.request_id, None, future))
                elif isinstance(request, OpenRequest):
                    future = self.loop.create_task(self._open_file(request))
                    self.queue.put_nowait(_Pending(request.request_id, request, future))
                else:
                    future = self.loop.create_task(self._open(request))
                    self.queue.put_nowait(_Pending(request.request_id, request, future))
        except _ConnectionClosed:
            self.queue.put_nowait(None)  # answer what was asked, then end

    async def _open(self, request: ReadRequest) -> BlockLeaseLike | None:
        lease = await self.server.opener.open_block(request)
        if request.offset > lease.length:
            _close_quietly(lease)
            raise InvalidArgument(
                f"offset {request.offset} is past the end of block {request.block_id} "
                f"({lease.length} bytes)"
            )
        return lease

    async def _open_file(self, request: OpenRequest) -> BlockLeaseLike | None:
        if self.sock.family != socket.AF_UNIX:
            raise InvalidArgument(
                f"'open' of block {request.block_id} passes a file descriptor: "
                "only over the worker's Unix socket"
            )
        # The opener checks an open exactly as a read of the whole block.
        read = ReadRequest(
            request.request_id,
            request.block_id,
            request.key,
            0,
            0,
            request.cap,
            cached_only=request.cached_only,
            ahead=request.ahead,
        )
        return await self.server.opener.open_block(read)

    # ----------------------------------------------------------- responses

    async def _write_loop(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            try:
                try:
                    lease = await item.future
                except asyncio.CancelledError:
                    _close_result(item.future)  # it may have finished just before the cancel
                    raise
                except NotCached:  # an ``open`` asked only for a block held already
                    await self.loop.sock_sendall(self.sock, frames.encode_miss(item.request_id))
                    continue
                except Exception as exc:
                    await self._send_error(item.request_id, exc)
                    continue
                if lease is None or item.request is None:  # a ping
                    await self.loop.sock_sendall(self.sock, frames.encode_ok(item.request_id, 0))
                    continue
                try:
                    if isinstance(item.request, OpenRequest):
                        await self._send_grant(item.request, lease)
                    else:
                        await self._send_block(item.request, lease)
                finally:
                    _close_quietly(lease)
            finally:
                self.slots.release()

    async def _send_error(self, request_id: int, exc: Exception) -> None:
        kind = kind_of(exc)
        if kind is ErrorKind.INTERNAL:
            log.error("data request %d from %s failed", request_id, self.peer, exc_info=exc)
        self.stats.errors += 1
        await self.loop.sock_sendall(self.sock, frames.encode_error(request_id, kind, str(exc)))

    async def _send_block(self, request: ReadRequest, lease: BlockLeaseLike) -> None:
        count = min(request.length, lease.length - request.offset)
        await self.loop.sock_sendall(self.sock, frames.encode_ok(request.request_id, count))
        if count == 0:
            return
        if lease.fd is not None:
            await self._sendfile(lease.fileno(), lease.offset + request.offset, count)
        else:
            data = _memory_of(lease)
            await self.loop.sock_sendall(self.sock, data[request.offset : request.offset + count])
        self.stats.bytes_sent += count

    async def _send_grant(self, request: OpenRequest, lease: BlockLeaseLike) -> None:
        """Answer an ``open``: the lease's fd rides on the frame, or none for a memory block."""
        if lease.fd is None:
            await self.loop.sock_sendall(
                self.sock, frames.encode_grant(request.request_id, lease.length)
            )
            return
        medium = getattr(lease, "medium", None)
        frame = frames.encode_grant(
            request.request_id,
            lease.length,
            offset=lease.offset,
            memory=getattr(medium, "value", None) == "MEM",
        )
        while True:
            try:  # the kernel duplicates the fd into the message: closing the lease is safe
                sent = socket.send_fds(self.sock, [frame], [lease.fileno()])
                break
            except BlockingIOError:
                await self._writable()
            except InterruptedError:
                continue
        if sent < len(frame):  # the fd went with the first byte; the rest is plain
            await self.loop.sock_sendall(self.sock, frame[sent:])
        self.stats.fds_passed += 1

    async def _sendfile(self, in_fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``in_fd`` from ``offset`` without copying them through Python."""
        out_fd = self.sock.fileno()
        while count > 0:
            try:
                sent = os.sendfile(out_fd, in_fd, offset, count)
            except BlockingIOError:
                await self._writable()
                continue
            except InterruptedError:
                continue
            if sent == 0:
                # The header promised bytes the file does not have: the stream is now wrong.
                raise ConnectionAbortedError(
                    errno.ECONNABORTED, f"block file ended {count} bytes early at offset {offset}"
                )
            offset += sent
            count -= sent

    async def _writable(self) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self.loop.add_writer(self.sock, wake)
        try:
            await waiter
        finally:
            self.loop.remove_writer(self.sock)


def _memory_of(lease: BlockLeaseLike) -> memoryview:
    """The bytes of an in-memory lease: its ``buffer`` if it has one (no copy), else ``read()``."""
    buffer = getattr(lease, "buffer", None)
    if isinstance(buffer, memoryview):
        return buffer
    return memoryview(lease.read())


def _close_socket(sock: socket.socket, _: object) -> None:
    sock.close()


def _close_result(future: asyncio.Future[BlockLeaseLike | None]) -> None:
    """Close the lease a finished open produced, if it produced one."""
    if future.done() and not future.cancelled() and future.exception() is None:
        lease = future.result()
        if lease is not None:
            _close_quietly(lease)


def _close_quietly(lease: BlockLeaseLike) -> None:
    try:
        lease.close()
    except Exception:
        log.exception("closing a block lease failed")
