"""Benchmark of reads through a local cluster (real master and worker processes).

Run: ``.venv/bin/python -m bench.bench_cluster_read [--size-mib 1024] [--runs 3]``.

A local cluster (``LocalCluster``: a master and ``--workers`` workers, each a
process of its own, one MEM tier on /dev/shm) serves a dataset whose UFS is a
folder on /dev/shm holding one ``--size-mib`` file, and a second dataset on
SeaweedFS holding an object of the same size. Each run measures, one after
the other so that a noisy neighbour slows every path alike:

(a) warm sequential read of the file through ``AsyncClient`` over TCP
    (``prefer_unix=False``), against the loopback ceiling measured as
    ``bench.bench_data_path`` does it: a raw socket, ``os.sendfile`` of the
    whole file in another process -> ``recv_into`` a preallocated buffer
    (target >= 0.75x);
(b) the same read with the same-host short-circuit (over the worker's Unix
    socket the worker passes its block files, the client ``preadv``s them),
    against a plain tmpfs ``readinto`` of the file (target >= 0.5x);
(c) cold read of the S3 object through the cache (its blocks are evicted
    from every worker before each run), against one plain boto3
    ``get_object()['Body'].read()`` (target >= 1.0x).

The client reads with ``readinto`` into one preallocated buffer of
``--buffer-mib`` (so a call spans several blocks, read in parallel) and its
default read-ahead. Bytes are checked once (sha256) before the timings.
Prints medians with min/max in GB/s (10^9 bytes/s), the ratios and the load
average; it reports figures and does not pass or fail. Everything it starts
is stopped and everything it writes removed, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import uvloop

from bench.bench_data_path import _make_file, _raw_baseline, _tmpfs_read, _touch
from bench.bench_ufs_read import BUCKET, KEY, upload
from cachecluster.client.client import AsyncClient
from cachecluster.common.units import format_size, parse_size
from cachecluster.local.cluster import LocalCluster
from cachecluster.protos import worker_pb2, worker_pb2_grpc
from cachecluster.worker.tiers import Medium, TierConfig
from tests.servers.seaweed import SeaweedS3

MiB = 1 << 20
NAMESPACE = "bench"
LOCAL_DATASET = "tmpfs"
S3_DATASET = "s3"
FILE_NAME = "data.bin"

LABELS = {
    "raw_tcp": "(a) raw sendfile -> recv_into, TCP",
    "client_tcp": "(a) client, warm, TCP",
    "tmpfs": "(b) tmpfs readinto",
    "client_unix": "(b) client, warm, Unix socket",
    "boto3": "(c) boto3 get_object().read()",
    "client_cold_s3": "(c) client, cold from S3",
}
RATIOS = (
    ("client_tcp", "raw_tcp", "warm TCP / raw loopback", 0.75),
    ("client_unix", "tmpfs", "warm Unix / tmpfs read", 0.5),
    ("client_cold_s3", "boto3", "cold S3 via cache / boto3 GET", 1.0),
)


@dataclass
class Results:
    """GB/s per path, one entry per run."""

    gbps: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in LABELS})

    def add(self, name: str, nbytes: int, seconds: float) -> None:
        """Record one timed transfer."""
        self.gbps[name].append(nbytes / seconds / 1e9)

    def median(self, name: str) -> float:
        """Median GB/s of one path (0 when it was not measured)."""
        return statistics.median(self.gbps[name]) if self.gbps[name] else 0.0


async def read_through(
    client: AsyncClient, path: str, buf: bytearray, *, digest: bool = False
) -> tuple[int, str]:
    """Read ``path`` sequentially into ``buf`` (reused); return the byte count (and sha256)."""
    view = memoryview(buf)
    hasher = hashlib.sha256()
    total = 0
    async with await client.open(path) as file:
        while n := await file.readinto(view):
            if digest:
                hasher.update(view[:n])
            total += n
    return total, hasher.hexdigest() if digest else ""


async def evict_everywhere(cluster: LocalCluster, block_ids: list[str]) -> None:
    """Drop ``block_ids`` from every worker, so that the next read is cold."""
    for worker in cluster.workers:
        async with grpc.aio.insecure_channel(worker.grpc_address) as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            await stub.EvictBlocks(worker_pb2.EvictBlocksRequest(block_ids=block_ids), timeout=30)


async def timed(results: Results, name: str, nbytes: int, body: Awaitable[object]) -> None:
    """Await ``body`` and record its throughput under ``name``."""
    start = time.perf_counter()
    await body
    results.add(name, nbytes, time.perf_counter() - start)


def start_raw_server(path: Path, unix_path: Path) -> tuple[subprocess.Popen[str], int]:
    """``bench.bench_data_path``'s server process (raw sendfile port); return it and the port."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_data_path", "--serve", str(path),
         "--unix", str(unix_path), "--block-mib", "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert server.stdout is not None
    ports = json.loads(server.stdout.readline())
    return server, int(ports["raw_port"])


def stop_raw_server(server: subprocess.Popen[str]) -> None:
    """Close its stdin (it exits), wait, kill if it hangs."""
    if server.stdin is not None:
        server.stdin.close()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    if server.stdout is not None:
        server.stdout.close()


