"""Mount resolution and the worker's block opener over a real BlockStore and real UFSs.

The opener is exercised with local directories and SeaweedFS (S3), through
the real data server and ``DataConnection`` where the wire matters. Mount
specs come from a table (:class:`MountTable`, the resolver's lookup seam);
the master's own ``GetMount`` is used by the tests at the end of the
"resolver" part, with a real master started in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import grpc
import pytest

from cachecluster.client.data_conn import DataConnection
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import (
    InvalidArgument,
    NotFound,
    Unavailable,
    UnknownScheme,
    VersionChanged,
)
from cachecluster.common.frames import BlockRef, ReadRequest
from cachecluster.master.config import MasterConfig
from cachecluster.master.server import MasterServer
from cachecluster.protos import master_pb2, master_pb2_grpc
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.local import file_version
from cachecluster.ufs.registry import create_backend
from cachecluster.worker import mounts as mounts_module
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.data_server import DataServer
from cachecluster.worker.mounts import MasterMountLookup, MountResolver, MountSpec
from cachecluster.worker.opener import UfsBlockOpener
from cachecluster.worker.placement import RingView
from cachecluster.worker.tiers import Medium, TierConfig
from tests.servers.seaweed import SeaweedS3

BLOCK = 64 * 1024
MOUNT = "0123456789abcdef"


class MountTable:
    """A lookup from a table of specs; ``unreachable`` makes it fail like an absent master."""

    def __init__(self, specs: Mapping[str, MountSpec] | None = None) -> None:
        self.specs = dict(specs or {})
        self.calls = 0
        self.unreachable = 0
        """Calls still to fail with Unavailable (-1: all of them)."""

    async def __call__(self, mount_id: str) -> MountSpec:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.unreachable:
            self.unreachable -= 1 if self.unreachable > 0 else 0
            raise Unavailable("master at 127.0.0.1:1 unreachable")
        try:
            return self.specs[mount_id]
        except KeyError:
            raise NotFound(f"mount {mount_id}: no such mount") from None


class CountingFactory:
    """A backend factory that records the backends it made (real ``create_backend`` ones)."""

    def __init__(self) -> None:
        self.made: list[UfsBackend] = []

    def __call__(self, uri: str, options: Mapping[str, str]) -> UfsBackend:
        backend = create_backend(uri, options)
        self.made.append(backend)
        return backend


@pytest.fixture
def ufs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "ufs"
    path.mkdir()
    return path


@pytest.fixture
async def store(shm_dir: Path) -> AsyncIterator[BlockStore]:
    async with BlockStore([TierConfig(Medium.MEM, str(shm_dir / "mem"), 64 * BLOCK)]) as store:
        yield store


def ring_with_block_size(block_size: int = BLOCK) -> RingView:
    ring = RingView("w-test")
    ring.set_block_size(block_size)
    return ring


def write_file(directory: Path, name: str, size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size)
    (directory / name).write_bytes(data)
    return data


def request_for(path: str, version: str, index: int, mount: str = MOUNT) -> ReadRequest:
    key = BlockKey(mount, path, version, index)
    return ReadRequest(1, key.id, BlockRef(mount, path, version, index), 0, BLOCK)


# ---------------------------------------------------------------- resolver


async def test_concurrent_misses_share_one_lookup_and_one_backend(ufs_dir: Path) -> None:
    table = MountTable({MOUNT: MountSpec(MOUNT, f"local://{ufs_dir}")})
    factory = CountingFactory()
    resolver = MountResolver(table, backend_factory=factory)
    try:
        resolved = await asyncio.gather(*(resolver.get(MOUNT) for _ in range(20)))
        assert {id(r.backend) for r in resolved} == {id(factory.made[0])}
        assert table.calls == 1 and len(factory.made) == 1
        assert (await resolver.get(MOUNT)).backend is factory.made[0]
        assert table.calls == 1
    finally:
        await resolver.close()


async def test_unknown_mount_is_not_found_and_not_cached(ufs_dir: Path) -> None:
    table = MountTable()
    resolver = MountResolver(table)
    try:
        for _ in range(2):
            with pytest.raises(NotFound):
                await resolver.get("feedfeedfeedfeed")
        assert table.calls == 2
        with pytest.raises(InvalidArgument):
            await resolver.get("")
    finally:
        await resolver.close()


async def test_lookup_is_retried_while_the_master_is_away(ufs_dir: Path) -> None:
    table = MountTable({MOUNT: MountSpec(MOUNT, f"local://{ufs_dir}")})
    table.unreachable = 3
    resolver = MountResolver(table, resolve_timeout=5.0)
    try:
        resolved = await resolver.get(MOUNT)
        assert resolved.spec.uri == f"local://{ufs_dir}"
        assert table.calls == 4
    finally:
        await resolver.close()


async def test_lookup_gives_up_after_the_resolve_timeout(ufs_dir: Path) -> None:
    table = MountTable({MOUNT: MountSpec(MOUNT, f"local://{ufs_dir}")})
    table.unreachable = -1
    resolver = MountResolver(table, resolve_timeout=0.3)
    try:
        with pytest.raises(Unavailable, match="could not be reached"):
            await resolver.get(MOUNT)
    finally:
        await resolver.close()


async def test_cached_mount_keeps_working_while_the_master_is_away(ufs_dir: Path) -> None:
    table = MountTable({MOUNT: MountSpec(MOUNT, f"local://{ufs_dir}")})
    resolver = MountResolver(table, refresh_interval=0.0)
    try:
        first = await resolver.get(MOUNT)
        table.unreachable = -1
        for _ in range(3):
            assert await resolver.get(MOUNT) is first
            await asyncio.sleep(0.05)
        assert table.calls >= 2  # refreshes were tried in the background
    finally:
        await resolver.close()


async def test_refresh_swaps_changed_options_and_drops_deleted_mounts(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    table = MountTable({MOUNT: MountSpec(MOUNT, f"local://{tmp_path}/a")})
    factory = CountingFactory()
    resolver = MountResolver(table, refresh_interval=0.0, backend_factory=factory)
    try:
        first = await resolver.get(MOUNT)
        table.specs[MOUNT] = MountSpec(MOUNT, f"local://{tmp_path}/b")
        await resolver.get(MOUNT)  # starts the refresh
        for _ in range(100):
            current = resolver.cached(MOUNT)
            if current is not None and current.spec.uri.endswith("/b"):
                break
            await asyncio.sleep(0.02)
        current = resolver.cached(MOUNT)
        assert current is not None and current.backend is not first.backend
        del table.specs[MOUNT]
        await resolver.get(MOUNT)
        for _ in range(100):
            if resolver.cached(MOUNT) is None:
                break
            await asyncio.sleep(0.02)
        assert resolver.cached(MOUNT) is None
        with pytest.raises(NotFound):
            await resolver.get(MOUNT)
    finally:
        await resolver.close()
    assert len(factory.made) == 2


class SlowFactory(CountingFactory):
    """A counting factory whose backends take ``delay`` seconds to open (an SDK client)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def __call__(self, uri: str, options: Mapping[str, str]) -> UfsBackend:
        time.sleep(self.delay)  # runs in a thread, as create_backend does
        return super().__call__(uri, options)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_prepare_opens_backends_ahead_and_a_read_joins_the_opening(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    other = "fedcba9876543210"
    table = MountTable()  # empty: a lookup would fail, so none may happen
    factory = SlowFactory(0.2)
    resolver = MountResolver(table, backend_factory=factory)
    try:
        resolver.prepare(
            [MountSpec(MOUNT, f"local://{tmp_path}/a"), MountSpec(other, f"local://{tmp_path}/b")]
        )
        resolved = await resolver.get(MOUNT)  # while its backend is opening: joins it
        assert resolved.spec.uri == f"local://{tmp_path}/a"
        await wait_until(lambda: len(resolver) == 2, "both mounts open")
        assert table.calls == 0 and len(factory.made) == 2 and resolver.prepared == 2
        assert [m.spec.mount_id for m in resolver.mounts()] == sorted([MOUNT, other])
        resolver.prepare([MountSpec(MOUNT, f"local://{tmp_path}/a")])  # same set: no work
        assert len(factory.made) == 2
    finally:
        await resolver.close()
    assert resolver.backends_closed == 2


async def test_prepare_drops_missing_mounts_and_closes_them_soon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mounts_module, "GONE_BACKEND_GRACE", 0.05)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    table = MountTable({MOUNT: MountSpec(MOUNT, f"local://{tmp_path}/a")})
    factory = CountingFactory()
    resolver = MountResolver(table, backend_factory=factory)
    try:
        first = await resolver.get(MOUNT)  # resolved by a read (GetMount)
        # Changed options in the list: looked up again (the table says b), then swapped.
        table.specs[MOUNT] = MountSpec(MOUNT, f"local://{tmp_path}/b")
        resolver.prepare([table.specs[MOUNT]])
        await wait_until(lambda: resolver.cached(MOUNT) is not first, "the swap")
        assert resolver.retired == 1 and resolver.backends_closed == 0
        resolver.prepare([])  # the dataset was deleted
        assert resolver.cached(MOUNT) is None and resolver.retired == 2
        await wait_until(lambda: resolver.backends_closed == 1, "the dropped backend closed")
        assert resolver.retired == 1  # the swapped one keeps its longer grace
    finally:
        await resolver.close()
    assert resolver.backends_closed == 2 and len(factory.made) == 2  # each closed once


