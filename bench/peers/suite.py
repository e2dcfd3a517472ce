"""``python -m bench``: every system, every workload, on the same S3 objects, in one run.

Run: ``.venv/bin/python -m bench [--peer-cache disk|tmpfs] [--size-mib 1024]
[--small-files 10000] [--model-mib 2048] [--runs 3] [--systems a,b]
[--workloads x,y] [--out DIR]`` (as root, so that it can drop the page cache).
It starts SeaweedFS (S3) with its data on disk, uploads the seeded objects
once, then for each system in turn: start it, do ``--runs`` rounds of the
workloads (each round begins with an emptied system cache), stop it. A system
that cannot run here is recorded as missing with the reason; one that fails
records its error in the cell and the suite goes on. Writes
``<out>/<stamp>.json``, ``.md`` and PNG plots.

Where the caches live: ``--peer-cache disk`` (the default) keeps the peers'
caches (fsspec, rclone, s3fs-fuse) where their users get them, on the root
disk: a folder under the temp dir (fsspec's own default; ``--peer-cache-dir``
picks another disk folder). ``--peer-cache tmpfs`` puts them on /dev/shm, next
to cachecluster's MEM tiers: everybody in RAM. cachecluster keeps its MEM tier
(tmpfs) in both. The suite checks with ``df`` that each folder is on the
medium claimed, refuses to run when it is not, and names each system's medium
in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from bench.peers import report, workloads
from bench.peers.base import System, UfsEnv
from bench.peers.cache_medium import Medium, WrongMedium, medium_of, require
from bench.peers.cachecluster_peer import ClusterClient, ClusterFuse
from bench.peers.ceiling import TmpfsCopy
from bench.peers.ceiling_cold import GetStore
from bench.peers.ceiling_fuse import Pyfuse3Minimal
from bench.peers.cpu import CpuMeter
from bench.peers.data import Layout, MiB, scratch_dir, upload
from bench.peers.direct import Boto3Get, Boto3Ranged
from bench.peers.fsspec_cache import FsspecBlockcache, FsspecSimplecache
from bench.peers.machine import describe_machine
from bench.peers.processes import can_drop_caches, detach_all_under, drop_page_cache
from bench.peers.rclone import RcloneMount
from bench.peers.s3fs_fuse import S3fsFuse
from bench.peers.workloads import BY_ID, WORKLOADS, Sample

SYSTEMS: tuple[type[System], ...] = (
    Boto3Get,
    Boto3Ranged,
    FsspecBlockcache,
    FsspecSimplecache,
    RcloneMount,
    S3fsFuse,
    ClusterClient,
    ClusterFuse,
    TmpfsCopy,
    Pyfuse3Minimal,
    GetStore,
)
BASELINE = Boto3Get.name
BUCKET = "bench"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results"
SHM = Path("/dev/shm")
PEER_CACHE = ("disk", "tmpfs")


def _names(value: str, known: list[str], what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--{what} {value!r}: unknown {', '.join(unknown) or 'empty'}; "
            f"known: {', '.join(known)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    systems = [cls.name for cls in SYSTEMS]
    loads = [w.id for w in WORKLOADS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--size-mib", type=int, default=1024, help="the big file (MiB)")
    parser.add_argument("--small-files", type=int, default=10_000, help="files of 64 KiB")
    parser.add_argument("--model-mib", type=int, default=2048, help="the model's shards (MiB)")
    parser.add_argument("--runs", type=int, default=3, help="rounds per system (>= 3 for medians)")
    parser.add_argument("--random-reads", type=int, default=128, help="1 MiB reads per round")
    parser.add_argument("--systems", type=lambda v: _names(v, systems, "systems"), default=systems)
    parser.add_argument("--workloads", type=lambda v: _names(v, loads, "workloads"), default=loads)
    parser.add_argument(
        "--pass-seconds",
        type=float,
        default=5.0,
        help="time cap of one pass over the small files (read or stat); files/s over what it did",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument("--stamp", default=None, help="file name stem (default: UTC date-time)")
    parser.add_argument(
        "--peer-cache",
        choices=PEER_CACHE,
        default="disk",
        help="where the peers keep their caches: on the root disk, where their defaults put "
        "them (default), or on tmpfs like cachecluster's MEM tier",
    )
    parser.add_argument(
        "--peer-cache-dir",
        type=Path,
        default=None,
        help="with --peer-cache disk: the disk folder for the peers' caches "
        "(default: the temp dir, where fsspec puts its cache)",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="mounts, logs, cachecluster's MEM tiers and, with --peer-cache tmpfs, the "
        "peers' caches (default: /dev/shm)",
    )
    parser.add_argument(
        "--s3-dir", type=Path, default=None, help="SeaweedFS data (default: the temp dir, on disk)"
    )
    parser.add_argument(
        "--no-drop-caches",
        dest="drop_caches",
        action="store_false",
        help="keep the page cache (quick checks only: cold figures are then not cold)",
    )
    args = parser.parse_args(argv)
    for flag in ("size_mib", "small_files", "model_mib", "runs", "random_reads", "pass_seconds"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    if args.peer_cache_dir is not None and args.peer_cache != "disk":
        parser.error("--peer-cache-dir goes with --peer-cache disk")
    return args


def command_line(argv: list[str], args: argparse.Namespace) -> str:
    """The command as run, naming ``--peer-cache`` also when it was left at its default."""
    named = any(a == "--peer-cache" or a.startswith("--peer-cache=") for a in argv)
    extra = [] if named else ["--peer-cache", args.peer_cache]
    return " ".join(["python -m bench", *extra, *argv])


class CacheFolders:
    """The scratch folder (mounts, logs, MEM tiers) and the peers' cache folder, checked.

    Made on entry, removed on exit (also on errors and Ctrl-C; any mount left under
    the scratch folder is detached first). :class:`WrongMedium` when a folder is not
    on the medium ``--peer-cache`` claims, with everything made removed again.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.made: list[Path] = []
        self.workdir = Path()
        self.peer_cache = Path()
        self.peer_medium: Medium | None = None

    def __enter__(self) -> CacheFolders:
        args = self.args
        if args.peer_cache == "tmpfs" and args.scratch is None and not SHM.is_dir():
            raise WrongMedium(f"--peer-cache tmpfs: {SHM} is missing (no tmpfs for the caches)")
        try:
            self.workdir = scratch_dir("cc-peers-", args.scratch)
            self.made.append(self.workdir)
            if args.peer_cache == "tmpfs":
                self.peer_cache = self.workdir
                self.peer_medium = require(
                    self.workdir, "tmpfs", "--peer-cache tmpfs (the --scratch folder)"
                )
            else:
                self.peer_cache = scratch_dir("cc-peers-cache-", args.peer_cache_dir, tmpfs=False)
                self.made.append(self.peer_cache)
                self.peer_medium = require(
                    self.peer_cache, "disk", "--peer-cache disk (pick --peer-cache-dir)"
                )
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Detach mounts left under the scratch folder, remove every folder made."""
        for folder in self.made:
            detach_all_under(folder)  # never walk into a mount a failed stop left
            shutil.rmtree(folder, ignore_errors=True)
        self.made.clear()


WARMED_BY = {
    "model_cold": ("model_load",),
    "seq_cold": ("seq_warm", "random_1m", "concurrent_4"),
    "small_cold": ("small_warm",),
}
"""The workloads that read warm what each cold read leaves in a system's cache."""


