"""Benchmark of the data path: worker data server -> client, against its ceilings.

Run: ``.venv/bin/python -m bench.bench_data_path [--size-mib 1024] [--runs 3]``.

One file of ``--size-mib`` on /dev/shm is served in ``--block-mib`` blocks by a
server in another process (uvloop in both). Measured in the same run, each
run going through all four in turn:

(a) baseline: a raw socket, ``os.sendfile`` of the whole file -> ``recv_into``
    a preallocated buffer (the loopback TCP ceiling, as iperf3 would give);
(b) the data protocol over TCP, ``--depth`` requests in flight on one connection;
(c) the data protocol over a Unix socket, same;
(d) a plain tmpfs read (``readinto``) of the file.

Prints medians with min/max in GB/s, the CPU seconds per GiB each side spent
(steadier than wall time on a shared machine) and the ratios TCP/baseline
(target >= 0.75) and Unix/tmpfs (target >= 0.5). Received bytes are checked against the file
once, outside the timings. Everything it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

import uvloop

from cachecluster.client.data_conn import DataConnection
from cachecluster.common.errors import NotFound
from cachecluster.common.frames import BlockRef, ReadRequest
from cachecluster.worker.data_server import DataServer

MiB = 1 << 20
GiB = 1 << 30
_KEY = "bench"
_BLOCK_ID = "0" * 32


# ----------------------------------------------------------------- server side


@dataclass
class _FileLease:
    fd: object
    offset: int
    length: int

    def fileno(self) -> int:
        assert isinstance(self.fd, int)
        return self.fd

    def read(self) -> bytes:
        return os.pread(self.fileno(), self.length, self.offset)

    def close(self) -> None:
        pass


class _FileOpener:
    """Block ``index`` of one file is ``block_size`` bytes at ``index * block_size``."""

    def __init__(self, path: str, block_size: int) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.block_size = block_size

    async def open_block(self, request: ReadRequest) -> _FileLease:
        start = request.key.index * self.block_size
        if request.key.path != _KEY or start >= self.size:
            raise NotFound(f"no block {request.key.index} in the bench file")
        return _FileLease(self.fd, start, min(self.block_size, self.size - start))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _raw_sendfile_server(listener: socket.socket, path: str) -> None:
    """Baseline: for each byte a client sends, the whole file by sendfile.

    The connection stays open between transfers, as the protocol's does, so
    neither pays for a fresh connection's slow start in the timings.
    """
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    try:
        while True:
            sock, _ = await loop.sock_accept(listener)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                while await loop.sock_recv(sock, 1):
                    offset = 0
                    while offset < size:
                        try:
                            offset += os.sendfile(sock.fileno(), fd, offset, size - offset)
                        except BlockingIOError:
                            ready: asyncio.Future[None] = loop.create_future()
                            loop.add_writer(sock, _wake, ready)
                            try:
                                await ready
                            finally:
                                loop.remove_writer(sock)
            except OSError:
                pass
            finally:
                sock.close()
    finally:
        os.close(fd)


async def _serve(path: str, block_size: int, unix_path: str) -> None:
    opener = _FileOpener(path, block_size)
    server = DataServer(opener, unix_path=unix_path, max_payload=max(block_size, 64 * MiB))
    await server.start()
    raw = socket.create_server(("127.0.0.1", 0))
    raw.setblocking(False)
    raw_task = asyncio.get_running_loop().create_task(_raw_sendfile_server(raw, path))
    print(json.dumps({"port": server.port, "raw_port": raw.getsockname()[1]}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    raw_task.cancel()
    raw.close()
    await server.close()
    os.close(opener.fd)


# ----------------------------------------------------------------- client side


def _touch(buf: bytearray) -> None:
    """Fault the pages in once, so that no run pays for first-touch."""
    view = memoryview(buf)
    for i in range(0, len(buf), 4096):
        view[i] = 0


async def _raw_baseline(sock: socket.socket, size: int, ring: memoryview) -> None:
    """Ask the baseline server for the file once and receive it into ``ring``."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, b"!")
    got, pos = 0, 0
    while got < size:
        if pos == len(ring):
            pos = 0
        try:  # as the client does: take what has arrived, wait on the loop only when empty
            n = sock.recv_into(ring[pos:])
        except BlockingIOError:
            n = await loop.sock_recv_into(sock, ring[pos:])
        if n == 0:
            raise ConnectionError(f"baseline server stopped after {got} bytes")
        got += n
        pos += n


async def _protocol_read(
    conn: DataConnection,
    size: int,
    block_size: int,
    depth: int,
    ring: memoryview,
    check: mmap.mmap | None = None,
) -> None:
    blocks = (size + block_size - 1) // block_size
    next_index = iter(range(blocks))

    async def lane(slot: int) -> None:
        buf = ring[slot * block_size : (slot + 1) * block_size]
        for index in next_index:
            key = BlockRef("bench", _KEY, "1", index)
            n = await conn.read_block(_BLOCK_ID, key, 0, block_size, buf)
            expected = min(block_size, size - index * block_size)
            if n != expected:
                raise AssertionError(f"block {index}: {n} bytes, expected {expected}")
            if check is not None and buf[:n] != check[index * block_size : index * block_size + n]:
                raise AssertionError(f"block {index}: bytes differ from the file")

    await asyncio.gather(*(lane(slot) for slot in range(depth)))


