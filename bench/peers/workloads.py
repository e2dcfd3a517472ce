"""The workloads of issue 6, each one timed call on a started system.

Every workload returns one figure (and, for random reads, the latency of
each read). Reads are checked: byte counts always, contents for the random
reads and a sample of the small files (outside the timed part).

The passes over the small files (read, stat) stop after ``seconds`` (the
suite's ``--pass-seconds``) when they have not done every file by then, and
report the rate over what they did: a slow system would otherwise take
minutes a pass. The warm pass reads the files the cold pass read.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from bench.peers.base import System
from bench.peers.data import SMALL_SIZE, Layout, expected

MiB = 1 << 20
BUFFER = 16 * MiB
RANDOM_READ = MiB
RANDOM_ALIGN = 4096
THREADS = 8
CONCURRENT_READERS = 4
SAMPLE_FILES = 16


@dataclass(frozen=True)
class Workload:
    """One row of the table."""

    id: str
    title: str
    unit: str
    better: Literal["higher", "lower"]
    cache: str
    """The state the system's cache and the page cache are in when it runs."""


WORKLOADS: tuple[Workload, ...] = (
    Workload("seq_cold", "sequential read, 1 file, cold", "GB/s", "higher",
             "system cache emptied, page cache dropped"),
    Workload("seq_warm", "sequential read, 1 file, warm", "GB/s", "higher",
             "system cache warm, page cache dropped"),
    Workload("random_1m", "1 MiB random reads", "MB/s", "higher",
             "system cache warm, page cache dropped; one reader"),
    Workload("small_cold", "64 KiB files, cold", "files/s", "higher",
             f"system cache emptied, page cache dropped; {THREADS} threads, the files in "
             "order until all are read or the pass time is up"),
    Workload("small_warm", "64 KiB files, warm", "files/s", "higher",
             f"system cache warm, page cache dropped; {THREADS} threads, the files the cold "
             "pass read"),
    Workload("concurrent_4", f"{CONCURRENT_READERS} readers of one file", "GB/s", "higher",
             "system cache warm, page cache dropped; aggregate"),
    Workload("ls_lR", "ls -lR (list + sizes)", "s", "lower",
             "fresh mount / client, page cache dropped"),
    Workload("stat", "stat of the small files", "stats/s", "higher",
             f"fresh mount / client, page cache dropped; {THREADS} threads over the small "
             "files in order, until all are done or the pass time is up"),
    Workload("model_cold", "model load, cold", "s", "lower",
             "system cache emptied, page cache dropped; shards one after another"),
    Workload("model_load", "model load, fresh mount", "s", "lower",
             "system cache warm, fresh mount / client, page cache dropped"),
)  # fmt: skip
BY_ID = {workload.id: workload for workload in WORKLOADS}


@dataclass
class Sample:
    """One timed figure, with per-read latencies where the workload has them."""

    value: float
    latencies_ms: list[float] = field(default_factory=list)
    items: int | None = None
    """Files a capped pass got through (None where every item is always done)."""


class WrongData(AssertionError):
    """A system returned other bytes (or another count) than the object holds."""


def _check_count(what: str, got: int, want: int) -> None:
    if got != want:
        raise WrongData(f"{what}: read {got} bytes, the object has {want}")


def sequential(system: System, layout: Layout) -> Sample:
    """GB/s of one whole read of the big file."""
    buffer = memoryview(bytearray(BUFFER))
    start = time.perf_counter()
    got = system.read_whole(layout.big_key, buffer)
    seconds = time.perf_counter() - start
    _check_count(layout.big_key, got, layout.big_size)
    return Sample(got / seconds / 1e9)


def random_reads(system: System, layout: Layout, count: int, seed: int) -> Sample:
    """MB/s and per-read latency of ``count`` 1 MiB reads at random 4 KiB-aligned offsets."""
    rng = random.Random(seed)
    last = max(0, layout.big_size - RANDOM_READ) // RANDOM_ALIGN
    offsets = [rng.randint(0, last) * RANDOM_ALIGN for _ in range(count)]
    buffer = memoryview(bytearray(RANDOM_READ))
    latencies: list[float] = []
    checks: list[tuple[int, bytes]] = []
    reader = system.open_reader(layout.big_key)
    try:
        start = time.perf_counter()
        for offset in offsets:
            began = time.perf_counter()
            got = reader.read_at(offset, buffer)
            latencies.append((time.perf_counter() - began) * 1e3)
            if len(checks) < 8:  # compared after the timing
                checks.append((offset, bytes(buffer[:got])))
        seconds = time.perf_counter() - start
    finally:
        reader.close()
    for offset, data in checks:
        want = expected(layout.seed, layout.big_key, layout.big_size, offset, RANDOM_READ)
        if data != want:
            raise WrongData(f"{layout.big_key} at {offset}: other bytes than the object's")
    return Sample(count * RANDOM_READ / seconds / 1e6, latencies)


