"""The peer suite's references, beyond what the tiny suite sees: the copy get-store keeps,
and the minimal pyfuse3 mount serving the very bytes and stopping cleanly."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.peers.base import UfsEnv
from bench.peers.ceiling_cold import GetStore
from bench.peers.ceiling_fuse import Pyfuse3Minimal
from bench.peers.data import SMALL_SIZE, Layout, expected, upload
from bench.peers.processes import is_mounted
from tests.servers.seaweed import SeaweedS3

LAYOUT = Layout(big_size=3 << 20, small_files=3, model_size=2 << 20, seed=11)


@pytest.fixture
def env(tmp_path: Path, s3_server: SeaweedS3) -> UfsEnv:
    """The layout's objects in a bucket of the session's S3 server, a scratch folder."""
    bucket = "bench-references"
    s3_server.create_bucket(bucket)
    upload(s3_server.client(), bucket, LAYOUT)
    return UfsEnv(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_server.region,
        bucket, tmp_path / "work", tmp_path / "peers", LAYOUT,
    )  # fmt: skip


@pytest.fixture
def minimal(env: UfsEnv) -> Iterator[Pyfuse3Minimal]:
    """The minimal mount over the layout's files, stopped at the end."""
    if (why := Pyfuse3Minimal().available()) is not None:
        pytest.skip(why)
    env.workdir.mkdir()
    system = Pyfuse3Minimal()
    try:
        system.start(env)
        yield system
    finally:
        system.stop()


def test_get_store_keeps_a_copy_of_each_read_and_a_cold_reset_removes_it(env: UfsEnv) -> None:
    env.workdir.mkdir()
    system = GetStore()
    system.start(env)
    try:
        buffer = memoryview(bytearray(1 << 20))  # smaller than the object: several chunks
        assert system.read_whole(LAYOUT.big_key, buffer) == LAYOUT.big_size
        copy = env.workdir / "get-store" / LAYOUT.big_key
        want = expected(LAYOUT.seed, LAYOUT.big_key, LAYOUT.big_size, 0, LAYOUT.big_size)
        assert copy.read_bytes() == want
        system.reset_cold()
        assert not copy.exists()
    finally:
        system.stop()
    assert not (env.workdir / "get-store").exists()


def test_minimal_mount_serves_the_objects_bytes_and_tree(minimal: Pyfuse3Minimal) -> None:
    for key, size in [(LAYOUT.big_key, LAYOUT.big_size), *LAYOUT.model_keys()]:
        with open(minimal.root / key, "rb") as file:
            file.seek(size // 3)
            assert file.read(4096) == expected(LAYOUT.seed, key, size, size // 3, 4096), key
    for key in LAYOUT.small_keys():
        want = expected(LAYOUT.seed, key, SMALL_SIZE, 0, SMALL_SIZE)
        assert (minimal.root / key).read_bytes() == want, key
    assert minimal.list_tree(LAYOUT.small_prefix) == LAYOUT.small_files
    assert minimal.stat(LAYOUT.small_keys()[0]) == SMALL_SIZE
    with pytest.raises(OSError) as refused:
        os.open(minimal.root / LAYOUT.big_key, os.O_RDWR)
    assert refused.value.errno in (errno.EROFS, errno.EACCES)  # the mount is read-only


def test_minimal_mount_unmounts_itself_on_sigterm(minimal: Pyfuse3Minimal, env: UfsEnv) -> None:
    server = minimal._process
    assert server is not None and is_mounted(minimal.root)
    os.killpg(server.pid, 15)
    assert server.wait(10) == 0  # its own unmount, not the suite's lazy detach
    assert not is_mounted(minimal.root)
    minimal.fresh()  # a new server on the same files
    assert minimal.stat(LAYOUT.big_key) == LAYOUT.big_size
    log = (env.workdir / "pyfuse3-minimal.log").read_text()
    assert "Traceback" not in log, log
