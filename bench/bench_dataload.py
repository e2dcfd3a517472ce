"""Benchmark of DataLoad throughput against a parallel plain copy from SeaweedFS with boto3.

Run: ``.venv/bin/python -m bench.bench_dataload [--size-mib 4096] [--runs 1]``.

A SeaweedFS server holds a dataset of ``--size-mib`` MiB: half of it in
``--files`` small objects, half in one big object. A local cluster
(``LocalCluster``: a master and ``--workers`` worker processes, one MEM tier
each on ``--dir``) serves it as a dataset. Each run, one after the other:

(a) plain copy to files (the issue's "parallel plain copy", the headline):
    what ``aws s3 cp --recursive s3://bucket /dev/shm/x`` does, from
    ``--threads`` threads: boto3 GETs of every object (the big one in 64 MiB
    ranges, so it is parallel too), each body streamed in 1 MiB chunks into
    a new file under ``--dir`` (the big one written at each range's offset).
    The files are removed after the run, before the DataLoad;
(b) read-only GETs: the same requests, bytes read into memory and dropped
    (nothing written: a ceiling of what the UFS and boto3 deliver);
(c) DataLoad: every block of the dataset is evicted from every worker, then a
    DataLoad of the whole dataset is applied and followed to Complete; the
    time is from the apply to Complete as the client sees it. It writes
    every block to the workers' tmpfs tiers, as (a) writes its files.

Prints each time (median, min, max), the throughputs in MB/s (10^6 bytes/s),
the ratios copy time / DataLoad time (headline: (a), target >= 1.0x) and the
CPU seconds each process (SeaweedFS, master, workers, this benchmark) spent
in each path (medians), from /proc. It reports figures and does not pass or
fail. Everything it starts is stopped and its files removed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.bench_cluster_read import evict_everywhere
from cachecluster.cli.load_cmds import wait_for_dataload
from cachecluster.client.client import AsyncClient
from cachecluster.common.units import parse_size
from cachecluster.local.cluster import LocalCluster
from cachecluster.protos import dataload_pb2, dataload_pb2_grpc, master_pb2
from cachecluster.worker.tiers import Medium, TierConfig
from tests.servers.seaweed import SeaweedS3

MiB = 1 << 20
BUCKET = "bench-dataload"
NAMESPACE = "bench"
DATASET = "load"
RANGE = 64 * MiB
UPLOAD_PART = 64 * MiB
COPY_CHUNK = MiB
PATHS = ("copy", "get", "dataload")
LABELS = {
    "copy": "(a) boto3 copy to files",
    "get": "(b) boto3 GETs, no write",
    "dataload": "(c) DataLoad into cache",
}


def _objects(size: int, files: int) -> dict[str, int]:
    """Key -> size: half the bytes in ``files`` small objects, half in one big object."""
    small_total = size // 2
    each = max(1, small_total // files)
    objects = {f"small/part-{index:05d}.bin": each for index in range(files)}
    objects["big/model.bin"] = size - each * files
    return objects


def _upload(s3: SeaweedS3, objects: dict[str, int], threads: int) -> None:
    client = s3.client()
    chunk = random.Random(7).randbytes(UPLOAD_PART)

    def put(key: str, size: int) -> None:
        if size <= UPLOAD_PART:
            client.put_object(Bucket=BUCKET, Key=key, Body=chunk[:size])
            return
        upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        parts: list[Any] = []
        for number, start in enumerate(range(0, size, UPLOAD_PART), start=1):
            body = chunk[: min(UPLOAD_PART, size - start)]
            etag = client.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: put(*item), objects.items()))


def _jobs(objects: dict[str, int]) -> list[tuple[str, int, int]]:
    """(key, start, length) of every GET: whole small objects, big ones in ``RANGE`` pieces."""
    jobs: list[tuple[str, int, int]] = []
    for key, size in objects.items():
        for start in range(0, size, RANGE):
            jobs.append((key, start, min(RANGE, size - start)))
    return jobs


def _get(client: Any, key: str, start: int, length: int, size: int) -> Any:
    """The streaming body of one GET (ranged only when it is a part of the object)."""
    if length == size:
        return client.get_object(Bucket=BUCKET, Key=key)["Body"]
    return client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={start}-{start + length - 1}")[
        "Body"
    ]


def plain_get(s3: SeaweedS3, objects: dict[str, int], threads: int) -> int:
    """(b) GET every object (big ones in ranges) from ``threads`` threads; the bytes read."""
    client = s3.client()

    def get(job: tuple[str, int, int]) -> int:
        key, start, length = job
        return len(_get(client, key, start, length, objects[key]).read())

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(get, _jobs(objects)))


def plain_copy(s3: SeaweedS3, objects: dict[str, int], threads: int, target: Path) -> int:
    """(a) Copy every object into a file under ``target``, as ``aws s3 cp --recursive`` would.

    Same GETs as :func:`plain_get`; each body is streamed in ``COPY_CHUNK``
    pieces into its file at the range's offset. Returns the bytes written.
    """
    client = s3.client()
    for key in objects:
        (target / key).parent.mkdir(parents=True, exist_ok=True)

    def copy(job: tuple[str, int, int]) -> int:
        key, start, length = job
        body = _get(client, key, start, length, objects[key])
        fd = os.open(target / key, os.O_WRONLY | os.O_CREAT, 0o644)
        written = 0
        try:
            for chunk in body.iter_chunks(COPY_CHUNK):
                written += os.pwrite(fd, chunk, start + written)
        finally:
            os.close(fd)
        return written

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(copy, _jobs(objects)))


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


class Timer:
    """Times one path and the CPU each process spent in it."""

    def __init__(self, pids: dict[str, int], times: dict[str, list[float]]) -> None:
        self.pids = pids
        self.times = times
        self.cpu: dict[str, dict[str, list[float]]] = {}

    async def run(self, path: str, body: Any) -> Any:
        """Await ``body``; record its wall time under ``path`` and the CPU per process."""
        before = cpu_seconds(self.pids)
        start = time.perf_counter()
        result = await body
        self.times[path].append(time.perf_counter() - start)
        after = cpu_seconds(self.pids)
        per_process = self.cpu.setdefault(path, {})
        for name, seconds in after.items():
            per_process.setdefault(name, []).append(seconds - before.get(name, seconds))
        return result


async def dataload(cluster: LocalCluster, name: str) -> dataload_pb2.DataLoad:
    """Apply a DataLoad of the whole dataset and follow it to its end."""
    spec = {"dataset": {"name": DATASET}}
    async with grpc.aio.insecure_channel(cluster.master_address) as channel:
        stub = dataload_pb2_grpc.DataLoadServiceStub(channel)
        await stub.ApplyDataLoad(
            dataload_pb2.ApplyDataLoadRequest(
                ref=master_pb2.DatasetRef(namespace=NAMESPACE, name=name),
                spec_json=json.dumps(spec).encode(),
            ),
            timeout=10,
        )
    return await wait_for_dataload(
        cluster.master_address,
        NAMESPACE,
        name,
        show_progress=False,
        timeout=3600,
        poll_interval=0.05,
    )


async def bench(
    args: argparse.Namespace, workdir: Path, s3: SeaweedS3
) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]]]:
    """Upload, start the cluster, time every path ``--runs`` times; seconds and CPU per path."""
    size = args.size_mib * MiB
    objects = _objects(size, args.files)
    s3.create_bucket(BUCKET)
    started = time.perf_counter()
    await asyncio.to_thread(_upload, s3, objects, 4)
    print(
        f"uploaded {len(objects)} objects, {args.size_mib} MiB in "
        f"{time.perf_counter() - started:.1f}s",
        flush=True,
    )
    quota = size // args.workers + size // 4 + 256 * MiB
    cluster = LocalCluster(
        workdir / "home",
        workers=args.workers,
        tiers=[TierConfig(Medium.MEM, str(workdir / "mem"), quota)],
        block_size=args.block_size,
    )
    await asyncio.to_thread(cluster.start)
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    pids = {"seaweedfs": s3.process.pid, "master": cluster.master_pid, "bench": os.getpid()}
    pids.update({f"worker{i}": worker.pid for i, worker in enumerate(cluster.workers)})
    timer = Timer(pids, times)
    copy_dir = workdir / "copy"
    try:
        cluster.apply_dataset(NAMESPACE, DATASET, f"s3://{BUCKET}", s3.backend_options())
        async with AsyncClient(cluster.master_address) as client:
            files = await client.walk_files(f"{NAMESPACE}/{DATASET}")
            block_ids = [
                block.block_id for info in files for block in await client.blocks(info.path)
            ]
        print(f"dataset: {len(files)} files, {len(block_ids)} blocks", flush=True)
        for run in range(args.runs):
            copy_dir.mkdir()
            copied = await timer.run(
                "copy", asyncio.to_thread(plain_copy, s3, objects, args.threads, copy_dir)
            )
            assert copied == size, f"copied {copied} bytes, expected {size}"
            await asyncio.to_thread(shutil.rmtree, copy_dir)
            got = await timer.run("get", asyncio.to_thread(plain_get, s3, objects, args.threads))
            assert got == size, f"read {got} bytes, expected {size}"
            await evict_everywhere(cluster, block_ids)
            load = await timer.run("dataload", dataload(cluster, f"bench-{run}"))
            status = load.status
            assert status.phase == "Complete", status.message
            assert status.bytes_done == size and status.bytes_fetched == size, status
            print(
                f"run {run + 1}/{args.runs}: copy {times['copy'][-1]:.2f}s, "
                f"GETs {times['get'][-1]:.2f}s, DataLoad {times['dataload'][-1]:.2f}s "
                f"(status duration {status.duration_ms / 1000:.2f}s)",
                flush=True,
            )
        return times, timer.cpu
    finally:
        await asyncio.to_thread(shutil.rmtree, copy_dir, True)
        await asyncio.to_thread(cluster.stop, purge=True)


def report(
    args: argparse.Namespace,
    times: dict[str, list[float]],
    cpu: dict[str, dict[str, list[float]]],
) -> None:
    """Print the medians (min, max), throughputs, both ratios and CPU per process."""
    size = args.size_mib * MiB
    print(
        f"\nDataLoad vs plain boto3 copy: {args.size_mib} MiB ({args.files} small objects + "
        f"1 big), {args.workers} worker(s), {args.threads} copy threads, {args.runs} run(s)"
    )
    for path in PATHS:
        median = statistics.median(times[path])
        print(
            f"  {LABELS[path]:<26} {median:7.2f}s  {size / median / 1e6:8.1f} MB/s"
            f"  (min {min(times[path]):.2f}s, max {max(times[path]):.2f}s)"
        )
    dataload_time = statistics.median(times["dataload"])
    for path, what in (("copy", "copy to files"), ("get", "read-only GETs")):
        ratio = statistics.median(times[path]) / dataload_time
        verdict = "meets" if ratio >= 1.0 else "BELOW"
        headline = "  <- the issue's target" if path == "copy" else ""
        print(f"  ratio {what} / DataLoad {ratio:5.2f}x  (target >= 1.0: {verdict}){headline}")
    print("  CPU seconds per process (medians):")
    for path in PATHS:
        used = {name: statistics.median(values) for name, values in cpu.get(path, {}).items()}
        line = ", ".join(f"{name} {seconds:.2f}" for name, seconds in used.items())
        print(f"    {LABELS[path]:<26} total {sum(used.values()):.2f}: {line}")
    print(f"  load average at the end: {os.getloadavg()[0]:.2f} (2 cores; > 2 means contended)")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=4096)
    parser.add_argument("--files", type=int, default=256, help="small objects (half the bytes)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16, help="boto3 copy threads")
    parser.add_argument("--block-size", type=lambda v: parse_size(v, "--block-size"), default="4Mi")
    parser.add_argument("--dir", default="/dev/shm", help="where the cache tiers go (tmpfs)")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="cc-dataload-bench-", dir=args.dir) as workdir,
        SeaweedS3.start() as s3,
    ):
        times, cpu = asyncio.run(bench(args, Path(workdir), s3))
    report(args, times, cpu)


if __name__ == "__main__":
    main()