async def test_a_mount_deleted_while_its_backend_opens_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mounts_module, "GONE_BACKEND_GRACE", 0.05)
    factory = SlowFactory(0.3)
    resolver = MountResolver(MountTable(), backend_factory=factory)
    try:
        resolver.prepare([MountSpec(MOUNT, f"local://{tmp_path}")])
        await asyncio.sleep(0.05)
        resolver.prepare([])  # deleted before the backend is open
        await wait_until(lambda: resolver.backends_closed == 1, "the late backend closed")
        assert resolver.cached(MOUNT) is None and len(factory.made) == 1
    finally:
        await resolver.close()


async def test_prepare_keeps_a_bad_mount_for_its_first_read_to_report(tmp_path: Path) -> None:
    table = MountTable()
    resolver = MountResolver(table)
    try:
        resolver.prepare([MountSpec(MOUNT, "nosuchscheme://bucket")])
        with pytest.raises(UnknownScheme, match="nosuchscheme"):
            await resolver.get(MOUNT)  # joins the opening and gets its error
        assert resolver.cached(MOUNT) is None and resolver.prepared == 0 and table.calls == 0
    finally:
        await resolver.close()


async def test_real_master_resolves_once_it_comes_up(tmp_path: Path, ufs_dir: Path) -> None:
    write_file(ufs_dir, "f.bin", 10)
    config = MasterConfig(home=tmp_path / "master")
    master = MasterServer(config)
    await master.start()
    try:
        port = master.grpc_port
        async with grpc.aio.insecure_channel(master.address) as channel:
            spec = {"mounts": [{"mountPoint": f"local://{ufs_dir}", "name": "m0"}]}
            ref = master_pb2.DatasetRef(namespace="ns", name="ds")
            await master_pb2_grpc.DatasetServiceStub(channel).ApplyDataset(
                master_pb2.ApplyDatasetRequest(ref=ref, spec_json=json.dumps(spec).encode())
            )
            reply = await master_pb2_grpc.MetadataServiceStub(channel).GetStatus(
                master_pb2.GetStatusRequest(dataset=ref, path="f.bin")
            )
        mount_id = reply.status.mount_id
    finally:
        await master.stop(grace=0.1)

    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=(("grpc.max_reconnect_backoff_ms", 200),)
    )
    resolver = MountResolver(
        MasterMountLookup(master_pb2_grpc.MetadataServiceStub(channel)), resolve_timeout=15.0
    )
    # The master restarts on the same port and reloads its datasets.
    master = MasterServer(dataclasses.replace(config, port=port))
    try:
        waiting = asyncio.ensure_future(resolver.get(mount_id))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # retrying while the master is away
        await master.start()
        resolved = await asyncio.wait_for(waiting, 10)
        assert resolved.spec.uri == f"local://{ufs_dir}"
        assert (resolved.spec.namespace, resolved.spec.dataset, resolved.spec.name) == (
            "ns",
            "ds",
            "m0",
        )
        with pytest.raises(NotFound):
            await resolver.get("feedfeedfeedfeed")
        await master.stop(grace=0.1)
        assert await resolver.get(mount_id) is resolved  # cached: no master needed
    finally:
        await resolver.close()
        await channel.close()
        await master.stop(grace=0.1)


