"""The data protocol end to end: a real DataServer and real DataConnections on 127.0.0.1,
over a test opener (failures on demand) and over the worker's real BlockStore.

Each test runs its own event loop (stdlib asyncio and uvloop: the worker runs
uvloop) and stops everything it started, also when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import uvloop

from cachecluster.client.data_conn import DataConnection, DataConnectionPool, WorkerAddress
from cachecluster.common import frames
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import (
    CacheClusterError,
    ErrorKind,
    InvalidArgument,
    NotCached,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from cachecluster.common.frames import BlockRef, PingRequest, ReadRequest
from cachecluster.worker.block_store import BlockLease, BlockStore
from cachecluster.worker.data_server import DataServer
from cachecluster.worker.tiers import Medium, TierConfig

BLOCK = 1 << 20  # 1 MiB blocks keep the tests quick
FILE_HEADER = 4096  # file-backed blocks start after a header, as block files do

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(loop_name: str, coro: Awaitable[None]) -> None:
    """Run one test body on a fresh loop of the given kind."""

    async def body() -> None:
        await asyncio.wait_for(coro, 30)

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(body())


def block_id(n: int) -> str:
    return f"{n:032x}"


# --------------------------------------------------------------- a test opener


@dataclass
class FakeLease:
    """A lease like BlockStore's: a file and an offset, or bytes in memory."""

    store: FakeStore
    length: int
    offset: int = 0
    fd: Any = None
    data: bytes = b""

    def fileno(self) -> int:
        return int(self.fd.fileno())

    def read(self) -> bytes:
        return self.data

    def close(self) -> None:
        self.store.open_leases -= 1


@dataclass
class FakeStore:
    """An opener over blocks in a file or in memory, with failures on demand.

    Block n's bytes are ``blocks[n]``. Odd blocks live in ``path`` after a
    header, even ones in memory. Blocks in ``gates`` wait for their event.
    """

    path: Path
    blocks: dict[int, bytes]
    delays: dict[int, float] = field(default_factory=dict)
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    caps: list[bytes | None] = field(default_factory=list)
    cold: set[int] = field(default_factory=set)
    """Blocks "not cached": an open with ``cached_only`` is refused, any other "fetches" them."""
    fetched: list[int] = field(default_factory=list)
    open_leases: int = 0
    opening: int = 0
    max_opening: int = 0
    _offsets: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with open(self.path, "wb") as f:
            for n, data in self.blocks.items():
                if n % 2:
                    f.write(b"\xee" * FILE_HEADER)
                    self._offsets[n] = f.tell()
                    f.write(data)
        self.file = open(self.path, "rb")  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        self.file.close()

    async def open_block(self, request: ReadRequest) -> FakeLease:
        self.caps.append(request.cap)
        if request.cap == b"deny":
            raise PermissionDenied(f"capability refused for block {request.block_id}")
        if request.cap == b"down":
            raise Unavailable("the UFS is down")
        if request.cap == b"crash":
            raise RuntimeError("opener bug")
        n = int(request.block_id, 16)
        if n not in self.blocks or request.key.index != n:
            raise NotFound(f"no block {request.block_id}")
        if n in self.cold:
            if request.cached_only:
                raise NotCached(f"block {request.block_id} is not cached")
            self.cold.discard(n)
            self.fetched.append(n)
        self.opening += 1
        self.max_opening = max(self.max_opening, self.opening)
        try:
            if n in self.delays:
                await asyncio.sleep(self.delays[n])
            if n in self.gates:
                await self.gates[n].wait()
        finally:
            self.opening -= 1
        self.open_leases += 1
        data = self.blocks[n]
        if n % 2:
            return FakeLease(self, len(data), self._offsets[n], fd=self.file)
        return FakeLease(self, len(data), data=data)