def _tmpfs_read(path: str, ring: memoryview, chunk: int) -> None:
    with open(path, "rb", buffering=0) as f:
        pos = 0
        while True:
            if pos + chunk > len(ring):
                pos = 0
            n = f.readinto(ring[pos : pos + chunk])
            if not n:
                return
            pos += n


def _make_file(path: str, size: int) -> None:
    pattern = os.urandom(64 * MiB)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(pattern[: min(left, len(pattern))])
            left -= min(left, len(pattern))


@dataclass
class _Samples:
    """One path's figures, one entry per run."""

    gbps: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)  # CPU seconds per GiB
    server_cpu: list[float] = field(default_factory=list)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _bench(args: argparse.Namespace, workdir: str) -> dict[str, _Samples]:
    size = args.size_mib * MiB
    block_size = args.block_mib * MiB
    path = os.path.join(workdir, "data.bin")
    unix_path = os.path.join(workdir, "data.sock")
    _make_file(path, size)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_data_path", "--serve", path, "--unix", unix_path,
         "--block-mib", str(args.block_mib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    ring_buf = bytearray(block_size * args.depth)
    _touch(ring_buf)
    ring = memoryview(ring_buf)
    results = {name: _Samples() for name in ("baseline", "tcp", "unix", "tmpfs")}
    conns: list[DataConnection] = []
    raw = socket.socket()
    try:
        ports = json.loads(server.stdout.readline())
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", ports["raw_port"]))
        await _raw_baseline(raw, size, ring)  # warm-up
        conns.append(await DataConnection.connect("127.0.0.1", ports["port"]))
        conns.append(await DataConnection.connect_unix(unix_path))
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as check:
            for conn in conns:  # correctness once, and a warm-up
                await _protocol_read(conn, size, block_size, args.depth, ring, check)

        async def timed(name: str, body: Awaitable[None]) -> None:
            server_cpu = _cpu_seconds(server.pid)
            client_cpu = time.process_time()
            start = time.perf_counter()
            await body
            elapsed = time.perf_counter() - start
            samples = results[name]
            samples.gbps.append(size / elapsed / 1e9)
            samples.client_cpu.append((time.process_time() - client_cpu) / (size / GiB))
            samples.server_cpu.append((_cpu_seconds(server.pid) - server_cpu) / (size / GiB))

        async def tmpfs() -> None:
            _tmpfs_read(path, ring, block_size)

        tcp, unix = conns
        for _ in range(args.runs):
            await timed("baseline", _raw_baseline(raw, size, ring))
            await timed("tcp", _protocol_read(tcp, size, block_size, args.depth, ring))
            await timed("unix", _protocol_read(unix, size, block_size, args.depth, ring))
            await timed("tmpfs", tmpfs())
    finally:
        raw.close()
        for conn in conns:
            await conn.close()
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
    return results


def _report(args: argparse.Namespace, results: dict[str, _Samples]) -> None:
    print(
        f"data path, {args.size_mib} MiB file on tmpfs, {args.block_mib} MiB blocks, "
        f"depth {args.depth}, {args.runs} runs, uvloop both sides"
    )
    labels = {
        "baseline": "(a) raw sendfile -> recv_into, TCP",
        "tcp": "(b) data protocol, TCP",
        "unix": "(c) data protocol, Unix socket",
        "tmpfs": "(d) tmpfs readinto",
    }
    print(f"  {'':<36} {'GB/s median (min-max)':<24} CPU s/GiB client, server")
    median = {name: statistics.median(r.gbps) for name, r in results.items()}
    for name, r in results.items():
        spread = f"{median[name]:5.2f} ({min(r.gbps):.2f}-{max(r.gbps):.2f})"
        cpu = f"{statistics.median(r.client_cpu):.2f}, {statistics.median(r.server_cpu):.2f}"
        print(f"  {labels[name]:<36} {spread:<24} {cpu}")
    print(f"  ratio TCP / baseline   {median['tcp'] / median['baseline']:.2f}  (target >= 0.75)")
    print(f"  ratio Unix / tmpfs     {median['unix'] / median['tmpfs']:.2f}  (target >= 0.5)")
    print(f"  ratio Unix / TCP       {median['unix'] / median['tcp']:.2f}")
    print(f"  load average at the end: {os.getloadavg()[0]:.2f} (2 cores; > 2 means contended)")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with ``--serve``, be its server process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--block-mib", type=int, default=4)
    parser.add_argument("--depth", type=int, default=8, help="requests in flight")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm", help="where the test file goes (tmpfs)")
    parser.add_argument("--serve", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--unix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        uvloop.run(_serve(args.serve, args.block_mib * MiB, args.unix))
        return
    with tempfile.TemporaryDirectory(prefix="cc-bench-", dir=args.dir) as workdir:
        results = uvloop.run(_bench(args, workdir))
    _report(args, results)


if __name__ == "__main__":
    main()
