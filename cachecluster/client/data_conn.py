"""The client side of the data protocol: pipelined block reads from one worker.

Many callers share one :class:`DataConnection`. Each call writes its request at
once; one reader task takes the responses in order and receives every payload
with ``loop.sock_recv_into`` straight into the buffer its caller passed, so no
block passes through an intermediate ``bytes``. An error response raises the
cachecluster error of its kind; a dead connection fails every pending call
with :class:`Unavailable` naming the worker, and stays closed.

:class:`DataConnectionPool` keeps one or a few connections per worker and
reconnects on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import os
import socket
from collections import deque
from dataclasses import dataclass

from cachecluster.common import frames
from cachecluster.common.errors import InvalidArgument, Unavailable
from cachecluster.common.frames import BlockRef, FrameError, PingRequest, ReadRequest

DEFAULT_CONNECT_TIMEOUT = 5.0
_SCRATCH_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class WorkerAddress:
    """Where a worker's data server listens.

    ``unix_path`` is set only when the worker runs on the client's host; the
    pool then prefers it (about twice loopback TCP) and falls back to TCP.
    """

    host: str
    port: int
    unix_path: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class _State(enum.Enum):
    WAITING = 0
    RECEIVING = 1  # the reader is writing into the caller's buffer
    ABANDONED = 2  # the caller gave up before its payload came: discard it


class _Pending:
    __slots__ = ("buf", "future", "request_id", "state")

    def __init__(self, request_id: int, buf: memoryview, future: asyncio.Future[int]) -> None:
        self.request_id = request_id
        self.buf = buf
        self.future = future
        self.state = _State.WAITING


class DataConnection:
    """One pipelined connection to a worker's data server. Make one with :meth:`connect`."""

    def __init__(
        self,
        sock: socket.socket,
        address: str,
        *,
        max_payload: int = frames.DEFAULT_MAX_PAYLOAD,
    ) -> None:
        sock.setblocking(False)
        self.address = address
        self.max_payload = max_payload
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: deque[_Pending] = deque()
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._closer: asyncio.Task[None] | None = None
        self._prefix = bytearray(frames.PREFIX_SIZE)
        self._header = bytearray(frames.MAX_HEADER)
        self._scratch: bytearray | None = None
        self._reader = self._loop.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_payload: int = frames.DEFAULT_MAX_PAYLOAD,
    ) -> DataConnection:
        """Connect over TCP; :class:`Unavailable` when the worker cannot be reached."""
        loop = asyncio.get_running_loop()
        address = f"{host}:{port}"
        last: Exception | None = None
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Unavailable(f"cannot resolve data server {address}: {exc}") from exc
        for family, type_, proto, _, sockaddr in infos:
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout)
            except (OSError, TimeoutError) as exc:
                sock.close()
                last = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return cls(sock, address, max_payload=max_payload)
        raise Unavailable(f"cannot connect to data server {address}: {last}") from last

    @classmethod
    async def connect_unix(
        cls,
        path: str,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_payload: int = frames.DEFAULT_MAX_PAYLOAD,
    ) -> DataConnection:
        """Connect over a Unix socket; :class:`Unavailable` when nobody listens there."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, path), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise Unavailable(f"cannot connect to data server unix:{path}: {exc}") from exc
        return cls(sock, f"unix:{path}", max_payload=max_payload)

    @property
    def closed(self) -> bool:
        """True once the connection failed or was closed; it never reopens."""
        return self._closed

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    async def read_block(
        self,
        block_id: str,
        key: BlockRef,
        offset: int,
        length: int,
        buf: memoryview | bytearray,
        *,
        cap: bytes | None = None,
        ahead: int = 0,
    ) -> int:
        """Read up to ``length`` bytes at ``offset`` of a block into the start of ``buf``.

        ``ahead``: a sequential reader's hint, the blocks it reads right after
        this one (the worker then fetches them with this one on a miss).

        Returns how many bytes arrived: fewer than ``length`` only where the
        block ends. Raises the error the worker reported (``NotFound``,
        ``PermissionDenied``...), or :class:`Unavailable` when the connection
        dies. Cancelling a call whose payload is already arriving closes the
        connection, so that nothing writes into ``buf`` after the call ends.
        """
        view = memoryview(buf).cast("B")
        if view.readonly:
            raise InvalidArgument("read_block needs a writable buffer")
        if not 0 <= length <= min(len(view), self.max_payload):
            raise InvalidArgument(
                f"length {length} not in 0..{min(len(view), self.max_payload)} "
                f"(buffer {len(view)} bytes, max payload {self.max_payload})"
            )
        if offset < 0:
            raise InvalidArgument(f"offset {offset} is negative")
        request_id = next(self._ids)
        frame = frames.encode_request(
            ReadRequest(request_id, block_id, key, offset, length, cap, ahead=ahead),
        )
        return await self._call(request_id, frame, view[:length])

    async def ping(self) -> None:
        """One round trip; raises :class:`Unavailable` if the worker does not answer."""
        request_id = next(self._ids)
        await self._call(
            request_id, frames.encode_request(PingRequest(request_id)), memoryview(b"")
        )

    async def close(self) -> None:
        """Close the connection; pending calls fail with :class:`Unavailable`."""
        self._fail(None)
        if self._closer is not None:
            await self._closer

    async def __aenter__(self) -> DataConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ internals

    def _unavailable(self, reason: str) -> Unavailable:
        return Unavailable(f"data connection to {self.address} {reason}")

    async def _call(self, request_id: int, frame: bytes, view: memoryview) -> int:
        future: asyncio.Future[int] = self._loop.create_future()
        pending = _Pending(request_id, view, future)
        async with self._write_lock:
            if self._closed:
                raise self._unavailable("is closed")
            self._pending.append(pending)
            try:
                await self._loop.sock_sendall(self._sock, frame)
            except BaseException as exc:  # a partial request breaks the stream for everyone
                future.cancel()
                self._fail(exc)
                if isinstance(exc, OSError):
                    raise self._unavailable(f"lost: {exc}") from exc
                raise
        try:
            return await future
        except asyncio.CancelledError:
            landed = future.done() and not future.cancelled()
            receiving = pending.state is _State.RECEIVING and not landed
            pending.state = _State.ABANDONED  # the reader discards its payload
            future.cancel()
            if receiving:  # too late to redirect: stop the reader writing into our buffer
                self._fail(ConnectionAbortedError("a read was cancelled mid-payload"))
            raise

    async def _recv_exactly(self, view: memoryview) -> None:
        got = 0
        total = len(view)
        sock = self._sock
        while got < total:
            try:  # what has already arrived needs no trip through the loop
                n = sock.recv_into(view[got:])
            except BlockingIOError:
                n = await self._loop.sock_recv_into(sock, view[got:])
            if n == 0:
                raise ConnectionResetError("closed by the worker")
            got += n

    async def _discard(self, count: int) -> None:
        if self._scratch is None:
            self._scratch = bytearray(_SCRATCH_SIZE)
        scratch = memoryview(self._scratch)
        while count > 0:
            chunk = min(count, len(scratch))
            await self._recv_exactly(scratch[:chunk])
            count -= chunk

    async def _read_loop(self) -> None:
        prefix = memoryview(self._prefix)
        header = memoryview(self._header)
        try:
            while True:
                await self._recv_exactly(prefix)
                header_length, payload_length = frames.decode_prefix(prefix, self.max_payload)
                await self._recv_exactly(header[:header_length])
                response = frames.decode_response(header[:header_length], payload_length)
                if not self._pending:
                    raise FrameError(f"response {response.request_id} to no request")
                pending = self._pending[0]
                if response.request_id != pending.request_id:
                    raise FrameError(
                        f"response {response.request_id} where {pending.request_id} was due"
                    )
                if payload_length > len(pending.buf):
                    raise FrameError(f"{payload_length} bytes where {len(pending.buf)} were asked")
                if pending.state is _State.ABANDONED:
                    await self._discard(payload_length)
                elif payload_length:
                    pending.state = _State.RECEIVING
                    await self._recv_exactly(pending.buf[:payload_length])
                self._pending.popleft()
                if pending.future.done():
                    continue
                if response.ok:
                    pending.future.set_result(payload_length)
                else:
                    pending.future.set_exception(response.error(self.address))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException | None) -> None:
        """Mark the connection dead, fail every pending call and close the socket."""
        if self._closed:
            return
        self._closed = True
        if exc is None:
            reason = "closed"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = f"lost: {exc.strerror}"
        else:
            reason = f"lost: {exc}"
        while self._pending:
            pending = self._pending.popleft()
            if not pending.future.done():
                pending.future.set_exception(self._unavailable(reason))
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if self._reader is not asyncio.current_task():
            self._reader.cancel()
        self._closer = self._loop.create_task(self._close_socket())

    async def _close_socket(self) -> None:
        # Close the fd only once no loop callback can still touch it.
        await asyncio.gather(self._reader, return_exceptions=True)
        async with self._write_lock:
            self._sock.close()


class DataConnectionPool:
    """Connections to many workers, a few per worker, opened on first use and after failures."""

    def __init__(
        self,
        *,
        connections_per_worker: int = 1,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_payload: int = frames.DEFAULT_MAX_PAYLOAD,
        prefer_unix: bool = True,
    ) -> None:
        if connections_per_worker < 1:
            raise InvalidArgument(f"connections_per_worker {connections_per_worker} must be >= 1")
        self.connections_per_worker = connections_per_worker
        self.connect_timeout = connect_timeout
        self.max_payload = max_payload
        self.prefer_unix = prefer_unix
        self._slots: dict[WorkerAddress, list[DataConnection | None]] = {}
        self._locks: dict[WorkerAddress, asyncio.Lock] = {}
        self._next: dict[WorkerAddress, int] = {}
        self._closed = False

    async def get(self, address: WorkerAddress) -> DataConnection:
        """A live connection to ``address``; connects (again) when needed."""
        if self._closed:
            raise Unavailable(f"data connection pool is closed (asked for {address})")
        slots = self._slots.setdefault(address, [None] * self.connections_per_worker)
        index = self._next.get(address, 0)
        self._next[address] = (index + 1) % len(slots)
        conn = slots[index]
        if conn is not None and not conn.closed:
            return conn
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            conn = slots[index]
            if conn is None or conn.closed:
                conn = await self._connect(address)
                if self._closed:
                    await conn.close()
                    raise Unavailable(f"data connection pool is closed (asked for {address})")
                slots[index] = conn
            return conn

    async def read_block(
        self,
        address: WorkerAddress,
        block_id: str,
        key: BlockRef,
        offset: int,
        length: int,
        buf: memoryview | bytearray,
        *,
        cap: bytes | None = None,
    ) -> int:
        """:meth:`DataConnection.read_block` on a pooled connection to ``address``."""
        conn = await self.get(address)
        return await conn.read_block(block_id, key, offset, length, buf, cap=cap)

    async def discard(self, address: WorkerAddress) -> None:
        """Close the connections to one worker (e.g. it left the ring)."""
        slots = self._slots.pop(address, [])
        self._next.pop(address, None)
        await asyncio.gather(*(c.close() for c in slots if c is not None))

    async def close(self) -> None:
        """Close every connection; later calls raise :class:`Unavailable`."""
        self._closed = True
        addresses = list(self._slots)
        await asyncio.gather(*(self.discard(a) for a in addresses))

    async def _connect(self, address: WorkerAddress) -> DataConnection:
        timeout, max_payload = self.connect_timeout, self.max_payload
        if self.prefer_unix and address.unix_path and os.path.exists(address.unix_path):
            with contextlib.suppress(Unavailable):
                return await DataConnection.connect_unix(
                    address.unix_path, timeout=timeout, max_payload=max_payload
                )
        return await DataConnection.connect(
            address.host, address.port, timeout=timeout, max_payload=max_payload
        )
