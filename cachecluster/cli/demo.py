"""``cachecluster demo``: the main job on the embedded default.

For now it exercises one worker's block store over a local UFS folder: it
generates a dataset, reads it cold (every block fetched from the UFS and
cached on the MEM tier) and warm (every block served from the cache), checks
the bytes against the UFS, and prints both times and the speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cachecluster.common.units import format_size, parse_size
from cachecluster.ufs.base import FileStatus, UfsBackend
from cachecluster.ufs.registry import create_backend
from cachecluster.worker.block_key import BlockKey, block_count, block_span
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.tiers import Medium, TierConfig

MOUNT_ID = "demo"
CHUNK = 4 << 20


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``demo`` subcommand."""
    parser = sub.add_parser("demo", help="generate a dataset, read it cold then warm")
    parser.add_argument("--size-mib", type=int, default=512, help="size of the big file")
    parser.add_argument("--block-size", default="4Mi", help="block size (default 4Mi)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the data")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its figures."""
    block_size = parse_size(args.block_size, "--block-size")
    workdir = Path(tempfile.mkdtemp(prefix="cachecluster-demo-", dir=args.workdir))
    mem_dir = Path(tempfile.mkdtemp(prefix="cachecluster-demo-mem-", dir="/dev/shm"))
    try:
        sizes = [args.size_mib << 20, 0, 1, block_size - 1, block_size + 1, 3 * block_size + 12345]
        expected = _generate(workdir / "ufs", sizes)
        return asyncio.run(_read_twice(workdir, mem_dir, block_size, expected))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(mem_dir, ignore_errors=True)


def _generate(root: Path, sizes: list[int]) -> dict[str, str]:
    """Write seeded random files under ``root``; return path -> sha256."""
    rng = random.Random(20261122)
    expected: dict[str, str] = {}
    for i, size in enumerate(sizes):
        rel = f"part-{i:02d}.bin" if i else "big/model.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("wb") as f:
            left = size
            while left:
                chunk = rng.randbytes(min(CHUNK, left))
                f.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        expected[rel] = digest.hexdigest()
    return expected


async def _read_twice(
    workdir: Path, mem_dir: Path, block_size: int, expected: dict[str, str]
) -> int:
    total = sum(os.path.getsize(workdir / "ufs" / p) for p in expected)
    tiers = [
        TierConfig(Medium.MEM, str(mem_dir), quota=total + 64 * block_size),
        TierConfig(Medium.SSD, str(workdir / "ssd"), quota=total + 64 * block_size),
    ]
    ufs = create_backend(f"local://{workdir / 'ufs'}")
    store = BlockStore(tiers)
    await store.start()
    try:
        files = [s for s in await ufs.list("", recursive=True) if not s.is_dir]
        timings = []
        for _ in ("cold", "warm"):
            started = time.perf_counter()
            digests = await asyncio.gather(*(_read_file(ufs, store, s, block_size) for s in files))
            timings.append(time.perf_counter() - started)
            bad = [s.path for s, d in zip(files, digests, strict=True) if d != expected[s.path]]
            if bad:
                Console(stderr=True).print(f"[red]bytes differ from the UFS: {bad}")
                return 1
    finally:
        await store.close()
        await ufs.close()
    _print_result(len(files), total, timings[0], timings[1], store)
    return 0


async def _read_file(ufs: UfsBackend, store: BlockStore, status: FileStatus, bs: int) -> str:
    """Read one file block by block through the store; return its sha256."""
    digest = hashlib.sha256()
    buf = memoryview(bytearray(bs))
    for index in range(block_count(status.size, bs)):
        offset, length = block_span(index, status.size, bs)
        key = BlockKey(MOUNT_ID, status.path, status.version, index)

        async def load(offset: int = offset, length: int = length) -> bytes:
            return await ufs.read(status.path, offset, length, version=status.version)

        with await store.get(key.id, load) as lease:
            n = lease.readinto(buf)
        digest.update(buf[:n])
    return digest.hexdigest()


def _print_result(files: int, total: int, cold: float, warm: float, store: BlockStore) -> None:
    table = Table(title=f"cachecluster demo: {files} files, {format_size(total)}")
    for column in ("pass", "seconds", "GB/s"):
        table.add_column(column, justify="right")
    table.add_row("cold (UFS -> cache)", f"{cold:.2f}", f"{total / cold / 1e9:.2f}")
    table.add_row("warm (cache)", f"{warm:.2f}", f"{total / warm / 1e9:.2f}")
    console = Console()
    console.print(table)
    usage = ", ".join(f"{u.medium}: {format_size(u.used)}" for u in store.usage())
    console.print(f"speed-up warm/cold: {cold / warm:.1f}x; bytes verified; cache use: {usage}")