def test_mount_spec_hides_options_from_its_description() -> None:
    spec = MountSpec(MOUNT, "s3://bucket/dir", {"fs.s3.accessKeySecret": "s3cr3t"})
    assert "s3cr3t" not in spec.describe()
    with pytest.raises(TypeError):
        spec.options["x"] = "y"  # type: ignore[index]


# ---------------------------------------------------------------- opener, local UFS


@pytest.fixture
async def local_opener(ufs_dir: Path, store: BlockStore) -> AsyncIterator[UfsBlockOpener]:
    resolver = MountResolver(MountTable({MOUNT: MountSpec(MOUNT, f"local://{ufs_dir}")}))
    try:
        yield UfsBlockOpener(store, resolver, ring_with_block_size())
    finally:
        await resolver.close()


def local_version(path: Path) -> str:
    return file_version(os.stat(path))


async def test_opener_loads_whole_blocks_then_hits(
    ufs_dir: Path, store: BlockStore, local_opener: UfsBlockOpener
) -> None:
    size = 2 * BLOCK + 1234
    data = write_file(ufs_dir, "f.bin", size)
    version = local_version(ufs_dir / "f.bin")
    for index in range(2):
        with await local_opener.open_block(request_for("f.bin", version, index)) as lease:
            assert lease.read() == data[index * BLOCK : (index + 1) * BLOCK]
    # Block 1 right after block 0 is a sequential miss: block 2 came with its run.
    await local_opener.wait_runs()
    assert local_opener.runs_started == 1
    assert _sample(store, "cachecluster_worker_block_misses_total") == 2
    assert _sample(store, "cachecluster_worker_bytes_fetched_total") == size
    for _ in range(2):
        with await local_opener.open_block(request_for("f.bin", version, 2)) as lease:
            assert lease.length == 1234
            assert lease.read() == data[2 * BLOCK :]
    assert _sample(store, "cachecluster_worker_block_misses_total") == 2
    assert _sample(store, "cachecluster_worker_block_hits_total", {"medium": "MEM"}) == 2