async def bench(args: argparse.Namespace, workdir: Path, s3: SeaweedS3 | None) -> Results:
    """Start the cluster and the baselines, then time every path ``--runs`` times."""
    size = args.size_mib * MiB
    data_dir = workdir / "data"
    data_dir.mkdir()
    data_path = data_dir / FILE_NAME
    _make_file(str(data_path), size)
    with open(data_path, "rb") as source:
        expected_local = hashlib.file_digest(source, "sha256").hexdigest()
    expected_s3 = ""
    if s3 is not None:
        s3.create_bucket(BUCKET)
        started = time.perf_counter()
        expected_s3 = await asyncio.to_thread(upload, s3.client(), size)
        print(f"uploaded {args.size_mib} MiB to SeaweedFS in {time.perf_counter() - started:.1f}s")

    quota = 2 * size // args.workers + 256 * MiB
    cluster = LocalCluster(
        workdir / "home",
        workers=args.workers,
        tiers=[TierConfig(Medium.MEM, str(workdir / "mem"), quota)],
        block_size=args.block_size,
    )
    await asyncio.to_thread(cluster.start)
    raw_server, raw_port = start_raw_server(data_path, workdir / "raw.sock")
    raw = socket.socket()
    clients: list[AsyncClient] = []
    try:
        cluster.apply_dataset(NAMESPACE, LOCAL_DATASET, f"local://{data_dir}")
        if s3 is not None:
            cluster.apply_dataset(NAMESPACE, S3_DATASET, f"s3://{BUCKET}", s3.backend_options())
        tcp = AsyncClient(cluster.master_address, prefer_unix=False)
        unix = AsyncClient(cluster.master_address, prefer_unix=True)
        clients += [tcp, unix]
        buf = bytearray(args.buffer_mib * MiB)
        _touch(buf)
        local_path = f"{NAMESPACE}/{LOCAL_DATASET}/{FILE_NAME}"
        s3_path = f"{NAMESPACE}/{S3_DATASET}/{KEY}"

        # Warm the cache and the connections; check the bytes of every path once.
        for client in (tcp, unix):
            got = await read_through(client, local_path, buf, digest=True)
            assert got == (size, expected_local), f"bytes differ: {got}"
        s3_blocks: list[str] = []
        if s3 is not None:
            got = await read_through(unix, s3_path, buf, digest=True)
            assert got == (size, expected_s3), f"S3 bytes differ: {got}"
            s3_blocks = [block.block_id for block in await unix.blocks(s3_path)]
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", raw_port))
        ring = memoryview(buf)
        await _raw_baseline(raw, size, ring)
        plain = s3.client() if s3 is not None else None

        def boto3_read() -> int:
            assert plain is not None
            return len(plain.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())

        async def tmpfs() -> None:
            _tmpfs_read(str(data_path), ring, 4 * MiB)

        results = Results()
        for run in range(args.runs):
            await timed(results, "raw_tcp", size, _raw_baseline(raw, size, ring))
            await timed(results, "client_tcp", size, read_through(tcp, local_path, buf))
            await timed(results, "tmpfs", size, tmpfs())
            await timed(results, "client_unix", size, read_through(unix, local_path, buf))
            if s3 is not None:
                await timed(results, "boto3", size, asyncio.to_thread(boto3_read))
                await evict_everywhere(cluster, s3_blocks)
                await timed(results, "client_cold_s3", size, read_through(unix, s3_path, buf))
            print(f"run {run + 1}/{args.runs} done", flush=True)
        return results
    finally:
        for client in clients:
            await client.close()
        raw.close()
        stop_raw_server(raw_server)
        await asyncio.to_thread(cluster.stop, purge=True)


def report(args: argparse.Namespace, results: Results) -> None:
    """Print the medians, spreads and ratios."""
    print(
        f"\ncluster read, {args.size_mib} MiB file, {format_size(args.block_size)} blocks, "
        f"{args.workers} worker(s) in other processes, {args.buffer_mib} MiB readinto, "
        f"{args.runs} runs, uvloop"
    )
    print(f"  {'path':<40} {'GB/s median':>11} {'(min-max)':>12}")
    for name, label in LABELS.items():
        rates = results.gbps[name]
        if rates:
            spread = f"({min(rates):.2f}-{max(rates):.2f})"
            print(f"  {label:<40} {statistics.median(rates):>11.2f} {spread:>12}")
    for ours, baseline, label, target in RATIOS:
        if results.gbps[ours] and results.gbps[baseline]:
            ratio = results.median(ours) / results.median(baseline)
            verdict = "meets" if ratio >= target else "BELOW"
            print(f"  ratio {label:<32} {ratio:5.2f}x  (target >= {target}: {verdict})")
    print(f"  load average at the end: {os.getloadavg()[0]:.2f} (2 cores; > 2 means contended)")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--block-size", type=lambda v: parse_size(v, "--block-size"), default="4Mi")
    parser.add_argument("--buffer-mib", type=int, default=64, help="readinto buffer size")
    parser.add_argument("--no-s3", action="store_true", help="skip (c): no SeaweedFS")
    parser.add_argument("--dir", default="/dev/shm", help="where the data and tiers go (tmpfs)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cc-cluster-bench-", dir=args.dir) as workdir:
        if args.no_s3:
            results = uvloop.run(bench(args, Path(workdir), None))
        else:
            with SeaweedS3.start() as s3:
                results = uvloop.run(bench(args, Path(workdir), s3))
    report(args, results)


if __name__ == "__main__":
    main()
