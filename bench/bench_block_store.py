"""Benchmark of the worker's block store on a MEM tier (tmpfs) against plain tmpfs files.

Run: ``.venv/bin/python -m bench.bench_block_store [--total-mib 1024] [--runs 3]``.

Each run, in one process and one temp directory under ``/dev/shm``:

* **plain write**: ``--total-mib`` of new files, one per block (open, write,
  close): the floor for what any cache pays to store a block on tmpfs;
* **store put**: the same bytes through :meth:`BlockStore.put` (header,
  xxh3 checksum, temp file, rename, accounting, eviction checks);
* **plain read**: open each plain file, ``readinto`` one preallocated buffer,
  close;
* **store get**: :meth:`BlockStore.get` (a hit: a lease with an open fd),
  ``lease.readinto`` into the same buffer, close.

The plain and store operations alternate block by block (write, put, write,
put..., then read, get, read, get...) and each side sums its own time, so a
noisy neighbour on this shared VM slows both sides alike.

Reported: GB/s (10^9 bytes/s) as the median of ``--runs`` runs with min and
max, and the store/plain ratio of the medians (target for get: >= 0.7x).
The MEM quota is sized so that nothing is evicted: this measures the data
path, not eviction. Temp directories are removed, also on errors.

It reports figures; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cachecluster.common.block_key import BlockKey
from cachecluster.worker.block_file import DATA_OFFSET
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.tiers import Medium, TierConfig

MIB = 1 << 20
GB = 1e9


def _block_ids(count: int) -> list[str]:
    return [BlockKey("bench", "data.bin", "v1", index).id for index in range(count)]


def _plain_write(path: str, data: memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _plain_read(path: str, buffer: memoryview) -> None:
    with open(path, "rb", buffering=0) as handle:
        got = handle.readinto(buffer)
    assert got == len(buffer)


async def _store_put(store: BlockStore, block_id: str, data: memoryview) -> None:
    medium = await store.put(block_id, data)
    assert medium is Medium.MEM


async def _store_get(store: BlockStore, block_id: str, buffer: memoryview) -> None:
    lease = await store.get(block_id)
    try:
        got = lease.readinto(buffer)
    finally:
        lease.close()
    assert got == len(buffer)


async def _one_run(
    base: str, count: int, block_size: int, data: memoryview, buffer: memoryview
) -> dict[str, float]:
    total = count * block_size
    work = tempfile.mkdtemp(prefix="cc-bench-store-", dir=base)
    try:
        plain_dir = os.path.join(work, "plain")
        os.mkdir(plain_dir)
        quota = int(count * (DATA_OFFSET + block_size) / 0.9) + 16 * MIB
        tier = TierConfig(Medium.MEM, os.path.join(work, "mem"), quota, high=0.95, low=0.7)
        ids = _block_ids(count)
        seconds: dict[str, float] = {}
        seconds = dict.fromkeys(("plain write", "store put", "plain read", "store get"), 0.0)
        clock = time.perf_counter
        async with BlockStore([tier]) as store:
            # Interleaved block by block, so that both paths see the same machine
            # (this VM is shared and noisy): plain write i, put i, ...
            for index, block_id in enumerate(ids):
                plain_path = os.path.join(plain_dir, f"{index}.bin")
                start = clock()
                _plain_write(plain_path, data)
                middle = clock()
                await _store_put(store, block_id, data)
                seconds["plain write"] += middle - start
                seconds["store put"] += clock() - middle
            # ... then plain read i, get i.
            for index, block_id in enumerate(ids):
                plain_path = os.path.join(plain_dir, f"{index}.bin")
                start = clock()
                _plain_read(plain_path, buffer)
                middle = clock()
                await _store_get(store, block_id, buffer)
                seconds["plain read"] += middle - start
                seconds["store get"] += clock() - middle
            async with await store.get(ids[-1]) as lease:  # the bytes are the ones put
                assert lease.read(0, 4096) == bytes(data[:4096])
        return {name: total / value / GB for name, value in seconds.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_loop(loop_name: str, coro: Coroutine[Any, Any, dict[str, float]]) -> dict[str, float]:
    if loop_name == "uvloop":
        import uvloop

        runner: Callable[[Coroutine[Any, Any, dict[str, float]]], dict[str, float]] = uvloop.run
        return runner(coro)
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--total-mib", type=int, default=1024, help="bytes per pass (MiB)")
    parser.add_argument("--block-mib", type=int, default=4, help="block size (MiB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--dir", default="/dev/shm", help="tmpfs directory for the temp dirs")
    args = parser.parse_args(argv)

    block_size = args.block_mib * MIB
    count = max(1, args.total_mib // args.block_mib)
    data = memoryview(bytearray(os.urandom(block_size)))
    buffer = memoryview(bytearray(block_size))
    buffer[:] = b"\0" * block_size  # touch the pages once, outside the timings

    results: list[dict[str, float]] = []
    for _ in range(args.runs):
        results.append(_run_loop(args.loop, _one_run(args.dir, count, block_size, data, buffer)))

    total_mib = count * args.block_mib
    print(
        f"block store vs plain tmpfs: {count} blocks of {args.block_mib} MiB "
        f"({total_mib} MiB a pass), {args.runs} runs, loop={args.loop}, dir={args.dir}"
    )
    print(f"{'path':<12} {'median GB/s':>12} {'min':>7} {'max':>7}")
    medians: dict[str, float] = {}
    for name in ("plain write", "store put", "plain read", "store get"):
        values = [run[name] for run in results]
        medians[name] = statistics.median(values)
        print(f"{name:<12} {medians[name]:>12.2f} {min(values):>7.2f} {max(values):>7.2f}")
    put_ratio = medians["store put"] / medians["plain write"]
    get_ratio = medians["store get"] / medians["plain read"]
    print(f"put / plain write: {put_ratio:.2f}x")
    print(f"get / plain read:  {get_ratio:.2f}x (target >= 0.7x)")


if __name__ == "__main__":
    main()