async def test_opener_refuses_a_block_id_that_does_not_match_its_key(
    ufs_dir: Path, local_opener: UfsBlockOpener
) -> None:
    write_file(ufs_dir, "f.bin", BLOCK)
    version = local_version(ufs_dir / "f.bin")
    good = request_for("f.bin", version, 0)
    other = BlockKey(MOUNT, "f.bin", version, 1).id
    forged = ReadRequest(1, other, good.key, 0, BLOCK)
    with pytest.raises(InvalidArgument, match="does not match"):
        await local_opener.open_block(forged)
    with pytest.raises(InvalidArgument, match="not normalised"):
        await local_opener.open_block(request_for("./f.bin", version, 0))
    with pytest.raises(InvalidArgument):
        await local_opener.open_block(request_for("../etc/passwd", version, 0))


async def test_opener_past_the_end_is_not_found_and_a_changed_file_a_conflict(
    ufs_dir: Path, local_opener: UfsBlockOpener
) -> None:
    write_file(ufs_dir, "f.bin", BLOCK + 10)
    version = local_version(ufs_dir / "f.bin")
    with pytest.raises(NotFound, match="past the end"):
        await local_opener.open_block(request_for("f.bin", version, 2))
    write_file(ufs_dir, "empty.bin", 0)
    with pytest.raises(NotFound):
        await local_opener.open_block(
            request_for("empty.bin", local_version(ufs_dir / "empty.bin"), 0)
        )
    write_file(ufs_dir, "f.bin", BLOCK + 11, seed=2)  # a new version
    with pytest.raises(VersionChanged):
        await local_opener.open_block(request_for("f.bin", version, 0))
    with pytest.raises(NotFound):
        await local_opener.open_block(request_for("missing.bin", "1-1", 0))


