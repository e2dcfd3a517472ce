"""Warm reads through the blocking client against plain tmpfs reads of the same files.

Run: ``.venv/bin/python -m bench.bench_client_warm [--size-mib 1024] [--runs 3]``.

A local cluster (a master and ``--workers`` worker processes, one MEM tier each
on /dev/shm) serves a dataset whose UFS is a folder on /dev/shm: one
``--size-mib`` file, a model of ``--model-mib`` in 4 shards and
``--small-files`` files of 64 KiB (600: about what the peer suite's warm pass
reads). Everything is read once through the client
(the cache is warm), then each run times, for the client
(:class:`~cachecluster.client.sync_client.Client`, default options) and for a
plain ``open``/``readinto`` of the UFS file on tmpfs, one after the other:

- ``seq``: one whole read of the big file into a 16 MiB buffer (GB/s);
- ``random``: ``--random-reads`` 1 MiB reads at 4 KiB-aligned random offsets
  (``File.pread_into``; MB/s and p50 latency);
- ``concurrent``: 4 threads each reading the big file whole (GB/s);
- ``small``: 8 threads each opening and reading whole small files (files/s);
- ``model``: the model's shards one after another, by a fresh client (s).

These are the warm rows of ``python -m bench`` (issue 6) without S3 and the
other peers, for a quick before/after. Bytes are checked (sha256 of the big
file and a sample of the small files). Prints medians (min-max) and the
client/tmpfs ratio with the load average; it does not pass or fail.
Everything it starts is stopped and everything it writes removed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cachecluster.client.sync_client import Client
from cachecluster.local.cluster import LocalCluster
from cachecluster.worker.tiers import Medium, TierConfig

MiB = 1 << 20
SMALL = 64 << 10
BUFFER = 16 * MiB
NAMESPACE = "bench"
DATASET = "warm"
SHARDS = 4
THREADS = 8
READERS = 4


def _write_random(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(rng.randbytes(n))
            left -= n


class Reads:
    """The workloads over one kind of reader: the client, or plain files on tmpfs."""

    def __init__(self, root: Path, client: Client | None) -> None:
        self.root = root
        self.client = client

    def read_whole(self, name: str, buffer: memoryview) -> int:
        total = 0
        if self.client is None:
            with open(self.root / name, "rb", buffering=0) as f:
                while got := f.readinto(buffer):
                    total += got
            return total
        with self.client.open(f"{NAMESPACE}/{DATASET}/{name}") as file:
            while got := file.readinto(buffer):
                total += got
        return total

    def random(self, name: str, offsets: list[int], latencies: list[float]) -> None:
        buffer = memoryview(bytearray(MiB))
        if self.client is None:
            fd = os.open(self.root / name, os.O_RDONLY)
            try:
                for offset in offsets:
                    began = time.perf_counter()
                    os.preadv(fd, [buffer], offset)
                    latencies.append(time.perf_counter() - began)
            finally:
                os.close(fd)
            return
        with self.client.open(f"{NAMESPACE}/{DATASET}/{name}") as file:
            for offset in offsets:
                began = time.perf_counter()
                file.pread_into(offset, buffer)
                latencies.append(time.perf_counter() - began)


def _threads(count: int, work: Callable[[int], int]) -> int:
    with ThreadPoolExecutor(count) as pool:
        return sum(pool.map(work, range(count)))


def _whole(reads: Reads, name: str, _index: int) -> int:
    return reads.read_whole(name, memoryview(bytearray(BUFFER)))


def _small_files(reads: Reads, names: list[str]) -> int:
    """Read every file of ``names`` whole on ``THREADS`` threads; how many were read."""
    lock = threading.Lock()
    queue = iter(names)

    def worker(_index: int) -> int:
        buffer = memoryview(bytearray(4 * SMALL))
        done = 0
        while True:
            with lock:
                name = next(queue, None)
            if name is None:
                return done
            reads.read_whole(name, buffer)
            done += 1

    return _threads(THREADS, worker)


def run(args: argparse.Namespace, workdir: Path) -> None:
    data = workdir / "data"
    big = "big.bin"
    _write_random(data / big, args.size_mib * MiB, 1)
    shard_size = args.model_mib * MiB // SHARDS
    shards = [f"model/shard-{i}.bin" for i in range(SHARDS)]
    for i, shard in enumerate(shards):
        _write_random(data / shard, shard_size, 10 + i)
    smalls = [f"small/{i // 1000:02d}/f{i:05d}.bin" for i in range(args.small_files)]
    rng = random.Random(2)
    for name in smalls:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(rng.randbytes(SMALL))
    quota = 2 * (args.size_mib + args.model_mib) * MiB // args.workers + 512 * MiB
    cluster = LocalCluster(
        workdir / "home",
        workers=args.workers,
        tiers=[TierConfig(Medium.MEM, str(workdir / "mem"), quota)],
    )
    cluster.start()
    clients: list[Client] = []
    try:
        cluster.apply_dataset(NAMESPACE, DATASET, f"local://{data}")
        client = Client(cluster.master_address)
        clients.append(client)
        plain = Reads(data, None)
        cached = Reads(data, client)
        buffer = memoryview(bytearray(BUFFER))
        # Warm the cache; check the bytes.
        digest = hashlib.sha256()
        with client.open(f"{NAMESPACE}/{DATASET}/{big}") as file:
            while got := file.readinto(buffer):
                digest.update(buffer[:got])
        with open(data / big, "rb") as f:
            assert digest.hexdigest() == hashlib.file_digest(f, "sha256").hexdigest(), "big"
        for shard in shards:
            cached.read_whole(shard, buffer)
        for name in smalls:
            cached.read_whole(name, buffer)
        for name in random.Random(3).sample(smalls, min(32, len(smalls))):
            got = cached.read_whole(name, buffer)
            assert bytes(buffer[:got]) == (data / name).read_bytes(), name
        size = args.size_mib * MiB
        offsets = [
            random.Random(4).randint(0, (size - MiB) // 4096) * 4096
            for _ in range(args.random_reads)
        ]
        figures: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            figures.setdefault(name, []).append(value)

        for _ in range(args.runs):
            for label, reads in (("tmpfs", plain), ("client", cached)):
                began = time.perf_counter()
                got = reads.read_whole(big, buffer)
                add(f"seq {label} GB/s", got / (time.perf_counter() - began) / 1e9)
                latencies: list[float] = []
                began = time.perf_counter()
                reads.random(big, offsets, latencies)
                seconds = time.perf_counter() - began
                add(f"random {label} MB/s", len(offsets) * MiB / seconds / 1e6)
                add(f"random {label} p50 ms", statistics.median(latencies) * 1e3)
                began = time.perf_counter()
                got = _threads(READERS, functools.partial(_whole, reads, big))
                add(f"concurrent {label} GB/s", got / (time.perf_counter() - began) / 1e9)
                began = time.perf_counter()
                count = _small_files(reads, smalls)
                add(f"small {label} files/s", count / (time.perf_counter() - began))
                if reads.client is not None:
                    clients.remove(reads.client)
                    reads.client.close()
                    reads.client = Client(cluster.master_address)
                    clients.append(reads.client)
                began = time.perf_counter()
                for shard in shards:
                    reads.read_whole(shard, buffer)
                add(f"model {label} s", time.perf_counter() - began)
        print(f"load average {os.getloadavg()}; {args.runs} runs; median (min-max)")
        for name, values in figures.items():
            print(
                f"{name:28s} {statistics.median(values):10.3f} "
                f"({min(values):.3f}-{max(values):.3f})"
            )
        for row in ("seq", "random", "concurrent", "small", "model"):
            unit = {"seq": "GB/s", "random": "MB/s", "concurrent": "GB/s"}.get(row)
            unit = unit or ("files/s" if row == "small" else "s")
            ours = statistics.median(figures[f"{row} client {unit}"])
            theirs = statistics.median(figures[f"{row} tmpfs {unit}"])
            ratio = theirs / ours if unit == "s" else ours / theirs
            print(f"{row:12s} client/tmpfs {ratio:.2f}x")
    finally:
        for client in clients:
            client.close()
        cluster.stop(purge=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run in a scratch folder, remove it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--model-mib", type=int, default=2048)
    parser.add_argument("--small-files", type=int, default=600)
    parser.add_argument("--random-reads", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm", help="where the data and tiers go (tmpfs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cc-warm-", dir=args.dir))
    try:
        run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
