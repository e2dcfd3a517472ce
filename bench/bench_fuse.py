"""Benchmark of reads through the FUSE mount, against a passthrough FUSE baseline and tmpfs.

Run: ``.venv/bin/python -m bench.bench_fuse [--size-mib 1024] [--runs 5] [--small-files 10000]``
(as root: it writes ``/proc/sys/vm/drop_caches`` and the mounts' ``read_ahead_kb``).

A local cluster (a master and two worker processes, MEM tiers on /dev/shm)
serves a dataset whose UFS is a folder on /dev/shm holding one
``--size-mib`` file and ``--small-files`` files of 64 KiB (1,000 a folder, as
the peer suite lays them out). It is mounted with
``cachecluster mount --dataset`` twice, buffered (the default) and
``--direct-io``. The baseline is a pyfuse3 file system of our own (in this
module, ``--passthrough``) that serves the same file from memory, returning
memoryviews of it, mounted with the same options (asyncio mode, ``ro``,
``keep_cache``, ``read_ahead_kb`` 1024), also buffered and direct_io. In the
same run:

(a) cold: the first read of the big file through the mount (every block comes
    from the UFS through the workers), once;
(b) warm sequential read, cluster cache warm, page cache dropped before each
    run (``drop_caches``), buffered and direct_io: ours vs the passthrough
    baseline (target >= 0.8x) vs plain tmpfs;
(c) keep_cache re-read: the same file again without dropping (page cache);
(d) ``ls -lR`` of the 10,000 small files; the files listed, then read whole
    (``open().read()``), warm cluster, page cache dropped: files/s through
    the mount vs tmpfs, one reader and 8 threads (as the peer suite); the
    first (cold) pass too;
(e) the client alone (``AsyncClient.pread_into`` of 8 MiB, no FUSE): the
    ceiling the mount's sequential read can reach;
(f) 1 MiB reads at random 4 KiB-aligned offsets of the big file (one
    reader, page cache dropped): MB/s and the median latency;
(g) after a fresh mount (the cluster stays warm, page cache dropped): the
    big file read once (as a model load is) and ``stat`` of every small file
    on 8 threads.

Reads use ``readinto`` of a 16 MiB buffer on an unbuffered file. Bytes are
checked (sha256) once. Prints medians with min/max in GB/s (10^9 bytes/s);
reports figures, passes or fails nothing. Everything it starts is stopped and
everything it writes removed, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hashlib
import os
import random
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUFFER = 16 << 20
SMALL_SIZE = 64 << 10
FILE_NAME = "big.bin"
FOLDER_FILES = 1000
THREADS = 8
RANDOM_READ = 1 << 20
RANDOM_ALIGN = 4096
RANDOM_COUNT = 300


# ---------------------------------------------------------------- passthrough baseline


def serve_passthrough(mountpoint: str, source: str, direct_io: bool) -> None:
    """Serve ``source``'s bytes from memory as ``MOUNT/big.bin`` until SIGTERM."""
    import pyfuse3
    import pyfuse3.asyncio

    from cachecluster.fuse.mount import FSNAME, raise_read_ahead

    data = memoryview(Path(source).read_bytes())
    file_inode = pyfuse3.InodeT(pyfuse3.ROOT_INODE + 1)
    name = FILE_NAME.encode()

    class Passthrough(pyfuse3.Operations):
        def init(self) -> None:
            asyncio.get_running_loop().call_soon(raise_read_ahead, mountpoint)

        def attrs(self, inode: int) -> pyfuse3.EntryAttributes:
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = pyfuse3.InodeT(inode)
            attr.entry_timeout = attr.attr_timeout = 5.0
            is_dir = inode == pyfuse3.ROOT_INODE
            attr.st_mode = pyfuse3.ModeT(stat.S_IFDIR | 0o555 if is_dir else stat.S_IFREG | 0o444)
            attr.st_size = 0 if is_dir else len(data)
            attr.st_blksize = 1 << 20
            return attr

        async def getattr(
            self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext | None = None
        ) -> pyfuse3.EntryAttributes:
            return self.attrs(inode)

        async def lookup(
            self,
            parent_inode: pyfuse3.InodeT,
            name_: pyfuse3.FileNameT,
            ctx: pyfuse3.RequestContext,
        ) -> pyfuse3.EntryAttributes:
            if name_ != name:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self.attrs(file_inode)

        async def opendir(
            self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
        ) -> pyfuse3.FileHandleT:
            return pyfuse3.FileHandleT(inode)

        async def readdir(
            self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
        ) -> None:
            if start_id == 0:
                pyfuse3.readdir_reply(token, pyfuse3.FileNameT(name), self.attrs(file_inode), 1)

        async def open(
            self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext
        ) -> pyfuse3.FileInfo:
            return pyfuse3.FileInfo(
                fh=pyfuse3.FileHandleT(inode), direct_io=direct_io, keep_cache=True
            )

        async def read(  # type: ignore[override]  # any buffer: pyfuse3 takes a memoryview
            self, fh: pyfuse3.FileHandleT, off: int, size: int
        ) -> memoryview:
            return data[off : off + size]

    async def run() -> None:
        pyfuse3.asyncio.enable()
        options = set(pyfuse3.default_options) | {f"fsname={FSNAME}-baseline", "ro"}
        options.discard("default_permissions")
        pyfuse3.init(Passthrough(), mountpoint, options)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pyfuse3.terminate)
        try:
            await pyfuse3.main()
        finally:
            pyfuse3.close(unmount=True)

    asyncio.run(run())


