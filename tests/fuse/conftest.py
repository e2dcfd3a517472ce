"""Fixtures of the FUSE tests: a real LocalCluster (with tokens) and real mounts.

Every mount a test makes is removed by its fixture, also when the test
fails: the serving process group gets SIGKILL and ``fusermount3 -u -z``
detaches whatever is left. Mount points live under pytest's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cachecluster.common import auth
from cachecluster.common.mountinfo import mount_at
from cachecluster.local.cluster import LocalCluster
from cachecluster.local.cluster_calls import apply_dataset_async, run_sync

# CI sets CACHECLUSTER_REQUIRE_FUSE=1 (it installs fuse3): there a missing
# FUSE is a failure, not a skip. Elsewhere the FUSE tests skip with the reason.
_MISSING = (
    "pyfuse3 is not installed"
    if importlib.util.find_spec("pyfuse3") is None
    else "needs /dev/fuse and fusermount3"
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None
    else ""
)
if _MISSING:
    if os.environ.get("CACHECLUSTER_REQUIRE_FUSE") == "1":
        raise RuntimeError(f"FUSE tests required but {_MISSING}")
    pytest.skip(_MISSING, allow_module_level=True)

BLOCK_SIZE = 1 << 20
METADATA_TTL = 1.0


def generate(sizes: Mapping[str, int], seed: int) -> dict[str, bytes]:
    """Seeded random contents for each file name."""
    rng = random.Random(seed)
    return {name: rng.randbytes(size) for name, size in sizes.items()}


FILES_A = generate(
    {
        "empty.bin": 0,
        "one.bin": 1,
        "block.bin": BLOCK_SIZE,
        "big/seven.bin": 7 * BLOCK_SIZE + 4321,
        "big/sub/odd.bin": 2 * BLOCK_SIZE + 777,
    },
    seed=1,
)
FILES_B = generate({"b-only.txt": 1000, "nested/x.bin": BLOCK_SIZE + 5}, seed=2)


def sha256(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def write_tree(root: Path, contents: Mapping[str, bytes]) -> None:
    """Write ``contents`` as files under ``root``."""
    for name, data in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@dataclass
class FuseCluster:
    """A cluster with auth: ``ta/data`` (FILES_A), ``tb/data`` (FILES_B), ``tb/ref`` -> ta/data."""

    cluster: LocalCluster
    root: Path

    def apply(self, namespace: str, name: str, contents: Mapping[str, bytes]) -> Path:
        """Write ``contents`` to a folder and make it dataset ``namespace/name``."""
        folder = self.root / "ufs" / namespace / name
        write_tree(folder, contents)
        self.cluster.apply_dataset(namespace, name, f"local://{folder}")
        return folder


def spec_apply(cluster: LocalCluster, namespace: str, name: str, spec: dict[str, object]) -> None:
    """Apply a Fluid Dataset spec as the admin."""
    run_sync(
        apply_dataset_async(
            cluster.master_address,
            namespace,
            name,
            spec,
            token=cluster.token(auth.ADMIN_NAMESPACE),
        )
    )


def start_cluster(root: Path, workers: int = 2) -> LocalCluster:
    """A started cluster with auth, 1 MiB blocks, 2 replicas, a quick heartbeat."""
    cluster = LocalCluster(
        root / "home",
        workers=workers,
        block_size=BLOCK_SIZE,
        replicas=2,
        master_args=[
            "--heartbeat-interval",
            "0.5",
            "--missed-heartbeats",
            "4",
            "--metadata-sync-interval",
            str(METADATA_TTL),
        ],
        auth=True,
    )
    return cluster.start()


@pytest.fixture(scope="session")
def fuse_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuseCluster]:
    """One cluster for the read-only tests of the session."""
    root = tmp_path_factory.mktemp("fuse-cluster")
    cluster = start_cluster(root)
    try:
        env = FuseCluster(cluster, root)
        env.apply("ta", "data", FILES_A)
        env.apply("tb", "data", FILES_B)
        spec_apply(
            cluster, "tb", "ref", {"mounts": [{"mountPoint": "dataset://ta/data", "name": "r"}]}
        )
        yield env
    finally:
        cluster.stop(purge=True)


@dataclass
class Mount:
    """One background mount made with the CLI."""

    path: Path
    pid: int
    log_file: Path

    def log(self) -> str:
        """The mount's log (for failure messages)."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def mount_entry(path: Path) -> bool:
    """True when something is mounted at ``path``."""
    return mount_at(path) is not None


def cleanup(path: Path, pid: int) -> None:
    """Kill the serving process group and detach the mount; quiet when already gone."""
    if pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    while mount_entry(path):
        done = subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
            break


@dataclass
class Mounter:
    """Runs ``cachecluster mount`` for a test and removes every mount it made afterwards."""

    cluster: LocalCluster
    home: Path
    made: list[Mount] = field(default_factory=list)

    def env(self, token: str | None) -> dict[str, str]:
        env = dict(os.environ, CACHECLUSTER_HOME=str(self.home))
        env.pop("CACHECLUSTER_TOKEN", None)
        if token:
            env["CACHECLUSTER_TOKEN"] = token
        return env

    def cli(
        self, *args: str, token: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cachecluster ARGS`` with this cluster's master and home."""
        done = subprocess.run(
            [sys.executable, "-m", "cachecluster", *args],
            env=self.env(token),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            pytest.fail(f"cachecluster {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def mount(self, path: Path, *view: str, token: str | None = None) -> Mount:
        """Mount in the background with ``view`` (``-n NS`` / ``--dataset NS/NAME`` / nothing)."""
        log_file = path.parent / f"{path.name}.log"
        done = self.cli(
            "mount",
            str(path),
            *view,
            "--master",
            self.cluster.master_address,
            "--metadata-ttl",
            str(METADATA_TTL),
            "--log-file",
            str(log_file),
            token=token,
            check=False,
        )
        pid = int(done.stdout.rsplit("(pid ", 1)[1].rstrip(")\n")) if "(pid " in done.stdout else 0
        mount = Mount(path, pid, log_file)
        self.made.append(mount)
        if done.returncode != 0:
            pytest.fail(f"mount {path}: {done.returncode}\n{done.stderr}\n{mount.log()}")
        return mount

    def mount_dataset(self, path: Path, dataset: str) -> Mount:
        """Mount one dataset (``NS/NAME``) with its namespace's token."""
        namespace = dataset.split("/")[0]
        return self.mount(path, "--dataset", dataset, token=self.cluster.token(namespace))

    def close(self) -> None:
        for mount in self.made:
            cleanup(mount.path, mount.pid)


@pytest.fixture
def mounter(fuse_cluster: FuseCluster, tmp_path: Path) -> Iterator[Mounter]:
    """Mounts on the session cluster, all removed at the end of the test."""
    made = Mounter(fuse_cluster.cluster, tmp_path / "home")
    try:
        yield made
    finally:
        made.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition``; the seconds it took, or fail with ``what``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - start