def make_blocks(count: int = 6, seed: int = 1) -> dict[int, bytes]:
    rnd = random.Random(seed)
    blocks = {n: rnd.randbytes(BLOCK) for n in range(count)}
    blocks[count] = rnd.randbytes(BLOCK // 3 + 7)  # a short last block, file-backed if odd
    return blocks


def key(n: int) -> BlockRef:
    return BlockRef("mount-1", "dir/file.bin", "etag-1", n)


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, blocks: dict[int, bytes] | None = None, **kwargs: Any
) -> AsyncIterator[tuple[DataServer, FakeStore]]:
    store = FakeStore(tmp_path / "blocks.bin", blocks if blocks is not None else make_blocks())
    server = DataServer(store, unix_path=str(tmp_path / "data.sock"), **kwargs)
    try:
        await server.start()
        yield server, store
    finally:
        await server.close()
        store.close()


@contextlib.asynccontextmanager
async def connected(server: DataServer, transport: str) -> AsyncIterator[DataConnection]:
    if transport == "unix":
        assert server.unix_path is not None
        conn = await DataConnection.connect_unix(server.unix_path)
    else:
        conn = await DataConnection.connect("127.0.0.1", server.port)
    try:
        yield conn
    finally:
        await conn.close()


async def read(conn: DataConnection, n: int, offset: int = 0, length: int = BLOCK) -> bytes:
    buf = bytearray(length)
    got = await conn.read_block(block_id(n), key(n), offset, length, buf)
    return bytes(buf[:got])


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["tcp", "unix"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: Unix socket paths are limited to about 100 bytes."""
    with contextlib.ExitStack() as stack:
        import tempfile

        yield Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cc-dp-")))


# ------------------------------------------------------------ over the wire


def test_blocks_arrive_intact(loop_name: str, transport: str, short_tmp: Path) -> None:
    blocks = make_blocks()

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, store), connected(server, transport) as c:
            for n, data in blocks.items():
                got = await read(c, n)
                assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
            assert store.open_leases == 0
            assert server.stats.bytes_sent == sum(len(d) for d in blocks.values())
            assert server.stats.requests == len(blocks)

    run(loop_name, body())


def test_pipelined_reads_return_each_caller_its_bytes(
    loop_name: str, transport: str, short_tmp: Path
) -> None:
    blocks = make_blocks(8)
    rnd = random.Random(5)
    # Slow opens early in the stream: later answers must still wait their turn.
    delays = {0: 0.05, 3: 0.03, 5: 0.01}
    picks = [rnd.randrange(9) for _ in range(60)]
    reads = [(n, rnd.randrange(len(blocks[n])), rnd.randrange(1, BLOCK)) for n in picks]

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, store), connected(server, transport) as c:
            store.delays.update(delays)
            results = await asyncio.gather(*(read(c, n, off, length) for n, off, length in reads))
            for (n, off, length), got in zip(reads, results, strict=True):
                assert got == blocks[n][off : off + length]
            assert 1 < store.max_opening <= server.max_in_flight  # overlapped, and bounded
            assert store.open_leases == 0
            assert not c.closed

    run(loop_name, body())


def test_odd_offsets_and_lengths(loop_name: str, short_tmp: Path) -> None:
    blocks = make_blocks(2)
    last = 2  # BLOCK // 3 + 7 bytes, in memory

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, _), connected(server, "tcp") as c:
            for n in (1, last):
                data = blocks[n]
                size = len(data)
                for off, length in [(1, 1), (4095, 4097), (size - 1, 10), (size, 5), (0, 0)]:
                    assert await read(c, n, off, length) == data[off : off + length]
                # Asking past the end of a short block returns what there is.
                assert await read(c, n, 10, BLOCK) == data[10:]
            with pytest.raises(InvalidArgument, match="past the end"):
                await read(c, last, len(blocks[last]) + 1, 10)
            assert await read(c, 1) == blocks[1]  # still usable
            with pytest.raises(InvalidArgument):
                await c.read_block(block_id(1), key(1), 0, 11, bytearray(10))

    run(loop_name, body())


def test_error_responses_keep_the_connection(
    loop_name: str, transport: str, short_tmp: Path
) -> None:
    blocks = make_blocks(2)

    async def attempt(c: DataConnection, n: int, cap: bytes | None) -> int:
        return await c.read_block(block_id(n), key(n), 0, BLOCK, bytearray(BLOCK), cap=cap)

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, store), connected(server, transport) as c:
            with pytest.raises(NotFound, match="no block"):
                await attempt(c, 77, None)
            with pytest.raises(PermissionDenied, match="capability refused"):
                await attempt(c, 1, b"deny")
            with pytest.raises(Unavailable, match="UFS is down"):
                await attempt(c, 1, b"down")
            with pytest.raises(CacheClusterError, match="opener bug") as info:
                await attempt(c, 1, b"crash")
            assert info.value.kind is ErrorKind.INTERNAL
            # errors and good reads interleaved in one pipeline
            results = await asyncio.gather(
                attempt(c, 0, b"tok"), attempt(c, 99, None), attempt(c, 1, None),
                return_exceptions=True,
            )  # fmt: skip
            assert results[0] == BLOCK and results[2] == BLOCK
            assert isinstance(results[1], NotFound)
            assert b"tok" in store.caps
            await c.ping()
            assert not c.closed
            assert server.stats.errors == 5
            assert server.stats.connections_failed == 0

    run(loop_name, body())


def test_closed_server_fails_pending_reads(loop_name: str, transport: str, short_tmp: Path) -> None:
    async def body() -> None:
        async with serving(short_tmp) as (server, store), connected(server, transport) as c:
            store.gates[1] = asyncio.Event()  # never set: the server holds the read
            pending = [asyncio.ensure_future(read(c, 1)) for _ in range(3)]
            while store.opening < 1:
                await asyncio.sleep(0.005)
            await server.close()
            for task in pending:
                with pytest.raises(Unavailable, match=r"data connection to \S+ lost"):
                    await task
            assert c.closed
            with pytest.raises(Unavailable, match="closed"):
                await read(c, 0)
            assert store.open_leases == 0

    run(loop_name, body())


SERVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, uvloop
    from cachecluster.worker.data_server import DataServer

    class Stuck:
        async def open_block(self, request):
            await asyncio.Event().wait()

    async def main():
        server = DataServer(Stuck())
        await server.start()
        print(server.port, flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())
    """
)