async def test_opener_without_block_size_is_unavailable(ufs_dir: Path, store: BlockStore) -> None:
    write_file(ufs_dir, "f.bin", 10)
    resolver = MountResolver(MountTable({MOUNT: MountSpec(MOUNT, f"local://{ufs_dir}")}))
    opener = UfsBlockOpener(store, resolver, RingView("w-test"))
    try:
        with pytest.raises(Unavailable, match="block size"):
            await opener.open_block(request_for("f.bin", local_version(ufs_dir / "f.bin"), 0))
    finally:
        await resolver.close()


async def test_opener_load_reports_already_cached(
    ufs_dir: Path, local_opener: UfsBlockOpener
) -> None:
    write_file(ufs_dir, "f.bin", BLOCK + 5)
    key = BlockKey(MOUNT, "f.bin", local_version(ufs_dir / "f.bin"), 1)
    first = await local_opener.load(key.id, key)
    assert (first.already_cached, first.bytes_fetched) == (False, 5)
    assert len(local_opener.buffers) == 1  # the block is stored: its buffer is free again
    again = await local_opener.load(key.id, key)
    assert (again.already_cached, again.bytes_fetched) == (True, 0)


async def test_data_server_over_the_opener_serves_ranges_and_error_kinds(
    ufs_dir: Path, local_opener: UfsBlockOpener
) -> None:
    data = write_file(ufs_dir, "f.bin", BLOCK + 100)
    version = local_version(ufs_dir / "f.bin")
    async with DataServer(local_opener, port=0) as server:
        conn = await DataConnection.connect("127.0.0.1", server.port)
        try:
            buf = bytearray(BLOCK)
            key = BlockKey(MOUNT, "f.bin", version, 1)
            ref = BlockRef(MOUNT, "f.bin", version, 1)
            got = await conn.read_block(key.id, ref, 10, BLOCK, buf)
            assert bytes(buf[:got]) == data[BLOCK + 10 :]
            key0 = BlockKey(MOUNT, "f.bin", version, 0)
            got = await conn.read_block(key0.id, BlockRef(MOUNT, "f.bin", version, 0), 7, 99, buf)
            assert bytes(buf[:got]) == data[7:106]
            stale = BlockKey(MOUNT, "f.bin", "0-0", 0)
            with pytest.raises(VersionChanged):
                await conn.read_block(stale.id, BlockRef(MOUNT, "f.bin", "0-0", 0), 0, 10, buf)
            # The connection survives error responses.
            got = await conn.read_block(key.id, ref, 0, 100, buf)
            assert bytes(buf[:got]) == data[BLOCK:]
        finally:
            await conn.close()


# ---------------------------------------------------------------- opener, S3


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> Iterator[str]:
    bucket = f"worker-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    yield bucket


async def test_opener_reads_s3_blocks_with_the_etag_pinned(
    s3_server: SeaweedS3, s3_bucket: str, store: BlockStore
) -> None:
    client = s3_server.client()
    data = random.Random(7).randbytes(3 * BLOCK + 17)
    client.put_object(Bucket=s3_bucket, Key="dir/obj.bin", Body=data)
    etag = client.head_object(Bucket=s3_bucket, Key="dir/obj.bin")["ETag"].strip('"')
    spec = MountSpec(MOUNT, f"s3://{s3_bucket}/dir", s3_server.backend_options())
    resolver = MountResolver(MountTable({MOUNT: spec}))
    opener = UfsBlockOpener(store, resolver, ring_with_block_size())
    try:
        status = await (await resolver.get(MOUNT)).backend.stat("obj.bin")
        assert status.version.strip('"') == etag
        parts = await asyncio.gather(
            *(opener.open_block(request_for("obj.bin", status.version, i)) for i in range(4))
        )
        joined = b""
        for lease in parts:
            joined += lease.read()
            lease.close()
        assert joined == data
        client.put_object(Bucket=s3_bucket, Key="dir/obj.bin", Body=b"changed")
        stale = request_for("obj.bin", status.version, 0)
        assert await store.evict(stale.block_id)  # the next read must go to the UFS again
        with pytest.raises(VersionChanged):
            await opener.open_block(stale)
    finally:
        await resolver.close()


def _sample(store: BlockStore, name: str, labels: dict[str, str] | None = None) -> float:
    value = store.metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0