class MeasurementTimeout(Exception):
    """A measurement ran past ``--timeout``."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`MeasurementTimeout` in the main thread after ``seconds``."""

    def ring(signum: int, frame: FrameType | None) -> None:
        raise MeasurementTimeout(f"no answer within {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a table cell."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:240]


class SystemRun:
    """The rounds of one system, recording every cell."""

    def __init__(self, system: System, layout: Layout, args: argparse.Namespace) -> None:
        self.system, self.layout, self.args = system, layout, args
        self.small_read = layout.small_files
        """Small files the last cold pass read (the warm pass reads the same)."""
        self.meter = CpuMeter()
        self.record: dict[str, Any] = {
            "label": system.label,
            "cold_how": system.cold_how,
            "status": "ok",
            "reason": None,
            "workloads": {
                w: {
                    "values": [],
                    "items": [],
                    "latencies_ms": [],
                    "cpu_s3": [],
                    "cpu_rest": [],
                    "error": None,
                    "skipped": None,
                }
                for w in args.workloads
            },
        }

    def measure(self, workload: str, body: Callable[[], Sample]) -> None:
        """Time ``body`` after dropping the page cache; record its figure or its error.

        A cold read left out by ``--workloads`` still runs, untimed, when a selected
        workload reads warm what it would have cached (:data:`WARMED_BY`): a warm
        figure is never a cold read in disguise.
        """
        if workload not in self.args.workloads:
            self.warm_up(workload, body)
            return
        cell = self.record["workloads"][workload]
        if workload in self.system.skips:
            cell["skipped"] = self.system.skips[workload]
            return
        if self.args.drop_caches:
            drop_page_cache()
        before = self.meter.snapshot()
        try:
            with deadline(self.args.timeout):
                sample = body()
        except (MeasurementTimeout, Exception) as exc:
            cell["error"] = cell["error"] or one_line(exc)
            print(f"  {workload}: FAILED {one_line(exc)}", flush=True)
            return
        cpu = self.meter.spent(before, self.meter.snapshot())
        cell["values"].append(sample.value)
        cell["cpu_s3"].append(cpu.s3)
        cell["cpu_rest"].append(cpu.rest)
        cell["latencies_ms"].extend(sample.latencies_ms)
        if sample.items is not None:
            cell["items"].append(sample.items)
        unit = BY_ID[workload].unit
        print(f"  {workload}: {sample.value:.3f} {unit}", flush=True)

    def warm_up(self, cold: str, body: Callable[[], Sample]) -> None:
        """Run the unselected cold read ``cold`` untimed if a selected workload needs it."""
        needs = [w for w in WARMED_BY.get(cold, ()) if w in self.args.workloads]
        if cold in self.system.skips or all(w in self.system.skips for w in needs):
            return
        try:
            with deadline(self.args.timeout):
                body()
        except (MeasurementTimeout, Exception) as exc:  # the warm figures will say it too
            print(f"  {cold} (warm-up for {', '.join(needs)}): FAILED {one_line(exc)}", flush=True)

    def round(self, index: int) -> None:
        """One round: cold first, then warm, then fresh mounts."""
        system, layout, args = self.system, self.layout, self.args
        if index > 0:  # a system just started is cold already
            with deadline(args.timeout):
                system.reset_cold()
        self.measure("model_cold", lambda: workloads.model_load(system, layout))
        with deadline(args.timeout):
            system.fresh()
        self.measure("model_load", lambda: workloads.model_load(system, layout))
        self.measure("seq_cold", lambda: workloads.sequential(system, layout))
        self.measure("small_cold", lambda: self.small_pass(layout.small_files, False))
        self.measure("seq_warm", lambda: workloads.sequential(system, layout))
        self.measure("small_warm", lambda: self.small_pass(self.small_read, index == 0))
        seed = layout.seed + index
        reads = args.random_reads
        self.measure("random_1m", lambda: workloads.random_reads(system, layout, reads, seed))
        self.measure("concurrent_4", lambda: workloads.concurrent(system, layout))
        for workload, body in (
            ("ls_lR", lambda: workloads.listing(system, layout)),
            ("stat", lambda: workloads.stats(system, layout, args.pass_seconds)),
        ):
            if workload in args.workloads and workload not in system.skips:
                with deadline(args.timeout):
                    system.fresh()
            self.measure(workload, body)

    def small_pass(self, limit: int, check: bool) -> Sample:
        """One pass over the first ``limit`` small files; remembers how many it read."""
        sample, self.small_read = workloads.small_files(
            self.system, self.layout, limit, self.args.pass_seconds, check
        )
        return sample

    def describe_cache(self, env: UfsEnv) -> None:
        """Record where the system's cache lives and what medium that is (``df``)."""
        parent = self.system.cache_parent(env)
        default = self.system.default_cache_dir()
        cache: dict[str, Any] = {"medium": None, "default": self.system.default_cache or None}
        try:
            if parent is not None:
                cache["medium"] = medium_of(parent).as_json()
            if default is not None:
                cache["default_medium"] = medium_of(default).as_json()
        except (WrongMedium, OSError, subprocess.SubprocessError) as exc:
            cache["error"] = one_line(exc)
        self.record["cache"] = cache

    def run(self, env: UfsEnv) -> dict[str, Any]:
        """Start, do every round, stop; the record."""
        self.meter = CpuMeter(env.s3_pid)
        self.describe_cache(env)
        reason = self.system.available()
        if reason is not None:
            self.record.update(status="missing", reason=reason)
            print(f"== {self.system.name}: MISSING ({reason})", flush=True)
            return self.record
        medium = self.record["cache"]["medium"]
        where = f"cache on {medium['describe']}" if medium else "no cache"
        print(f"== {self.system.name} ({where})", flush=True)
        started = time.perf_counter()
        try:
            with deadline(self.args.timeout):
                self.system.start(env)
            for index in range(self.args.runs):
                print(f" round {index + 1}/{self.args.runs}", flush=True)
                self.round(index)
        except (MeasurementTimeout, Exception) as exc:
            self.record.update(status="failed", reason=one_line(exc))
            print(f"  FAILED: {one_line(exc)}", flush=True)
            traceback.print_exc()
        finally:
            self.system.stop()
            self.record["seconds"] = time.perf_counter() - started
            print(f"  {self.system.name}: {self.record['seconds']:.0f}s", flush=True)
        return self.record


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_suite(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Start S3, upload the objects, run every selected system; the whole result document."""
    from tests.servers.seaweed import SeaweedS3

    layout = Layout(args.size_mib * MiB, args.small_files, args.model_mib * MiB)
    started = time.time()
    load_before = os.getloadavg()
    systems: dict[str, Any] = {}
    s3: SeaweedS3 | None = None
    with CacheFolders(args) as folders:
        assert folders.peer_medium is not None
        where = f"{folders.peer_medium.describe()} under {folders.peer_cache}"
        print(f"peer caches on {where}", flush=True)
        if args.s3_dir is not None:
            args.s3_dir.mkdir(parents=True, exist_ok=True)
        s3_dir = Path(tempfile.mkdtemp(prefix="cc-peers-s3-", dir=args.s3_dir))
        try:
            s3 = SeaweedS3.start(s3_dir)
            s3.create_bucket(BUCKET)
            began = time.perf_counter()
            upload(s3.client(), BUCKET, layout)
            upload_s = time.perf_counter() - began
            print(f"uploaded {layout.total_bytes() / 2**30:.2f} GiB in {upload_s:.1f}s", flush=True)
            env = UfsEnv(
                s3.endpoint, s3.access_key, s3.secret_key, s3.region, BUCKET,
                folders.workdir, folders.peer_cache, layout, s3.process.pid,
            )  # fmt: skip
            by_name = {cls.name: cls for cls in SYSTEMS}
            for name in args.systems:
                systems[name] = SystemRun(by_name[name](), layout, args).run(env)
        finally:
            folders.remove()  # before S3 stops: a mount left behind may still talk to it
            if s3 is not None:
                s3.stop()
            shutil.rmtree(s3_dir, ignore_errors=True)
    return {
        "stamp": args.stamp,
        "command": command,
        "peer_cache": args.peer_cache,
        "machine": describe_machine(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "seconds": time.time() - started,
        "upload_seconds": upload_s,
        "page_cache_dropped": args.drop_caches and can_drop_caches(),
        "baseline": BASELINE,
        "layout": {
            "big_file_bytes": layout.big_size,
            "small_files": layout.small_files,
            "small_file_bytes": 64 << 10,
            "model_bytes": layout.model_size,
            "model_shards": len(layout.model_keys()),
            "seed": layout.seed,
        },
        "runs": args.runs,
        "random_reads": args.random_reads,
        "pass_seconds": args.pass_seconds,
        "ufs": "SeaweedFS S3 on 127.0.0.1, data on disk (page cache dropped before each figure)",
        "workloads": [
            {"id": w.id, "title": w.title, "unit": w.unit, "better": w.better, "cache": w.cache}
            for w in WORKLOADS
            if w.id in args.workloads
        ],
        "systems": systems,
        "not_selected": [cls.name for cls in SYSTEMS if cls.name not in args.systems],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the suite and write the JSON, Markdown and PNGs; 0 unless it was interrupted (130)
    or a cache folder is not on the medium claimed (2)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.stamp = args.stamp or time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    # SIGINT too, even when inherited as ignored (a background job of a script).
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        document = run_suite(args, command_line(argv, args))
    except WrongMedium as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
    for path in report.write_all(document, args.out):
        print(f"wrote {path}")
    return 0
