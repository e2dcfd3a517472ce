"""Benchmark of the S3 backend's whole-object read against a plain boto3 GET.

Run: ``.venv/bin/python -m bench.bench_ufs_read [--size-mib 1024] [--runs 3]``.

In one process: start SeaweedFS (``tests/servers/seaweed.py``, every port
chosen at run time), upload a seeded pseudo-random object of ``--size-mib``
(generated in chunks, multipart upload), then per run, one after the other so
that a noisy neighbour slows every path alike:

* **boto3 .read()**: ``get_object()['Body'].read()`` with a default boto3
  client, as users write it (one GET; the bytes object is allocated per read);
* **1 GET readinto**: one ranged GET streamed by our
  :func:`~cachecluster.ufs.object_store.read_response_into` into a
  preallocated buffer (isolates the copy-free path from the parallelism);
* **S3Backend.read_into**: our backend, the whole object into the same
  preallocated buffer as parallel ranged GETs (``--part-mib`` x ``--parallelism``).

The buffer is written once (and the bytes checked by SHA-256) before timing.
Reported: GB/s (10^9 bytes/s) as the median of ``--runs`` with min and max, and
the ratio of our median to the plain GET's. It reports figures; it does not
pass or fail. SeaweedFS is stopped and its data removed, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cachecluster.ufs.object_store import read_response_into
from cachecluster.ufs.registry import create_backend
from tests.servers.seaweed import SeaweedS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

BUCKET = "bench"
KEY = "bench/object.bin"
UPLOAD_PART = 64 << 20
SEED = 20261122


def upload(client: S3Client, size: int) -> str:
    """Multipart-upload ``size`` seeded random bytes; return their SHA-256."""
    rng = random.Random(SEED)
    digest = hashlib.sha256()
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    parts: list[CompletedPartTypeDef] = []
    try:
        for number, start in enumerate(range(0, size, UPLOAD_PART), start=1):
            chunk = rng.randbytes(min(UPLOAD_PART, size - start))
            digest.update(chunk)
            etag = client.upload_part(
                Bucket=BUCKET, Key=KEY, UploadId=upload_id, PartNumber=number, Body=chunk
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=KEY, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=BUCKET, Key=KEY, UploadId=upload_id)
        raise
    return digest.hexdigest()


def timed(func: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    n = func()
    return time.perf_counter() - start, n


def gbps(size: int, seconds: float) -> float:
    return size / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--part-mib", type=int, default=8, help="fs.s3.partSize")
    parser.add_argument("--parallelism", type=int, default=8, help="fs.s3.readParallelism")
    args = parser.parse_args()
    size = args.size_mib << 20

    with SeaweedS3.start() as server:
        server.create_bucket(BUCKET)
        plain = server.client()  # default boto3 client, path-style
        started = time.perf_counter()
        expected = upload(plain, size)
        upload_s = time.perf_counter() - started
        print(f"uploaded {args.size_mib} MiB in {upload_s:.1f}s ({gbps(size, upload_s):.2f} GB/s)")

        options = server.backend_options() | {
            "fs.s3.partSize": f"{args.part_mib}Mi",
            "fs.s3.readParallelism": str(args.parallelism),
        }
        buf = bytearray(size)
        view = memoryview(buf)
        times: dict[str, list[float]] = {"boto3": [], "single": [], "ours": []}

        def boto3_read() -> int:
            return len(plain.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())

        def single_readinto() -> int:
            body = plain.get_object(Bucket=BUCKET, Key=KEY)["Body"]
            return read_response_into(getattr(body, "_raw_stream", body), view)

        async def run_all() -> None:
            backend = create_backend(f"s3://{BUCKET}", options)
            try:
                n = await backend.read_into(KEY, 0, view)  # writes every page once
                assert n == size and hashlib.sha256(view).hexdigest() == expected, "bytes differ"
                for _ in range(args.runs):
                    seconds, n = timed(boto3_read)
                    assert n == size
                    times["boto3"].append(seconds)
                    seconds, n = timed(single_readinto)
                    assert n == size
                    times["single"].append(seconds)
                    start = time.perf_counter()
                    n = await backend.read_into(KEY, 0, view)
                    times["ours"].append(time.perf_counter() - start)
                    assert n == size
            finally:
                await backend.close()

        asyncio.run(run_all())

    labels = {
        "boto3": "boto3 get_object().read()",
        "single": "1 GET readinto (prealloc)",
        "ours": f"S3Backend.read_into ({args.part_mib} MiB x {args.parallelism})",
    }
    print(f"\nSeaweedFS S3 on 127.0.0.1, object {args.size_mib} MiB, runs {args.runs}")
    print(f"{'path':<40} {'median GB/s':>11} {'min':>6} {'max':>6}")
    medians: dict[str, float] = {}
    for name, label in labels.items():
        rates = [gbps(size, s) for s in times[name]]
        medians[name] = statistics.median(rates)
        print(f"{label:<40} {medians[name]:>11.2f} {min(rates):>6.2f} {max(rates):>6.2f}")
    print(f"\nratio ours / boto3 .read(): {medians['ours'] / medians['boto3']:.2f}x")
    print(f"ratio ours / 1 GET readinto: {medians['ours'] / medians['single']:.2f}x")


if __name__ == "__main__":
    main()
