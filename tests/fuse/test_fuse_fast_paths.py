"""The mount's fast paths on a real mount: lookups from folder listings, many readers at once.

Bytes are compared by sha256 with what the UFS holds; master calls are
counted from the master's own metrics (``cachecluster_master_rpcs_total``).
"""

from __future__ import annotations

import mmap
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cachecluster.fuse.ops import LIST_AFTER_MISSES
from tests.fuse.conftest import (
    BLOCK_SIZE,
    FILES_A,
    FuseCluster,
    Mounter,
    generate,
    sha256,
    wait_until,
)
from tests.metrics import metrics_text

FOLDERS = 3
PER_FOLDER = 40
SMALL = generate(
    {f"f{d}/{i:03d}.bin": 1000 + 97 * i for d in range(FOLDERS) for i in range(PER_FOLDER)},
    seed=6,
)


def master_calls(fuse_cluster: FuseCluster, method: str) -> int:
    """How many ``method`` calls the master has answered (every status code)."""
    text = metrics_text(fuse_cluster.cluster.master.port("metrics_port"), timeout=10)
    pattern = rf'^cachecluster_master_rpcs_total{{code="[A-Z_]+",method="{method}"}} ([0-9.]+)$'
    return int(sum(float(found) for found in re.findall(pattern, text, re.MULTILINE)))


def test_stat_of_every_file_lists_each_folder_instead_of_a_call_a_file(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    fuse_cluster.apply("tstat", "data", SMALL)
    mount = mounter.mount_dataset(tmp_path / "m", "tstat/data")
    stats_before = master_calls(fuse_cluster, "GetStatus")
    lists_before = master_calls(fuse_cluster, "ListStatus")

    def size(name: str) -> int:
        return os.stat(mount.path / name).st_size

    with ThreadPoolExecutor(8) as pool:
        sizes = dict(zip(SMALL, pool.map(size, SMALL), strict=True))
    assert sizes == {name: len(data) for name, data in SMALL.items()}
    stats = master_calls(fuse_cluster, "GetStatus") - stats_before
    lists = master_calls(fuse_cluster, "ListStatus") - lists_before
    # A few stats a folder (the folder itself and the lookups before it is
    # listed), never one a file; each folder listed about once.
    assert stats <= FOLDERS * (LIST_AFTER_MISSES + 2) + 2, stats
    assert FOLDERS <= lists <= 2 * FOLDERS, lists

    # Every file reads its own bytes, eight readers at once.
    def digest(name: str) -> str:
        return sha256((mount.path / name).read_bytes())

    with ThreadPoolExecutor(8) as pool:
        digests = dict(zip(SMALL, pool.map(digest, SMALL), strict=True))
    assert digests == {name: sha256(data) for name, data in SMALL.items()}


def test_files_appear_vanish_and_change_in_a_listed_folder(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    big_old, big_new = generate({"a": 3 * BLOCK_SIZE + 99, "b": 3 * BLOCK_SIZE + 99}, 9).values()
    folder = fuse_cluster.apply("tlive", "data", {**SMALL, "f0/big.bin": big_old})
    mount = mounter.mount_dataset(tmp_path / "m", "tlive/data")
    names = [name for name in SMALL if name.startswith("f0/")]
    for name in names:  # looked up often enough that the folder gets listed
        assert (mount.path / name).read_bytes() == SMALL[name]
    big = mount.path / "f0/big.bin"
    assert sha256(big.read_bytes()) == sha256(big_old)  # its blocks now mapped by the mount
    new, gone, changed = mount.path / "f0/new.bin", mount.path / names[0], mount.path / names[1]
    assert not new.exists()
    (folder / "f0/new.bin").write_bytes(b"n" * 5000)
    (folder / names[0]).unlink()
    fresh = bytes(reversed(SMALL[names[1]])) + b"tail"  # new size, new bytes
    (folder / names[1]).write_bytes(fresh)
    (folder / "f0/big.bin").write_bytes(big_new)  # same size, other bytes: a new version
    os.utime(folder / "f0/big.bin", (1, 2_000_000_000))
    wait_until(new.exists, 15, "a file added to the UFS appears in the listed folder")
    assert new.read_bytes() == b"n" * 5000
    wait_until(lambda: not gone.exists(), 15, "a file removed from the UFS vanishes")

    def read_changed() -> bytes:
        data = changed.read_bytes()
        assert data in (SMALL[names[1]], fresh)  # either version whole, never a mix
        return data

    wait_until(lambda: read_changed() == fresh, 15, "the changed file is read anew")
    for _ in range(3):  # the new bytes whole, never a mix of the two versions
        assert sha256(read_changed()) == sha256(fresh)

    def big_is_new() -> bool:  # either version whole, never a mix of the two
        digest = sha256(big.read_bytes())
        assert digest in (sha256(big_old), sha256(big_new))
        return digest == sha256(big_new)

    wait_until(big_is_new, 15, "the changed big file is read anew")
    for _ in range(3):
        assert sha256(big.read_bytes()) == sha256(big_new)
    assert sorted(os.listdir(mount.path / "f0")) == sorted(
        [Path(name).name for name in names[1:]] + ["new.bin", "big.bin"]
    )


def test_many_readers_of_big_files_at_once_read_exact_bytes(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    mount = mounter.mount_dataset(tmp_path / "m", "ta/data")
    names = ["big/seven.bin", "big/sub/odd.bin", "block.bin"]

    def whole(name: str) -> str:  # sequential: the kernel's 1 MiB requests, mapped blocks
        return sha256((mount.path / name).read_bytes())

    def scattered(seed: int) -> bool:  # preads across block ends, every size, no page cache
        rng = random.Random(seed)
        name = names[seed % len(names)]
        data = FILES_A[name]
        fd = os.open(mount.path / name, os.O_RDONLY | os.O_DIRECT)
        try:
            for _ in range(30):
                offset = rng.randrange(0, len(data) + 1, 4096)
                length = rng.choice([4096, 65536, 1 << 20, 3 << 20])
                buffer = mmap.mmap(-1, length)  # page-aligned, as O_DIRECT wants
                got = os.preadv(fd, [buffer], offset)
                if buffer[:got] != data[offset : offset + length]:
                    return False
        finally:
            os.close(fd)
        return True

    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(whole, names * 4))
        checks = list(pool.map(scattered, range(16)))
    assert digests == [sha256(FILES_A[name]) for name in names * 4]
    assert all(checks)