def test_connect_to_a_port_nobody_listens_on_is_unavailable(loop_name: str) -> None:
    # A socket bound but not listening holds the port, so the refusal is certain.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]

        async def body() -> None:
            with pytest.raises(Unavailable, match="cannot connect"):
                await DataConnection.connect("127.0.0.1", port, timeout=2)

        run(loop_name, body())


def test_killed_server_fails_pending_reads(loop_name: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        async def body() -> None:
            async with contextlib.AsyncExitStack() as stack:
                c = await DataConnection.connect("127.0.0.1", port)
                stack.push_async_callback(c.close)
                await c.ping()
                pending = [asyncio.ensure_future(read(c, n)) for n in range(4)]
                await asyncio.sleep(0.05)
                os.kill(proc.pid, signal.SIGKILL)
                for task in pending:
                    with pytest.raises(Unavailable, match=f"127.0.0.1:{port}"):
                        await task
                assert c.closed
            # No check that a new connect fails: once the port is free, another
            # process may take it, or a TCP self-connect may succeed on it.

        run(loop_name, body())
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def recv_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection.

    A server that closes with our bytes unread resets the connection: also an end.
    """
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    while True:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
        except ConnectionResetError:
            return b"".join(chunks)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


async def raw_connection(server: DataServer) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return sock


def test_garbage_from_one_client_does_not_disturb_another(loop_name: str, short_tmp: Path) -> None:
    blocks = make_blocks(4)

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, _), connected(server, "tcp") as good:
            stop = asyncio.Event()

            async def keep_reading() -> int:
                count = 0
                while not stop.is_set():
                    n = count % 4
                    assert await read(good, n) == blocks[n]
                    count += 1
                return count

            reader = asyncio.ensure_future(keep_reading())
            try:
                loop = asyncio.get_running_loop()
                for garbage in (
                    b"\x00" * 8,  # header length 0
                    b"GET / HTTP/1.1\r\n\r\n",
                    frames.PREFIX.pack(5, 0) + b"\xc1\xc1\xc1\xc1\xc1",
                    frames.PREFIX.pack(1, 2**31),
                    frames.encode_request(PingRequest(1))[:-2],  # truncated, then EOF
                ):
                    sock = await raw_connection(server)
                    try:
                        await loop.sock_sendall(sock, garbage)
                        sock.shutdown(socket.SHUT_WR)
                        assert await recv_until_eof(sock) == b""
                    finally:
                        sock.close()
            finally:
                stop.set()
                count = await reader
            assert count > 0
            assert not good.closed
            assert server.stats.connections_failed == 5

    run(loop_name, body())


def test_client_vanishing_mid_transfer_releases_its_leases(loop_name: str, short_tmp: Path) -> None:
    blocks = make_blocks(4)

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, store), connected(server, "tcp") as good:
            loop = asyncio.get_running_loop()
            for _ in range(3):
                sock = await raw_connection(server)
                try:
                    requests = b"".join(
                        frames.encode_request(ReadRequest(i, block_id(n), key(n), 0, BLOCK))
                        for i, n in enumerate([1, 2, 3, 0] * 8)
                    )
                    await loop.sock_sendall(sock, requests)
                    await loop.sock_recv(sock, 1000)  # the first block is on its way
                    # Reset instead of a clean close: the server's sends fail mid-block.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                finally:
                    sock.close()
            for _ in range(200):
                if server.stats.connections_open == 1:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.connections_open == 1
            assert server.stats.connections_failed == 3
            assert store.open_leases == 0
            assert await read(good, 3) == blocks[3]

    run(loop_name, body())


def test_a_well_framed_bad_request_gets_an_error_response(loop_name: str, short_tmp: Path) -> None:
    async def body() -> None:
        async with serving(short_tmp) as (server, _):
            sock = await raw_connection(server)
            try:
                bad = msgpack.packb({"op": "read", "id": 3, "block": "nope"})
                ping = frames.encode_request(PingRequest(4))
                frame = frames.PREFIX.pack(len(bad), 0) + bad + ping
                await asyncio.get_running_loop().sock_sendall(sock, frame)
                sock.shutdown(socket.SHUT_WR)
                data = await recv_until_eof(sock)
            finally:
                sock.close()
            first_length = frames.PREFIX.unpack(data[:8])[0]
            error = frames.decode_response(data[8 : 8 + first_length], 0)
            assert (error.request_id, error.ok, error.kind) == (3, False, ErrorKind.INVALID)
            rest = data[8 + first_length :]
            assert frames.decode_response(rest[8:], 0) == frames.Response(4, True, 0)

    run(loop_name, body())


def test_cancelled_reads(loop_name: str, short_tmp: Path) -> None:
    blocks = make_blocks(3)

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, store), connected(server, "tcp") as c:
            store.delays[2] = 0.05
            # Cancelled before its payload arrives: the payload is discarded, the link lives.
            slow = asyncio.ensure_future(read(c, 2))
            after = asyncio.ensure_future(read(c, 1))
            await asyncio.sleep(0.01)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            assert await after == blocks[1]
            assert await read(c, 0) == blocks[0]
            assert not c.closed

    run(loop_name, body())


def test_read_cancelled_mid_payload_closes_the_connection(loop_name: str) -> None:
    """Once bytes flow into a caller's buffer, cancelling it must stop them for good."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        peer: socket.socket | None = None
        c: DataConnection | None = None
        try:
            c = await DataConnection.connect("127.0.0.1", listener.getsockname()[1])
            peer, _ = await loop.sock_accept(listener)
            peer.setblocking(False)
            buf = bytearray(b"." * 100)
            call = asyncio.ensure_future(c.read_block(block_id(1), key(1), 0, 100, buf))
            request = await loop.sock_recv(peer, 4096)
            assert request[8:] and frames.PREFIX.unpack(request[:8])[1] == 0
            await loop.sock_sendall(peer, frames.encode_ok(1, 100) + b"x" * 40)
            while buf[:40] != b"x" * 40:
                await asyncio.sleep(0.002)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert c.closed
            with contextlib.suppress(OSError):
                await loop.sock_sendall(peer, b"y" * 60)
            await asyncio.sleep(0.02)
            assert buf == b"x" * 40 + b"." * 60
            with pytest.raises(Unavailable):
                await c.ping()
        finally:
            if c is not None:
                await c.close()
            if peer is not None:
                peer.close()
            listener.close()

    run(loop_name, body())


def test_pool_reconnects_and_prefers_unix(loop_name: str, short_tmp: Path) -> None:
    blocks = make_blocks(2)

    async def body() -> None:
        async with serving(short_tmp, blocks) as (server, _):
            pool = DataConnectionPool(connections_per_worker=2)
            try:
                tcp = WorkerAddress("127.0.0.1", server.port)
                buf = bytearray(BLOCK)
                assert await pool.read_block(tcp, block_id(1), key(1), 0, BLOCK, buf) == BLOCK
                assert bytes(buf) == blocks[1]
                first, second = await pool.get(tcp), await pool.get(tcp)
                assert first is not second and first.address == f"127.0.0.1:{server.port}"
                assert await pool.get(tcp) is first
                await first.close()
                again = await pool.get(tcp)
                assert again is not first and not again.closed
                assert await again.read_block(block_id(0), key(0), 0, 10, buf) == 10
                local = WorkerAddress("127.0.0.1", server.port, server.unix_path)
                assert (await pool.get(local)).address.startswith("unix:")
                gone = WorkerAddress("127.0.0.1", server.port, str(short_tmp / "nobody.sock"))
                assert (await pool.get(gone)).address == str(tcp)
            finally:
                await pool.close()
            with pytest.raises(Unavailable, match="pool is closed"):
                await pool.get(tcp)

    run(loop_name, body())


def test_server_close_is_clean_with_idle_connections(short_tmp: Path) -> None:
    async def body() -> None:
        async with serving(short_tmp) as (server, _):
            conns = [await DataConnection.connect("127.0.0.1", server.port) for _ in range(3)]
            try:
                for c in conns:
                    await c.ping()
                assert server.stats.connections_open == 3
                await server.close()
                for c in conns:
                    with contextlib.suppress(Unavailable):
                        await c.ping()
                    assert c.closed
                assert server.stats.connections_open == 0
                assert not os.path.exists(str(short_tmp / "data.sock"))
            finally:
                for c in conns:
                    await c.close()

    run("uvloop", body())


# ------------------------------------------------------- over the real block store


class StoreOpener:
    """The worker's plumbing in small: check the id against its key, load misses from a dict."""

    def __init__(self, store: BlockStore, ufs: dict[BlockKey, bytes]) -> None:
        self.store = store
        self.ufs = ufs
        self.loads = 0

    async def open_block(self, request: ReadRequest) -> BlockLease:
        ref = request.key
        block_key = BlockKey(ref.mount, ref.path, ref.version, ref.index)
        if block_key.id != request.block_id:
            raise InvalidArgument(f"block {request.block_id} does not match its key")
        data = self.ufs.get(block_key)

        async def load() -> bytes:
            if data is None:
                raise NotFound(f"{ref.path} has no block {ref.index}")
            self.loads += 1
            return data

        return await self.store.get(request.block_id, load)


def test_over_a_real_block_store(loop_name: str, transport: str, short_tmp: Path) -> None:
    rnd = random.Random(7)
    # Six 1 MiB blocks through a 4 MiB MEM tier (evictions on the way) and one
    # block bigger than the tier, which the store serves from memory.
    ufs = {BlockKey("mount-1", "big.bin", "etag-1", i): rnd.randbytes(BLOCK) for i in range(6)}
    huge = BlockKey("mount-1", "huge.bin", "etag-1", 0)
    ufs[huge] = rnd.randbytes(5 * BLOCK)
    tier = TierConfig(Medium.MEM, str(short_tmp / "mem"), 4 * BLOCK)

    async def body() -> None:
        async with BlockStore([tier]) as store:
            opener = StoreOpener(store, ufs)
            server = DataServer(opener, unix_path=str(short_tmp / "data.sock"))
            await server.start()
            try:
                async with connected(server, transport) as c:

                    async def fetch(k: BlockKey, offset: int = 0, length: int = BLOCK) -> bytes:
                        buf = bytearray(length)
                        ref = BlockRef(k.mount_id, k.path, k.version, k.index)
                        n = await c.read_block(k.id, ref, offset, length, buf)
                        return bytes(buf[:n])

                    keys = [k for k in ufs if k != huge]
                    for _ in range(2):
                        got = await asyncio.gather(*(fetch(k) for k in keys))
                        assert got == [ufs[k] for k in keys]
                    assert await fetch(keys[0], 12345, 777) == ufs[keys[0]][12345 : 12345 + 777]
                    assert await fetch(huge, 0, 5 * BLOCK) == ufs[huge]
                    assert store.tier_of(huge.id) is None  # it came from memory
                    missing = BlockKey("mount-1", "gone.bin", "etag-1", 0)
                    with pytest.raises(NotFound, match=r"gone\.bin"):
                        await fetch(missing)
                    bad_ref = BlockRef("mount-1", "big.bin", "etag-2", 0)
                    with pytest.raises(InvalidArgument, match="does not match"):
                        await c.read_block(keys[0].id, bad_ref, 0, 10, bytearray(10))
                    assert await fetch(keys[1]) == ufs[keys[1]]
                    assert opener.loads >= len(keys) + 1
                    assert server.stats.connections_failed == 0
            finally:
                await server.close()

    run(loop_name, body())


# ------------------------------------------------------- short-circuit opens


def test_open_passes_file_blocks_only_over_unix(loop_name: str, short_tmp: Path) -> None:
    from cachecluster.client.short_circuit import FdChannel

    async def body() -> None:
        async with serving(short_tmp) as (server, store):
            assert server.unix_path is not None
            channel = await FdChannel.connect(server.unix_path)
            try:
                grant, fd = await channel.open(block_id(1), key(1), None)  # odd: in a file
                assert fd is not None and grant.passed and not grant.memory
                try:
                    assert os.pread(fd, grant.length, grant.offset) == store.blocks[1]
                finally:
                    os.close(fd)
                grant, fd = await channel.open(block_id(2), key(2), None)  # even: in memory
                assert fd is None and not grant.passed and grant.length == BLOCK
                with pytest.raises(PermissionDenied):
                    await channel.open(block_id(3), key(3), b"deny")
                with pytest.raises(NotFound):
                    await channel.open(block_id(99), key(99), None)
                assert not channel.closed  # error answers keep the channel
                async with connected(server, "unix") as conn:  # reads go on beside it
                    assert await read(conn, 3) == store.blocks[3]
            finally:
                channel.close()
            assert server.stats.fds_passed == 1
            assert store.open_leases == 0
            # Over TCP no descriptor can travel: refused, and the connection stays usable.
            sock = socket.create_connection(("127.0.0.1", server.port))
            tcp = FdChannel(sock, f"tcp:{server.port}")
            try:
                with pytest.raises(InvalidArgument, match="Unix socket"):
                    await tcp.open(block_id(1), key(1), None)
                assert not tcp.closed
            finally:
                tcp.close()

    run(loop_name, body())


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_open_answers_settle_one_by_one_and_callers_do_not_wait_for_each_other(
    loop_name: str, short_tmp: Path
) -> None:
    from cachecluster.client.short_circuit import FdChannel

    async def body() -> None:
        async with serving(short_tmp) as (server, store):
            assert server.unix_path is not None
            store.gates[3] = asyncio.Event()
            fds_before = _open_fds()
            channel = await FdChannel.connect(server.unix_path)
            try:
                asked = [(block_id(1), key(1)), (block_id(3), key(3))]
                first, gated = await channel.ask(asked, None)
                grant, fd = await asyncio.wait_for(first, 5)  # before the gated one is answered
                assert fd is not None
                assert os.pread(fd, grant.length, grant.offset) == store.blocks[1]
                os.close(fd)
                assert not gated.done()
                # Another caller's request goes out at once (behind the gated one on the wire).
                other = asyncio.ensure_future(channel.open(block_id(5), key(5), None))
                await asyncio.sleep(0.05)
                assert not other.done() and store.caps.count(None) == 3
                gated.cancel()  # its caller gives up: the descriptor is closed when it comes
                store.gates[3].set()
                grant, fd = await asyncio.wait_for(other, 5)
                assert fd is not None
                assert os.pread(fd, grant.length, grant.offset) == store.blocks[5]
                os.close(fd)
                answers = await channel.open_many([(block_id(n), key(n)) for n in range(7)], None)
                for n, answer in enumerate(answers):
                    assert isinstance(answer, tuple)
                    grant, fd = answer
                    if n % 2:
                        assert fd is not None
                        assert os.pread(fd, grant.length, grant.offset) == store.blocks[n]
                        os.close(fd)
                    else:
                        assert fd is None and grant.length == len(store.blocks[n])
                assert not channel.closed
            finally:
                channel.close()
            await asyncio.sleep(0.05)
            assert _open_fds() == fds_before  # the cancelled answer's descriptor too
            assert store.open_leases == 0

    run(loop_name, body())


def test_open_of_cached_blocks_only_answers_miss_without_fetching(
    loop_name: str, short_tmp: Path
) -> None:
    from cachecluster.client.short_circuit import FdChannel

    async def body() -> None:
        async with serving(short_tmp) as (server, store):
            assert server.unix_path is not None
            store.cold = {1, 2}
            channel = await FdChannel.connect(server.unix_path)
            try:
                answers = await channel.open_many(
                    [(block_id(n), key(n)) for n in (1, 2, 3)], None, cached_only=True
                )
                (miss1, _), (miss2, _), (held, fd) = answers  # type: ignore[misc]
                assert miss1.missing and not miss1.passed and miss2.missing
                assert held.passed and not held.missing and fd is not None
                os.close(fd)
                assert store.fetched == [] and store.cold == {1, 2}
                assert server.stats.errors == 0  # a miss is an answer, not an error
                grant, fd = await channel.open(block_id(1), key(1), None)  # fetches it
                assert grant.passed and not grant.missing and fd is not None
                os.close(fd)
                assert store.fetched == [1]
            finally:
                channel.close()

    run(loop_name, body())


def test_open_request_round_trips() -> None:
    request = frames.OpenRequest(9, block_id(5), key(5), b"cap")
    encoded = frames.encode_request(request)
    _, payload_length = frames.decode_prefix(encoded[:8], BLOCK)
    assert frames.decode_request(encoded[8:], payload_length) == request
    grant = frames.encode_grant(9, 1234, offset=4096, memory=True)
    assert frames.decode_grant(grant[8:], 0) == frames.FdGrant(9, True, 4096, 1234, True)
    assert frames.decode_grant(frames.encode_grant(9, 77)[8:], 0) == frames.FdGrant(9, False, 0, 77)
    error = frames.decode_grant(frames.encode_error(9, ErrorKind.NOT_FOUND, "gone")[8:], 0)
    assert isinstance(error, frames.Response) and not error.ok
    cached = frames.OpenRequest(10, block_id(5), key(5), None, cached_only=True)
    encoded = frames.encode_request(cached)
    assert frames.decode_request(encoded[8:], 0) == cached
    assert b"cached" not in frames.encode_request(request)  # absent unless asked: old workers
    miss = frames.decode_grant(frames.encode_miss(10)[8:], 0)
    assert miss == frames.FdGrant(10, False, 0, 0, missing=True)
