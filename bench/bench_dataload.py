"""Benchmark of DataLoad throughput against a parallel plain copy from SeaweedFS with boto3.

Run: ``.venv/bin/python -m bench.bench_dataload [--size-mib 4096] [--runs 1]``.

A SeaweedFS server holds a dataset of ``--size-mib`` MiB: half of it in
``--files`` small objects, half in one big object. A local cluster
(``LocalCluster``: a master and ``--workers`` worker processes, one MEM tier
each on ``--dir``) serves it as a dataset. Each run, one after the other:

(a) plain copy: boto3 GETs of every object from ``--threads`` threads (the
    big object in 64 MiB ranges, so it is parallel too), bytes read into
    memory and dropped;
(b) DataLoad: every block of the dataset is evicted from every worker, then a
    DataLoad of the whole dataset is applied and followed to Complete; the
    time is from the apply to Complete as the client sees it.

Prints each time, the throughputs in MB/s (10^6 bytes/s), and the ratio
copy time / DataLoad time (target >= 1.0x). It reports figures and does not
pass or fail. Everything it starts is stopped and its files removed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import random
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


def plain_copy(s3: SeaweedS3, objects: dict[str, int], threads: int) -> int:
    """GET every object (big ones in ranges) from ``threads`` threads; the bytes read."""
    client = s3.client()
    jobs: list[tuple[str, str | None]] = []
    for key, size in objects.items():
        if size <= RANGE:
            jobs.append((key, None))
        else:
            for start in range(0, size, RANGE):
                jobs.append((key, f"bytes={start}-{min(size, start + RANGE) - 1}"))

    def get(job: tuple[str, str | None]) -> int:
        key, byte_range = job
        if byte_range is None:
            return len(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        return len(client.get_object(Bucket=BUCKET, Key=key, Range=byte_range)["Body"].read())

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(get, jobs))


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


async def bench(args: argparse.Namespace, workdir: Path, s3: SeaweedS3) -> dict[str, list[float]]:
    """Upload, start the cluster, time both paths ``--runs`` times; seconds per path."""
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
    times: dict[str, list[float]] = {"copy": [], "dataload": []}
    try:
        cluster.apply_dataset(NAMESPACE, DATASET, f"s3://{BUCKET}", s3.backend_options())
        async with AsyncClient(cluster.master_address) as client:
            files = await client.walk_files(f"{NAMESPACE}/{DATASET}")
            block_ids = [
                block.block_id for info in files for block in await client.blocks(info.path)
            ]
        print(f"dataset: {len(files)} files, {len(block_ids)} blocks", flush=True)
        for run in range(args.runs):
            start = time.perf_counter()
            copied = await asyncio.to_thread(plain_copy, s3, objects, args.threads)
            times["copy"].append(time.perf_counter() - start)
            assert copied == size, f"copied {copied} bytes, expected {size}"
            await evict_everywhere(cluster, block_ids)
            start = time.perf_counter()
            load = await dataload(cluster, f"bench-{run}")
            times["dataload"].append(time.perf_counter() - start)
            status = load.status
            assert status.phase == "Complete", status.message
            assert status.bytes_done == size and status.bytes_fetched == size, status
            print(
                f"run {run + 1}/{args.runs}: copy {times['copy'][-1]:.2f}s, "
                f"DataLoad {times['dataload'][-1]:.2f}s (status duration "
                f"{status.duration_ms / 1000:.2f}s)",
                flush=True,
            )
        return times
    finally:
        await asyncio.to_thread(cluster.stop, purge=True)


def report(args: argparse.Namespace, times: dict[str, list[float]]) -> None:
    """Print the medians, throughputs and the ratio."""
    size = args.size_mib * MiB
    print(
        f"\nDataLoad vs plain boto3 copy: {args.size_mib} MiB ({args.files} small objects + "
        f"1 big), {args.workers} worker(s), {args.threads} copy threads, {args.runs} run(s)"
    )
    for name, label in (("copy", "boto3 parallel copy"), ("dataload", "DataLoad into cache")):
        median = statistics.median(times[name])
        print(f"  {label:<24} {median:7.2f}s  {size / median / 1e6:8.1f} MB/s")
    ratio = statistics.median(times["copy"]) / statistics.median(times["dataload"])
    verdict = "meets" if ratio >= 1.0 else "BELOW"
    print(f"  ratio copy time / DataLoad time {ratio:5.2f}x  (target >= 1.0: {verdict})")
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
        times = asyncio.run(bench(args, Path(workdir), s3))
    report(args, times)


if __name__ == "__main__":
    main()
