"""The mount's reads from block files the client holds, on a real mount: exact bytes always.

Small files are read whole at open from the block files the client was
passed (asked for in batches ahead of a reader going through a folder); big
files are copied from held block files, on a fresh mount from blocks asked
for in batches ahead of the reader. Every read is compared with the UFS's
bytes, also while files change or vanish in the UFS under the held blocks.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cachecluster.fuse.ops import OPEN_PREFETCH
from tests.fuse.conftest import (
    BLOCK_SIZE,
    FuseCluster,
    Mounter,
    generate,
    sha256,
    wait_until,
)

FOLDERS = 2
PER_FOLDER = 80
SIZES = [1, 4095, 4096, 65536, 100_000, OPEN_PREFETCH - 1, OPEN_PREFETCH]
SMALL = generate(
    {
        f"d{d}/{i:03d}.bin": SIZES[i % len(SIZES)] if i % 3 == 0 else 1000 + 613 * i
        for d in range(FOLDERS)
        for i in range(PER_FOLDER)
    },
    seed=11,
)
BIG = generate({"model/shard.bin": 40 * BLOCK_SIZE + 12345}, seed=12)


def read_all(root: Path, names: list[str]) -> dict[str, str]:
    """sha256 of each file read whole, eight readers at once, in folder order."""

    def digest(name: str) -> str:
        return sha256((root / name).read_bytes())

    with ThreadPoolExecutor(8) as pool:
        return dict(zip(names, pool.map(digest, names), strict=True))


def test_small_files_read_again_from_held_block_files_are_exact(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    fuse_cluster.apply("theld", "data", SMALL)
    mount = mounter.mount_dataset(tmp_path / "m", "theld/data")
    names = sorted(SMALL)
    want = {name: sha256(data) for name, data in SMALL.items()}
    for _ in range(3):  # first fetched, then from the files held (asked for ahead)
        assert read_all(mount.path, names) == want
    # Parts of files at any offset: slices of the bytes read at open.
    rng = random.Random(5)
    for name in rng.sample(names, 40):
        data = SMALL[name]
        fd = os.open(mount.path / name, os.O_RDONLY)
        try:
            for _ in range(5):
                offset = rng.randrange(0, len(data) + 2)
                length = rng.choice([1, 100, 4096, 70_000])
                assert os.pread(fd, length, offset) == data[offset : offset + length]
        finally:
            os.close(fd)


def test_small_files_changed_or_removed_while_held_are_never_read_old(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    folder = fuse_cluster.apply("tchg", "data", SMALL)
    mount = mounter.mount_dataset(tmp_path / "m", "tchg/data")
    names = sorted(name for name in SMALL if name.startswith("d0/"))
    for _ in range(2):  # their block files now held by the mount's client
        assert read_all(mount.path, names) == {name: sha256(SMALL[name]) for name in names}
    same_size, resized, removed = names[4], names[7], names[10]
    opened = os.open(mount.path / same_size, os.O_RDONLY)  # open before the change
    new_same = bytes(b ^ 0xFF for b in SMALL[same_size])  # same size, other bytes
    new_resized = SMALL[resized][::-1] + b"grown"
    (folder / same_size).write_bytes(new_same)
    os.utime(folder / same_size, (1, 2_000_000_000))  # the same size: a new mtime too
    (folder / resized).write_bytes(new_resized)
    (folder / removed).unlink()
    try:  # a file open already reads the version it was opened at, whole
        assert os.pread(opened, len(new_same) + 10, 0) in (SMALL[same_size], new_same)
    finally:
        os.close(opened)

    def reads(name: str, old: bytes, new: bytes) -> bool:
        try:
            data = (mount.path / name).read_bytes()
        except OSError:  # changed between its stat and its read (the old version is gone)
            return False
        assert data in (old, new), name  # one version whole, never a mix
        return data == new

    wait_until(lambda: reads(same_size, SMALL[same_size], new_same), 15, "same-size change")
    wait_until(lambda: reads(resized, SMALL[resized], new_resized), 15, "resized file")

    def gone() -> bool:
        try:
            data = (mount.path / removed).read_bytes()
        except OSError:  # ENOENT; or EIO when its stat was still cached but its bytes gone
            return True
        assert data == SMALL[removed]  # until the listing is renewed: the old file, whole
        return False

    wait_until(gone, 15, "a removed file vanishes")
    for _ in range(3):  # from now on only the new bytes, also with every block held again
        assert read_all(mount.path, [same_size, resized]) == {
            same_size: sha256(new_same),
            resized: sha256(new_resized),
        }
    untouched = [name for name in names if name not in (same_size, resized, removed)]
    assert read_all(mount.path, untouched) == {name: sha256(SMALL[name]) for name in untouched}


def test_big_file_on_fresh_mounts_is_exact_from_blocks_asked_ahead(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    folder = fuse_cluster.apply("tbig", "data", BIG)
    name = "model/shard.bin"
    want = sha256(BIG[name])
    first = mounter.mount_dataset(tmp_path / "m1", "tbig/data")
    assert sha256((first.path / name).read_bytes()) == want  # cold: the workers fetch it
    # Fresh mounts over the warm cluster: blocks asked for in batches, copied from.
    for index in range(2):
        mount = mounter.mount_dataset(tmp_path / f"f{index}", "tbig/data")
        path = mount.path / name
        with ThreadPoolExecutor(4) as pool:
            digests = list(pool.map(sha256, pool.map(Path.read_bytes, [path] * 4)))
        assert digests == [want] * 4
    # Changed in the UFS while its blocks are held: the new bytes whole, later.
    new = bytes(reversed(BIG[name]))
    (folder / name).write_bytes(new)
    os.utime(folder / name, (1, 2_000_000_000))

    def is_new() -> bool:
        try:
            digest = sha256((mount.path / name).read_bytes())
        except OSError:  # changed between its stat and its read
            return False
        assert digest in (want, sha256(new))
        return digest == sha256(new)

    wait_until(is_new, 20, "the changed big file is read anew")
    assert sha256((mount.path / name).read_bytes()) == sha256(new)