# ---------------------------------------------------------------- measuring


def drop_caches() -> None:
    """Drop clean page cache (FUSE files' pages included; tmpfs keeps its own)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1")


def read_file(path: Path, buffer: memoryview) -> int:
    """Read ``path`` whole into ``buffer`` (over and over); the byte count."""
    total = 0
    with open(path, "rb", buffering=0) as file:
        while got := file.readinto(buffer):
            total += got
    return total


def timed_read(path: Path, buffer: memoryview) -> float:
    """GB/s of one whole read of ``path``."""
    start = time.perf_counter()
    size = read_file(path, buffer)
    return size / (time.perf_counter() - start) / 1e9


def file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(BUFFER):
            digest.update(chunk)
    return digest.hexdigest()


def read_small(path: Path) -> None:
    """Read a small file whole; its size must be right."""
    with open(path, "rb") as file:
        got = len(file.read())
    if got != SMALL_SIZE:
        raise AssertionError(f"{path}: {got} bytes, want {SMALL_SIZE}")


def small_files_rate(folder: Path, names: list[str], threads: int = 1) -> float:
    """Files/s listing the small files' folders (as a data loader does) and reading every
    file whole, on ``threads`` threads."""
    start = time.perf_counter()
    for sub in sorted({str(Path(name).parent) for name in names}):
        os.listdir(folder / sub)
    paths = [folder / name for name in names]
    if threads == 1:
        for path in paths:
            read_small(path)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(read_small, paths))
    return len(names) / (time.perf_counter() - start)


def stat_rate(folder: Path, names: list[str]) -> float:
    """Stats/s of every small file on ``THREADS`` threads."""

    def one(name: str) -> None:
        if os.stat(folder / name).st_size != SMALL_SIZE:
            raise AssertionError(f"{folder / name}: size is not {SMALL_SIZE}")

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, names))
    return len(names) / (time.perf_counter() - start)


def random_reads(path: Path, source: Path) -> tuple[float, float]:
    """MB/s and median ms of ``RANDOM_COUNT`` 1 MiB preads at random aligned offsets;
    the bytes of a few are compared with ``source``."""
    size = path.stat().st_size
    rng = random.Random(7)
    offsets = [
        rng.randrange(0, max(1, size - RANDOM_READ + 1), RANDOM_ALIGN) for _ in range(RANDOM_COUNT)
    ]
    buffer = bytearray(RANDOM_READ)
    latencies: list[float] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        for offset in offsets:
            began = time.perf_counter()
            os.preadv(fd, [buffer], offset)
            latencies.append(time.perf_counter() - began)
        seconds = time.perf_counter() - start
        with open(source, "rb") as want:
            for offset in offsets[:8]:
                got = os.pread(fd, RANDOM_READ, offset)
                want.seek(offset)
                if got != want.read(RANDOM_READ):
                    raise AssertionError(f"{path} at {offset}: other bytes than {source}")
    finally:
        os.close(fd)
    return RANDOM_COUNT * RANDOM_READ / seconds / 1e6, statistics.median(latencies) * 1e3


def client_read(master: str, path: str, runs: int) -> list[float]:
    """GB/s of sequential 8 MiB ``pread_into`` calls with the client alone (no FUSE)."""
    from cachecluster.client.client import AsyncClient

    async def run() -> list[float]:
        figures: list[float] = []
        async with AsyncClient(master) as client:
            buffer = bytearray(8 << 20)
            for _ in range(runs):
                file = await client.open(path)
                start, offset = time.perf_counter(), 0
                while got := await file.pread_into(offset, buffer):
                    offset += got
                figures.append(offset / (time.perf_counter() - start) / 1e9)
                await file.close()
        return figures

    return asyncio.run(run())


def listing_seconds(folder: Path) -> float:
    """Seconds of ``ls -lR`` of ``folder``."""
    start = time.perf_counter()
    subprocess.run(["ls", "-lR", str(folder)], capture_output=True, check=True)
    return time.perf_counter() - start


def summary(label: str, values: list[float], unit: str = "GB/s") -> str:
    return (
        f"{label:<44} median {statistics.median(values):8.2f} {unit}"
        f"  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )


def wait_mounted(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    from cachecluster.fuse.mount import is_mounted

    deadline = time.monotonic() + timeout
    while not is_mounted(path):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path}: the passthrough mount did not come up")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--passthrough", nargs=2, metavar=("MOUNT", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--direct-io", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.passthrough:
        serve_passthrough(args.passthrough[0], args.passthrough[1], args.direct_io)
        return 0

    from cachecluster.common.mountinfo import mount_at
    from cachecluster.fuse.mount import MountOptions, detach, mount_background, unmount
    from cachecluster.local.cluster import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bench-fuse-", dir="/dev/shm"))
    processes: list[subprocess.Popen[bytes]] = []
    pids: list[int] = []
    mounts: list[Path] = []
    cluster: LocalCluster | None = None
    try:
        ufs = work / "ufs"
        ufs.mkdir()
        big = ufs / FILE_NAME
        with open(big, "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1 << 20))
        names = [f"small/{i // FOLDER_FILES:02d}/{i:05d}.bin" for i in range(args.small_files)]
        for name in names:
            (ufs / name).parent.mkdir(parents=True, exist_ok=True)
            (ufs / name).write_bytes(os.urandom(SMALL_SIZE))
        want = file_sha(big)
        cluster = LocalCluster(work / "home", workers=2, replicas=1)
        cluster.start()
        cluster.apply_dataset("bench", "data", f"local://{ufs}")
        os.environ["CACHECLUSTER_HOME"] = str(work / "home")

        def ours(label: str, direct_io: bool) -> Path:
            assert cluster is not None
            path = work / label
            mounts.append(path)
            pids.append(
                mount_background(
                    MountOptions(
                        mountpoint=str(path),
                        prefix="bench/data",
                        master=cluster.master_address,
                        direct_io=direct_io,
                        log_file=str(work / f"{label}.log"),
                    )
                )
            )
            return path

        def baseline(label: str, direct_io: bool) -> Path:
            path = work / label
            path.mkdir()
            mounts.append(path)
            command = [
                sys.executable,
                "-m",
                "bench.bench_fuse",
                "--passthrough",
                str(path),
                str(big),
            ]
            if direct_io:
                command.append("--direct-io")
            process = subprocess.Popen(command, start_new_session=True)
            processes.append(process)
            wait_mounted(path, process)
            return path

        buffered, direct = ours("ours", False), ours("ours-direct", True)
        base_buffered, base_direct = baseline("base", False), baseline("base-direct", True)
        buffer = memoryview(bytearray(BUFFER))

        drop_caches()
        cold = timed_read(buffered / FILE_NAME, buffer)
        for root in (buffered, direct, base_buffered, base_direct):
            assert file_sha(root / FILE_NAME) == want, f"{root}: bytes differ"

        paths: dict[str, Path] = {
            "tmpfs": big,
            "passthrough baseline, buffered": base_buffered / FILE_NAME,
            "cachecluster mount, buffered": buffered / FILE_NAME,
            "passthrough baseline, direct_io": base_direct / FILE_NAME,
            "cachecluster mount, direct_io": direct / FILE_NAME,
        }
        figures: dict[str, list[float]] = {label: [] for label in paths}
        figures["cachecluster mount, keep_cache re-read"] = []
        figures["passthrough baseline, keep_cache re-read"] = []
        rereads = {
            "cachecluster mount, buffered": "cachecluster mount, keep_cache re-read",
            "passthrough baseline, buffered": "passthrough baseline, keep_cache re-read",
        }
        for _ in range(args.runs):
            for label, path in paths.items():
                drop_caches()
                figures[label].append(timed_read(path, buffer))
                if label in rereads:  # again, from the pages the read just left
                    figures[rereads[label]].append(timed_read(path, buffer))

        figures["client alone (AsyncClient.pread_into 8 MiB, no FUSE)"] = client_read(
            cluster.master_address, f"bench/data/{FILE_NAME}", args.runs
        )
        drop_caches()
        small_cold = small_files_rate(buffered, names)
        time.sleep(6)  # past the metadata TTL: ls -l asks the master again
        listing = [listing_seconds(buffered / "small") for _ in range(3)]
        small: dict[str, list[float]] = {
            "tmpfs": [],
            "cachecluster mount": [],
            f"cachecluster mount, {THREADS} threads": [],
        }
        randoms: list[tuple[float, float]] = []
        fresh_reads: list[float] = []
        fresh_stats: list[float] = []
        for _ in range(max(1, args.runs // 2)):
            drop_caches()
            small["cachecluster mount"].append(small_files_rate(buffered, names))
            drop_caches()
            small[f"cachecluster mount, {THREADS} threads"].append(
                small_files_rate(buffered, names, THREADS)
            )
            small["tmpfs"].append(small_files_rate(ufs, names))
            drop_caches()
            randoms.append(random_reads(buffered / FILE_NAME, big))
        for _ in range(max(1, args.runs // 2)):
            unmount(buffered)
            buffered = ours("ours", False)
            drop_caches()
            fresh_reads.append(timed_read(buffered / FILE_NAME, buffer))
            unmount(buffered)
            buffered = ours("ours", False)
            drop_caches()
            fresh_stats.append(stat_rate(buffered, names))

        print(f"file {args.size_mib} MiB, {args.runs} runs; load {os.getloadavg()[0]:.2f}")
        print(f"{'cold first read through the mount (buffered)':<44} {cold:8.2f} GB/s")
        for label, values in figures.items():
            print(summary(label, values))
        for mode in ("buffered", "direct_io"):
            ratio = statistics.median(figures[f"cachecluster mount, {mode}"]) / statistics.median(
                figures[f"passthrough baseline, {mode}"]
            )
            print(f"ratio mount / passthrough, {mode}: {ratio:.2f}x (target >= 0.8x)")
        print(
            f"{args.small_files} files of 64 KiB, cold first pass: "
            f"{small_cold:.0f} files/s through the mount"
        )
        print(summary(f"ls -lR of {args.small_files} files through the mount", listing, "s"))
        for label, values in small.items():
            print(summary(f"small files warm, {label}", values, "files/s"))
        print(summary("1 MiB random reads, mount", [mbs for mbs, _ in randoms], "MB/s"))
        print(summary("1 MiB random reads, mount, p50", [ms for _, ms in randoms], "ms"))
        print(summary("fresh mount, first read of the big file", fresh_reads))
        print(summary(f"fresh mount, stat of every small file, {THREADS} thr", fresh_stats, "/s"))
        return 0
    finally:
        for pid in [p.pid for p in processes] + pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        time.sleep(0.5)
        for path in mounts:
            if mount_at(path) is not None:
                detach(path)
        for process in processes:
            process.wait(5)
        if cluster is not None:
            cluster.stop(purge=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