def _threaded(
    keys: list[str], call: Callable[[str, memoryview], int], buffer_size: int, seconds: float
) -> tuple[int, int, float]:
    """Run ``call(key, buffer)`` over ``keys`` on ``THREADS`` threads, in order, until the
    keys or ``seconds`` run out; (keys done, sum of the results, elapsed seconds)."""
    local = threading.local()
    lock = threading.Lock()
    done = [0, 0]
    start = time.perf_counter()
    stop_at = start + seconds

    def one(key: str) -> None:
        if time.perf_counter() > stop_at:
            return
        if not hasattr(local, "buffer"):
            local.buffer = memoryview(bytearray(buffer_size))
        result = call(key, local.buffer)
        with lock:
            done[0] += 1
            done[1] += result

    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(one, keys):
            pass
    return done[0], done[1], time.perf_counter() - start


def small_files(
    system: System, layout: Layout, limit: int, seconds: float, check: bool
) -> tuple[Sample, int]:
    """Files/s reading the first ``limit`` small files whole, ``THREADS`` at a time, for at
    most ``seconds``; also the number of files read."""
    keys = layout.small_keys()[:limit]
    count, got, elapsed = _threaded(keys, system.read_whole, 4 * SMALL_SIZE, seconds)
    _check_count(f"{count} small files", got, count * SMALL_SIZE)
    if check:
        buffer = memoryview(bytearray(SMALL_SIZE))
        for key in random.Random(layout.seed).sample(keys[:count], min(SAMPLE_FILES, count)):
            system.read_whole(key, buffer)
            if bytes(buffer) != expected(layout.seed, key, SMALL_SIZE, 0, SMALL_SIZE):
                raise WrongData(f"{key}: other bytes than the object's")
    return Sample(count / elapsed, items=count), count


def concurrent(system: System, layout: Layout) -> Sample:
    """Aggregate GB/s of ``CONCURRENT_READERS`` threads each reading the big file whole."""
    barrier = threading.Barrier(CONCURRENT_READERS + 1)

    def reader() -> int:
        buffer = memoryview(bytearray(BUFFER))
        barrier.wait()
        return system.read_whole(layout.big_key, buffer)

    with ThreadPoolExecutor(CONCURRENT_READERS) as pool:
        reads = [pool.submit(reader) for _ in range(CONCURRENT_READERS)]
        barrier.wait()
        start = time.perf_counter()
        counts = [read.result() for read in reads]
        seconds = time.perf_counter() - start
    for got in counts:
        _check_count(layout.big_key, got, layout.big_size)
    return Sample(sum(counts) / seconds / 1e9)


def listing(system: System, layout: Layout) -> Sample:
    """Seconds of a recursive listing with sizes of the small files' folder."""
    start = time.perf_counter()
    found = system.list_tree(layout.small_prefix)
    seconds = time.perf_counter() - start
    if found != layout.small_files:
        raise WrongData(f"listing {layout.small_prefix}/: {found} files, want {layout.small_files}")
    return Sample(seconds)


def stats(system: System, layout: Layout, seconds: float) -> Sample:
    """Stats/s of the small files, ``THREADS`` at a time, for at most ``seconds``."""
    keys = layout.small_keys()

    def one(key: str, _buffer: memoryview) -> int:
        size = system.stat(key)
        if size != SMALL_SIZE:
            raise WrongData(f"stat {key}: size {size}, want {SMALL_SIZE}")
        return 1

    count, _, elapsed = _threaded(keys, one, 0, seconds)
    return Sample(count / elapsed, items=count)


def model_load(system: System, layout: Layout) -> Sample:
    """Seconds to read every model shard once, one after another."""
    buffer = memoryview(bytearray(BUFFER))
    start = time.perf_counter()
    for key, size in layout.model_keys():
        _check_count(key, system.read_whole(key, buffer), size)
    return Sample(time.perf_counter() - start)
