"""Reads through a real mount equal the UFS bytes; views; read-only; errno."""

from __future__ import annotations

import errno
import mmap
import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cachecluster.common import auth
from tests.fuse.conftest import FILES_A, FILES_B, FuseCluster, Mounter, sha256, wait_until

BIG = "big/seven.bin"


def test_every_file_reads_equal_with_cat_dd_read_pread_mmap(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    mount = mounter.mount_dataset(tmp_path / "mnt", "ta/data")
    for name, data in FILES_A.items():
        path = mount.path / name
        want = sha256(data)
        assert os.stat(path).st_size == len(data)
        cat = subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout
        assert sha256(cat) == want, f"cat {name}"
        dd = subprocess.run(
            ["dd", f"if={path}", "bs=4M", "status=none"], capture_output=True, check=True
        ).stdout
        assert sha256(dd) == want, f"dd {name}"
        with open(path, "rb") as file:
            assert sha256(file.read()) == want, f"read {name}"
        rng = random.Random(name)
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(20 if data else 1):
                offset = rng.randrange(len(data) + 1)
                length = rng.randrange(1, 3 * (1 << 20))
                assert os.pread(fd, length, offset) == data[offset : offset + length], name
            if data:
                with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mapped:
                    assert sha256(memoryview(mapped)) == want, f"mmap {name}"
        finally:
            os.close(fd)


def test_namespaces_side_by_side_see_only_their_own(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    cluster = fuse_cluster.cluster
    a = mounter.mount(tmp_path / "a", "-n", "ta", token=cluster.token("ta"))
    b = mounter.mount(tmp_path / "b", "-n", "tb", token=cluster.token("tb"))
    assert sorted(os.listdir(a.path)) == ["data"]
    assert sorted(os.listdir(b.path)) == ["data", "ref"]
    assert (b.path / "data" / "b-only.txt").read_bytes() == FILES_B["b-only.txt"]
    assert not (a.path / "data" / "b-only.txt").exists()
    # The reference reads its source's bytes with tb's token.
    assert sha256((b.path / "ref" / BIG).read_bytes()) == sha256(FILES_A[BIG])
    # A namespace the token does not cover cannot be mounted at all.
    refused = mounter.cli(
        "mount",
        str(tmp_path / "c"),
        "-n",
        "tb",
        "--master",
        cluster.master_address,
        token=cluster.token("ta"),
        check=False,
    )
    assert refused.returncode != 0


def test_all_namespaces_view_and_listing_tools(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    admin = fuse_cluster.cluster.token(auth.ADMIN_NAMESPACE)
    mount = mounter.mount(tmp_path / "all", token=admin)
    assert {"ta", "tb"} <= set(os.listdir(mount.path))
    found = subprocess.run(
        ["find", str(mount.path / "ta")], capture_output=True, text=True, check=True
    ).stdout.split()
    want = {str(mount.path / "ta" / "data" / name) for name in FILES_A}
    assert want <= set(found)
    du = subprocess.run(["du", "-sb", str(mount.path / "ta" / "data")], capture_output=True)
    assert du.returncode == 0
    entries = {entry.name: entry for entry in os.scandir(mount.path / "ta" / "data" / "big")}
    assert entries["seven.bin"].stat().st_size == len(FILES_A[BIG])
    assert entries["sub"].is_dir()
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "ta" / "data" / "missing.bin")
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "nosuchns")


def test_writes_fail_with_erofs(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    mount = mounter.mount_dataset(tmp_path / "ro", "ta/data")
    attempts: list[Callable[[], object]] = [
        lambda: os.open(mount.path / "new.bin", os.O_WRONLY | os.O_CREAT),
        lambda: os.open(mount.path / "one.bin", os.O_RDWR),
        lambda: os.mkdir(mount.path / "dir"),
        lambda: os.unlink(mount.path / "one.bin"),
        lambda: os.rename(mount.path / "one.bin", mount.path / "two.bin"),
        lambda: os.truncate(mount.path / "one.bin", 0),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as caught:
            attempt()
        assert caught.value.errno == errno.EROFS
    assert (mount.path / "one.bin").read_bytes() == FILES_A["one.bin"]


def test_a_changed_file_is_read_anew_kept_pages_dropped(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    folder = fuse_cluster.apply("tver", "data", {"v.bin": b"a" * 300_000})
    mount = mounter.mount_dataset(tmp_path / "v", "tver/data")
    path = mount.path / "v.bin"
    assert path.read_bytes() == b"a" * 300_000
    assert path.read_bytes() == b"a" * 300_000  # keep_cache: from the page cache
    (folder / "v.bin").write_bytes(b"b" * 300_000)  # same size, new version
    os.utime(folder / "v.bin", (1, 2_000_000_000))
    wait_until(
        lambda: path.read_bytes() == b"b" * 300_000,
        10,
        "the new version is read through the mount (the old pages dropped)",
    )
