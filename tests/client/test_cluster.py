"""The client against a real master and three real workers (subprocesses, local UFS).

Whole files and odd ranges by sha256, seeks, ls/stat, the blocking client,
fsspec, the ``ls|stat|cat|cp`` commands, and reads that go on when a worker
is SIGKILLed or the master is gone.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import io
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.client.fsspec_fs import CacheClusterFileSystem, _clients
from cachecluster.client.sync_client import Client
from cachecluster.common.errors import InvalidArgument, InvalidPath, NotFound
from tests.client.conftest import BLOCK_SIZE, NAMESPACE, Cluster, apply_dataset
from tests.servers.seaweed import SeaweedS3


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cachecluster", *args],
        env=cluster.env(),
        capture_output=True,
        timeout=60,
        check=False,
    )


# ---------------------------------------------------------------- AsyncClient


async def test_whole_files_match(cluster: Cluster) -> None:
    async with AsyncClient(cluster.address) as client:
        for name, data in cluster.files.items():
            async with await client.open(cluster.path(name)) as file:
                assert file.size == len(data)
                assert sha(await file.read()) == sha(data), name
            assert sha(await client.cat(cluster.path(name))) == sha(data)
        assert client.stats.ufs_reads == 0
        assert client.stats.worker_failures == 0
        # Blocks are where the ring says: each worker holds the blocks it owns.
        placements = await client.blocks(cluster.path("multi.bin"))
        assert [p.index for p in placements] == list(range(6))
        assert all(len(p.owners) == 1 for p in placements)
        assert sum(p.length for p in placements) == len(cluster.files["multi.bin"])


async def test_odd_ranges_and_seeks(cluster: Cluster) -> None:
    rng = random.Random(3)
    data = cluster.files["multi.bin"]
    path = cluster.path("multi.bin")
    # Read-ahead buffers serve the data protocol; same-host short-circuit reads need none
    # (tests/client/test_short_circuit.py).
    async with AsyncClient(cluster.address, readahead_blocks=2, short_circuit=False) as client:
        for _ in range(20):
            start = rng.randrange(0, len(data) + 10)
            end = start + rng.randrange(0, 3 * BLOCK_SIZE)
            assert await client.cat(path, start, end) == data[start:end]
        assert await client.cat(path, -100) == data[-100:]
        assert await client.cat(path, 10, -10) == data[10:-10]
        async with await client.open(path) as file:
            file.seek(BLOCK_SIZE - 3)
            assert await file.read(6) == data[BLOCK_SIZE - 3 : BLOCK_SIZE + 3]
            assert file.tell() == BLOCK_SIZE + 3
            file.seek(-5, io.SEEK_END)
            assert await file.read() == data[-5:]
            assert await file.read() == b""
            file.seek(0)
            buffer = bytearray(300_000)  # sequential odd-sized reads: read-ahead serves them
            parts = []
            while got := await file.readinto(buffer):
                parts.append(bytes(buffer[:got]))
            assert b"".join(parts) == data
        assert client.stats.readahead_hits > 0


async def test_ls_and_stat(cluster: Cluster) -> None:
    async with AsyncClient(cluster.address) as client:
        assert "team" in await client.ls("")
        assert await client.ls("team") == ["team/data"]
        names = await client.ls(cluster.path(""))
        assert set(names) == {cluster.path(n) for n in cluster.files if "/" not in n} | {
            cluster.path("dir")
        }
        detail = {e.name: e for e in await client.ls(cluster.path(""), detail=True)}
        assert detail["dir"].is_dir
        assert detail["multi.bin"].size == len(cluster.files["multi.bin"])
        assert await client.ls(cluster.path("dir/a.txt")) == [cluster.path("dir/a.txt")]
        info = await client.stat(cluster.path("dir/sub/b.bin"))
        assert (info.size, info.is_dir, info.mount_path) == (
            2 * BLOCK_SIZE + 7,
            False,
            "dir/sub/b.bin",
        )
        assert info.version
        assert (await client.stat("team")).is_dir
        files = await client.walk_files(cluster.path("dir"))
        assert [f.path for f in files] == [cluster.path("dir/a.txt"), cluster.path("dir/sub/b.bin")]
        with pytest.raises(NotFound):
            await client.stat(cluster.path("missing.bin"))
        with pytest.raises(NotFound):
            await client.open(cluster.path("missing.bin"))
        with pytest.raises(IsADirectoryError):
            await client.open(cluster.path("dir"))
        with pytest.raises(InvalidPath):
            await client.stat(cluster.path("../../etc/passwd"))


async def test_expired_stats_of_a_listed_folder_cost_one_listing(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncClient(cluster.address, metadata_ttl=0.3) as client:
        names = await client.ls(cluster.path("dir"))
        calls: collections.Counter[str] = collections.Counter()
        for method in ("get_status", "list_status"):
            real = getattr(client.api, method)

            async def counted(
                *args: object, _real: Any = real, _name: str = method, **kwargs: object
            ) -> Any:
                calls[_name] += 1
                return await _real(*args, **kwargs)

            monkeypatch.setattr(client.api, method, counted)
        await asyncio.sleep(0.4)  # every entry expired
        infos = await asyncio.gather(*(client.stat(name) for name in names))
        assert [info.path for info in infos] == names
        assert calls == {"list_status": 1}  # one listing for all, at once
        info = await client.stat(cluster.path("dir/sub/b.bin"))  # "dir/sub" was never listed
        assert info.size == len(cluster.files["dir/sub/b.bin"])
        assert calls == {"list_status": 1, "get_status": 1}
        with pytest.raises(NotFound):  # not in the new listing: the master says so itself
            await client.stat(cluster.path("dir/missing.bin"))
        assert calls["get_status"] == 2


async def test_parallel_readers(cluster: Cluster) -> None:
    async with AsyncClient(cluster.address) as client:

        async def read(name: str) -> str:
            async with await client.open(cluster.path(name)) as file:
                return sha(await file.read())

        names = list(cluster.files) * 2
        assert await asyncio.gather(*(read(n) for n in names)) == [
            sha(cluster.files[n]) for n in names
        ]


# ---------------------------------------------------------------- Client, fsspec


def test_sync_client(cluster: Cluster) -> None:
    data = cluster.files["multi.bin"]
    with Client(cluster.address) as client:
        assert cluster.path("multi.bin") in client.ls(cluster.path(""))
        assert client.stat(cluster.path("multi.bin")).size == len(data)
        with client.open(cluster.path("multi.bin")) as file:
            assert file.read(10) == data[:10]
            file.seek(BLOCK_SIZE)
            assert file.read(BLOCK_SIZE) == data[BLOCK_SIZE : 2 * BLOCK_SIZE]
            assert file.pread(3, 4) == data[3:7]
            file.seek(0)
            assert sha(file.readall()) == sha(data)
        with io.BufferedReader(client.open(cluster.path("dir/a.txt"))) as buffered:
            assert buffered.read() == cluster.files["dir/a.txt"]
        assert (
            client.cat(cluster.path("block+1.bin"), BLOCK_SIZE - 1)
            == (cluster.files["block+1.bin"][BLOCK_SIZE - 1 :])
        )


@pytest.fixture
def fsspec_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CACHECLUSTER_MASTER", cluster.address)
    try:
        yield
    finally:
        CacheClusterFileSystem.clear_instance_cache()
        for client in list(_clients.values()):
            client.close()
        _clients.clear()


@pytest.mark.usefixtures("fsspec_env")
def test_fsspec(cluster: Cluster) -> None:
    data = cluster.files["multi.bin"]
    with fsspec.open("cachecluster://team/data/multi.bin") as file:
        assert sha(file.read()) == sha(data)
    with fsspec.open("cachecluster://team/data/multi.bin", block_size=100_000) as file:
        file.seek(BLOCK_SIZE + 5)
        assert file.read(70_000) == data[BLOCK_SIZE + 5 : BLOCK_SIZE + 70_005]
    fs = fsspec.filesystem("cachecluster")
    assert isinstance(fs, CacheClusterFileSystem)
    assert fs.cat_file("team/data/multi.bin", 7, 20) == data[7:20]
    assert fs.cat("cachecluster://team/data/one.bin") == cluster.files["one.bin"]
    assert fs.info("team/data/dir")["type"] == "directory"
    assert fs.size("team/data/block.bin") == BLOCK_SIZE
    assert sorted(fs.find("team/data/dir")) == ["team/data/dir/a.txt", "team/data/dir/sub/b.bin"]
    assert "team/data/dir" in fs.ls("team/data", detail=False)
    with pytest.raises(FileNotFoundError):
        fs.info("team/data/nope")


# ---------------------------------------------------------------- CLI


def test_cli_ls_stat_cat_cp(cluster: Cluster, tmp_path: Path) -> None:
    listing = cli(cluster, "ls", "-l", cluster.path(""))
    assert listing.returncode == 0, listing.stderr
    assert b"multi.bin" in listing.stdout and b"dir/" in listing.stdout
    stat = cli(cluster, "stat", cluster.path("multi.bin"))
    assert stat.returncode == 0, stat.stderr
    assert f"size: {len(cluster.files['multi.bin'])} ".encode() in stat.stdout

    cat = cli(cluster, "cat", cluster.path("multi.bin"), cluster.path("one.bin"))
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout == cluster.files["multi.bin"] + cluster.files["one.bin"]

    copy = cli(cluster, "cp", "-r", cluster.path("dir"), str(tmp_path / "out"))
    assert copy.returncode == 0, copy.stderr
    assert b"copied 2 files" in copy.stdout and b"GB/s" in copy.stdout
    assert (tmp_path / "out/a.txt").read_bytes() == cluster.files["dir/a.txt"]
    assert (tmp_path / "out/sub/b.bin").read_bytes() == cluster.files["dir/sub/b.bin"]
    one = cli(cluster, "cp", cluster.path("block-1.bin"), str(tmp_path))
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "block-1.bin").read_bytes() == cluster.files["block-1.bin"]

    missing = cli(cluster, "cat", cluster.path("missing.bin"))
    assert missing.returncode == 66
    assert b"missing.bin" in missing.stderr
    not_recursive = cli(cluster, "cp", cluster.path("dir"), str(tmp_path / "x"))
    assert not_recursive.returncode == 64


# ---------------------------------------------------------------- failures


async def test_reads_survive_a_killed_worker_and_a_gone_master(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster
    names = ["multi.bin", "dir/sub/b.bin", "block+1.bin"]
    async with AsyncClient(cluster.address, metadata_ttl=0.5, ring_refresh_interval=0.5) as client:
        for name in names:  # warm: every block cached on its owner
            assert await client.cat(cluster.path(name)) == cluster.files[name]
        owners = {o for p in await client.blocks(cluster.path("multi.bin")) for o in p.owners}
        victim = sorted(owners)[0]
        before = (await client.view.ring()).epoch
        cluster.kill_worker(victim, signal.SIGKILL)
        for name in names:  # at once: the ring still names the dead worker
            async with await client.open(cluster.path(name)) as file:
                assert sha(await file.read()) == sha(cluster.files[name])
        assert client.stats.worker_failures >= 1
        assert victim in client.view.suspects()
        # The background refresh picks up the master's new ring without the victim.
        for _ in range(100):
            ring = await client.view.ring()
            if victim not in ring.members:
                break
            await asyncio.sleep(0.1)
        assert victim not in ring.members and ring.epoch != before

        cluster.master.stop(signal.SIGKILL)
        await asyncio.sleep(0.6)  # past the metadata TTL: the stale entries must serve
        for name in names:
            assert await client.cat(cluster.path(name)) == cluster.files[name]


def test_sync_client_in_a_forked_child_fails_fast(cluster: Cluster) -> None:
    """gRPC hangs in a forked child: the client says so at once instead."""
    import multiprocessing

    with Client(cluster.address) as client:
        assert client.cat(cluster.path("one.bin")) == cluster.files["one.bin"]
        file = client.open(cluster.path("one.bin"))

        def child() -> None:
            codes = 0
            for call in (lambda: client.stat(cluster.path("one.bin")), lambda: file.read()):
                try:
                    call()
                except InvalidArgument as exc:
                    codes += "fork" in str(exc)
            client.close()
            raise SystemExit(0 if codes == 2 else 3)

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(20)
        if process.exitcode is None:
            process.kill()
        assert process.exitcode == 0
        assert file.read() == cluster.files["one.bin"]  # the parent goes on
        file.close()


async def test_s3_dataset_and_direct_ufs_reads(
    fresh_cluster: Cluster, s3_server: SeaweedS3
) -> None:
    """An S3 (SeaweedFS) dataset through the workers, then straight from S3 once they are gone."""
    cluster = fresh_cluster
    names = ["multi.bin", "block+1.bin", "empty.bin", "dir/sub/b.bin"]
    s3_server.create_bucket("client-it")
    s3 = s3_server.client()
    for name in names:
        s3.put_object(Bucket="client-it", Key=f"ds/{name}", Body=cluster.files[name])
    await apply_dataset(cluster.address, "s3", "s3://client-it/ds", s3_server.backend_options())

    def path(name: str) -> str:
        return f"{NAMESPACE}/s3/{name}"

    async with AsyncClient(cluster.address) as client:
        for name in names:
            assert sha(await client.cat(path(name))) == sha(cluster.files[name]), name
        assert client.stats.ufs_reads == 0
        for worker_id in list(cluster.workers):
            cluster.kill_worker(worker_id, signal.SIGKILL)
        for name in names:  # every worker refuses: the client opens S3 itself (GetMount)
            async with await client.open(path(name)) as file:
                assert sha(await file.read()) == sha(cluster.files[name]), name
        blocks = sum(-(-len(cluster.files[name]) // BLOCK_SIZE) for name in names)
        assert client.stats.ufs_reads == blocks
        assert client.stats.worker_failures < 2 * blocks  # suspects are skipped, not retried
