"""Metadata: status and listings of datasets from local and S3 UFS, cached per directory."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cachecluster.common.errors import ConfigError, InvalidArgument, InvalidPath, NotFound
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.metadata import EntryStatus, MetadataCache
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.registry import create_backend
from tests.servers.seaweed import SeaweedS3


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ufs"
    write(root / "a.bin", b"a" * 10)
    write(root / "empty.bin", b"")
    for name in ("b", "c", "d", "e", "f"):
        write(root / "dir" / f"{name}.txt", name.encode())
    write(root / "dir" / "sub" / "g.txt", b"g")
    return root


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def local(tree: Path, clock: FakeClock) -> AsyncIterator[MetadataCache]:
    registry = DatasetRegistry()
    registry.apply("ns", "ds", {"mounts": [{"mountPoint": f"local://{tree}", "name": "m0"}]})
    cache = MetadataCache(registry, sync_interval=30, clock=clock)
    try:
        yield cache
    finally:
        await cache.close()


async def list_all(cache: MetadataCache, path: str, **kwargs: Any) -> list[EntryStatus]:
    entries, token = await cache.list_status("ns", "ds", path, **kwargs)
    assert token == ""
    return entries


async def test_stat_file_carries_mount_and_version(local: MetadataCache, tree: Path) -> None:
    mount = local.registry.get("ns", "ds").mounts[0]
    entry = await local.get_status("ns", "ds", "/a.bin")
    st = os.stat(tree / "a.bin")
    assert entry == EntryStatus(
        path="a.bin",
        size=10,
        version=f"10-{st.st_mtime_ns}",
        mtime=pytest.approx(st.st_mtime),  # type: ignore[arg-type]
        is_dir=False,
        mount_id=mount.mount_id,
        mount_path="a.bin",
    )
    assert (await local.get_status("ns", "ds", "dir/sub")).is_dir
    root = await local.get_status("ns", "ds", "")
    assert (root.is_dir, root.mount_id) == (True, mount.mount_id)
    assert (await local.get_status("ns", "ds", "empty.bin")).size == 0


async def test_list_sorted_with_directories(local: MetadataCache) -> None:
    entries = await list_all(local, "")
    assert [(e.path, e.is_dir) for e in entries] == [
        ("a.bin", False),
        ("dir", True),
        ("empty.bin", False),
    ]
    inner = await list_all(local, "dir")
    assert [e.path for e in inner] == [f"dir/{n}.txt" for n in "bcdef"] + ["dir/sub"]
    assert inner[0].mount_path == "dir/b.txt"


async def test_recursive_lists_every_file(local: MetadataCache) -> None:
    entries = await list_all(local, "dir", recursive=True)
    assert [e.path for e in entries] == [f"dir/{n}.txt" for n in "bcdef"] + ["dir/sub/g.txt"]


async def test_paging_walks_the_whole_listing(local: MetadataCache) -> None:
    pages: list[list[str]] = []
    token = ""
    while True:
        entries, token = await local.list_status("ns", "ds", "dir", page_size=2, page_token=token)
        pages.append([e.path for e in entries])
        if not token:
            break
    assert pages == [
        ["dir/b.txt", "dir/c.txt"],
        ["dir/d.txt", "dir/e.txt"],
        ["dir/f.txt", "dir/sub"],
    ]
    with pytest.raises(InvalidArgument, match="page token"):
        await local.list_status("ns", "ds", "dir", page_token="%%%")
    with pytest.raises(InvalidArgument, match="page size"):
        await local.list_status("ns", "ds", "dir", page_size=-1)


async def test_listing_is_cached_until_the_sync_interval(
    local: MetadataCache, tree: Path, clock: FakeClock
) -> None:
    assert [e.path for e in await list_all(local, "")] == ["a.bin", "dir", "empty.bin"]
    write(tree / "new.bin", b"new")
    (tree / "empty.bin").unlink()
    clock.now += 29
    # The cached listing still answers (no new file, the deleted one still there)...
    assert [e.path for e in await list_all(local, "")] == ["a.bin", "dir", "empty.bin"]
    assert (await local.get_status("ns", "ds", "empty.bin")).size == 0
    # ...but a stat of a file not in the cached listing asks the UFS.
    assert (await local.get_status("ns", "ds", "new.bin")).size == 3
    assert local.counters.listing_misses == 1
    clock.now += 2
    assert [e.path for e in await list_all(local, "")] == ["a.bin", "dir", "new.bin"]
    assert local.counters.listing_misses == 2


async def test_stats_and_misses_are_cached_too(
    local: MetadataCache, tree: Path, clock: FakeClock
) -> None:
    with pytest.raises(NotFound):
        await local.get_status("ns", "ds", "later.bin")
    write(tree / "later.bin", b"x")
    with pytest.raises(NotFound):
        await local.get_status("ns", "ds", "later.bin")
    assert local.counters.stat_misses == 1
    clock.now += 31
    assert (await local.get_status("ns", "ds", "later.bin")).size == 1


async def test_concurrent_misses_make_one_listing(local: MetadataCache) -> None:
    results = await asyncio.gather(*(list_all(local, "dir") for _ in range(8)))
    assert all(result == results[0] for result in results)
    assert (local.counters.listing_misses, local.counters.listing_hits) == (1, 0)


@pytest.mark.parametrize("path", ["..", "../etc/passwd", "dir/../../x", "/dir/../../.."])
async def test_escaping_paths_are_refused(local: MetadataCache, path: str) -> None:
    with pytest.raises(InvalidPath, match="escapes the root"):
        await local.get_status("ns", "ds", path)
    with pytest.raises(InvalidPath):
        await local.list_status("ns", "ds", path)


async def test_normalised_paths_and_missing_ones(local: MetadataCache) -> None:
    assert (await local.get_status("ns", "ds", "/dir/./sub/../b.txt")).path == "dir/b.txt"
    with pytest.raises(NotFound):
        await local.get_status("ns", "ds", "nope")
    with pytest.raises(NotFound):
        await local.list_status("ns", "ds", "nope")
    (file_entry,), token = await local.list_status("ns", "ds", "dir/b.txt")
    assert (file_entry.path, file_entry.is_dir, token) == ("dir/b.txt", False, "")
    with pytest.raises(NotFound, match="no dataset ns/other"):
        await local.get_status("ns", "other", "")


async def test_mounts_at_sub_paths(tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write(other / "x.bin", b"xx")
    registry = DatasetRegistry()
    registry.apply(
        "ns",
        "multi",
        {
            "mounts": [
                {"mountPoint": f"local://{tree}/dir", "name": "train", "path": "/train"},
                {"mountPoint": f"local://{other}", "name": "x", "path": "/eval/x"},
            ]
        },
    )
    train, x = registry.get("ns", "multi").mounts
    cache = MetadataCache(registry, sync_interval=30)
    try:
        root, _ = await cache.list_status("ns", "multi", "")
        assert [(e.path, e.is_dir, e.mount_id) for e in root] == [
            ("eval", True, ""),
            ("train", True, train.mount_id),
        ]
        evals, _ = await cache.list_status("ns", "multi", "eval")
        assert [(e.path, e.mount_id) for e in evals] == [("eval/x", x.mount_id)]
        assert (await cache.get_status("ns", "multi", "eval")).is_dir
        entry = await cache.get_status("ns", "multi", "train/sub/g.txt")
        assert (entry.mount_id, entry.mount_path) == (train.mount_id, "sub/g.txt")
        entry = await cache.get_status("ns", "multi", "eval/x/x.bin")
        assert (entry.path, entry.mount_path, entry.size) == ("eval/x/x.bin", "x.bin", 2)
        everything, _ = await cache.list_status("ns", "multi", "", recursive=True)
        assert [e.path for e in everything] == ["eval/x/x.bin"] + [
            f"train/{n}.txt" for n in "bcdef"
        ] + ["train/sub/g.txt"]
        page, token = await cache.list_status("ns", "multi", "train", page_size=5)
        rest, last = await cache.list_status("ns", "multi", "train", page_token=token)
        assert [e.path for e in page + rest][-1] == "train/sub" and last == ""
        with pytest.raises(NotFound):
            await cache.get_status("ns", "multi", "test")
        with pytest.raises(NotFound):
            await cache.get_status("ns", "multi", "evaluation")
    finally:
        await cache.close()


async def test_backends_are_closed_when_their_mount_goes_away(local: MetadataCache) -> None:
    mount = local.registry.get("ns", "ds").mounts[0]
    backend = await local.backend(mount)
    assert await local.backend(mount) is backend  # one backend a mount
    await list_all(local, "")
    local.registry.delete("ns", "ds")
    await local.sync_mounts()
    with pytest.raises(NotFound):
        local.get_mount(mount.mount_id)
    with pytest.raises(Exception, match="closed"):
        await backend.stat("a.bin")


async def test_changed_options_get_a_new_backend(tree: Path) -> None:
    registry = DatasetRegistry()
    spec: dict[str, Any] = {"mounts": [{"mountPoint": "s3://bucket", "name": "m0"}]}
    registry.apply("ns", "ds", spec)
    cache = MetadataCache(registry)
    try:
        first = await cache.backend(registry.get("ns", "ds").mounts[0])
        spec["mounts"][0]["options"] = {"fs.s3.region": "eu-west-1"}
        registry.apply("ns", "ds", spec)
        await cache.sync_mounts()
        second = await cache.backend(registry.get("ns", "ds").mounts[0])
        assert second is not first
        assert second.options == {"fs.s3.region": "eu-west-1"}
    finally:
        await cache.close()


# ---------------------------------------------------------------------- S3


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> Iterator[str]:
    bucket = f"meta-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="data/a.bin", Body=b"a" * 1000)
    for n in range(5):
        client.put_object(Bucket=bucket, Key=f"data/dir/f{n}.bin", Body=bytes([n]) * (n + 1))
    client.put_object(Bucket=bucket, Key="outside.bin", Body=b"o")
    yield bucket


async def test_s3_stat_list_paging_and_sync_interval(s3_server: SeaweedS3, s3_bucket: str) -> None:
    registry = DatasetRegistry()
    registry.apply(
        "ns",
        "s3",
        {
            "mounts": [
                {
                    "mountPoint": f"s3://{s3_bucket}/data",
                    "name": "m0",
                    "options": s3_server.backend_options(),
                }
            ]
        },
    )
    mount = registry.get("ns", "s3").mounts[0]
    cache = MetadataCache(registry, sync_interval=0.5)
    client = s3_server.client()
    try:
        entry = await cache.get_status("ns", "s3", "a.bin")
        head = await asyncio.to_thread(client.head_object, Bucket=s3_bucket, Key="data/a.bin")
        assert (entry.size, entry.mount_id, entry.mount_path) == (1000, mount.mount_id, "a.bin")
        assert entry.version == head["ETag"].strip('"')
        root, _ = await cache.list_status("ns", "s3", "")
        assert [(e.path, e.is_dir) for e in root] == [("a.bin", False), ("dir", True)]

        first, token = await cache.list_status("ns", "s3", "dir", page_size=3)
        second, last = await cache.list_status("ns", "s3", "dir", page_size=3, page_token=token)
        assert [e.path for e in first + second] == [f"dir/f{n}.bin" for n in range(5)]
        assert [e.size for e in first + second] == [1, 2, 3, 4, 5]
        assert last == ""
        with pytest.raises(InvalidPath):
            await cache.get_status("ns", "s3", "../outside.bin")  # refused before the UFS

        await asyncio.to_thread(
            client.put_object, Bucket=s3_bucket, Key="data/dir/new.bin", Body=b"new"
        )
        listed, _ = await cache.list_status("ns", "s3", "dir")
        assert "dir/new.bin" not in [e.path for e in listed]  # cached
        await asyncio.sleep(0.6)
        listed, _ = await cache.list_status("ns", "s3", "dir")
        assert "dir/new.bin" in [e.path for e in listed]
        everything, _ = await cache.list_status("ns", "s3", "", recursive=True)
        assert len(everything) == 7
    finally:
        await cache.close()


async def test_watch_mounts_sends_the_whole_set_at_once_and_after_each_change(
    tree: Path,
) -> None:
    registry = DatasetRegistry()
    registry.apply("ns", "a", {"mounts": [{"mountPoint": f"local://{tree}", "name": "m0"}]})
    cache = MetadataCache(registry)
    sets: asyncio.Queue[list[str]] = asyncio.Queue()

    async def watch() -> None:
        async for mounts in cache.watch_mounts():
            await sets.put([f"{m.dataset}:{m.uri}" for m in mounts])

    watcher = asyncio.ensure_future(watch())
    try:
        assert await asyncio.wait_for(sets.get(), 5) == [f"a:local://{tree}"]
        registry.apply("ns", "b", {"mounts": [{"mountPoint": f"local://{tree}/dir", "name": "m"}]})
        await cache.sync_mounts()
        assert sorted(await asyncio.wait_for(sets.get(), 5)) == sorted(
            [f"a:local://{tree}", f"b:local://{tree}/dir"]
        )
        await cache.sync_mounts()  # nothing changed: nothing sent
        registry.delete("ns", "a")
        await cache.sync_mounts()
        assert await asyncio.wait_for(sets.get(), 5) == [f"b:local://{tree}/dir"]
        assert sets.empty()
        await cache.close()  # ends the watch
        await asyncio.wait_for(watcher, 5)
    finally:
        watcher.cancel()
        await cache.close()


async def test_open_backends_opens_every_mount_ahead_and_logs_a_bad_one(
    tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = DatasetRegistry()
    registry.apply("ns", "good", {"mounts": [{"mountPoint": f"local://{tree}", "name": "m0"}]})
    registry.apply("ns", "bad", {"mounts": [{"mountPoint": f"local://{tree}/dir", "name": "m"}]})
    made: list[str] = []

    def factory(uri: str, options: Mapping[str, str]) -> UfsBackend:
        made.append(uri)
        if uri.endswith("/dir"):
            raise ConfigError("fs.local.x", "refused for the test")
        return create_backend(uri, options)

    cache = MetadataCache(registry, backend_factory=factory)
    try:
        await cache.open_backends()  # never raises
        assert sorted(made) == sorted([f"local://{tree}", f"local://{tree}/dir"])
        assert "backend not opened" in caplog.text and "refused for the test" in caplog.text
        entry = await cache.get_status("ns", "good", "a.bin")
        assert entry.size == 10 and len(made) == 2  # the stat used the backend opened ahead
    finally:
        await cache.close()


async def test_a_listing_newer_than_a_cached_stat_outdates_it(
    local: MetadataCache, tree: Path, clock: FakeClock
) -> None:
    """A file removed in the UFS is not found by a listing, then served from an older stat."""
    assert (await local.get_status("ns", "ds", "dir/b.txt")).size == 1  # stat cached
    (tree / "dir" / "b.txt").unlink()
    clock.now += 10
    assert "dir/b.txt" not in [e.path for e in await list_all(local, "dir")]  # a fresh listing
    with pytest.raises(NotFound):
        await local.get_status("ns", "ds", "dir/b.txt")


async def test_a_stat_newer_than_the_listing_is_kept(
    local: MetadataCache, tree: Path, clock: FakeClock
) -> None:
    """A file made after its folder was listed is found, and its stat is cached."""
    await list_all(local, "dir")
    clock.now += 5
    write(tree / "dir" / "new.txt", b"new")
    assert (await local.get_status("ns", "ds", "dir/new.txt")).size == 3
    misses = local.counters.stat_misses
    assert (await local.get_status("ns", "ds", "dir/new.txt")).size == 3
    assert local.counters.stat_misses == misses  # from the cached stat, not the UFS again
