"""A worker with a cluster secret serves a block only under a valid read capability."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cachecluster.client.data_conn import DataConnection
from cachecluster.common import auth
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import PermissionDenied
from cachecluster.common.frames import BlockRef
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.data_server import DataServer
from cachecluster.worker.mounts import MountResolver, MountSpec
from cachecluster.worker.opener import UfsBlockOpener
from cachecluster.worker.tiers import Medium, TierConfig
from tests.worker.test_mounts import (
    BLOCK,
    MOUNT,
    MountTable,
    local_version,
    ring_with_block_size,
    write_file,
)

SECRET = bytes(range(32))
OTHER_MOUNT = "fedcba9876543210"


@pytest.fixture
async def secure_opener(tmp_path: Path, shm_dir: Path) -> AsyncIterator[UfsBlockOpener]:
    ufs = tmp_path / "ufs"
    (ufs / "sub").mkdir(parents=True)
    resolver = MountResolver(
        MountTable(
            {
                MOUNT: MountSpec(MOUNT, f"local://{ufs}"),
                OTHER_MOUNT: MountSpec(OTHER_MOUNT, f"local://{ufs}"),
            }
        )
    )
    tier = TierConfig(Medium.MEM, str(shm_dir / "mem"), 64 * BLOCK)
    async with BlockStore([tier]) as store:
        try:
            yield UfsBlockOpener(store, resolver, ring_with_block_size(), cluster_secret=SECRET)
        finally:
            await resolver.close()


async def test_worker_refuses_missing_forged_expired_and_out_of_scope_capabilities(
    tmp_path: Path, secure_opener: UfsBlockOpener
) -> None:
    ufs = tmp_path / "ufs"
    data = write_file(ufs / "sub", "f.bin", 1000)
    write_file(ufs, "top.bin", 1000)
    version = local_version(ufs / "sub" / "f.bin")
    top_version = local_version(ufs / "top.bin")
    key = BlockKey(MOUNT, "sub/f.bin", version, 0)
    ref = BlockRef(MOUNT, "sub/f.bin", version, 0)
    good, _ = auth.issue_capability(SECRET, "ref", {MOUNT: "sub"}, 60)
    expired, _ = auth.issue_capability(SECRET, "ref", {MOUNT: "sub"}, 60, now=0)
    forged, _ = auth.issue_capability(bytes(32), "ref", {MOUNT: "sub"}, 60)
    body, _, mac = good.partition(b".")
    wider, _ = auth.issue_capability(bytes(32), "ref", {MOUNT: ""}, 60)
    tampered = wider.partition(b".")[0] + b"." + mac  # wider payload, the good signature
    other_mount, _ = auth.issue_capability(SECRET, "ref", {OTHER_MOUNT: ""}, 60)
    async with DataServer(secure_opener, port=0) as server:
        conn = await DataConnection.connect("127.0.0.1", server.port)
        try:
            buf = bytearray(BLOCK)
            for cap, reason in (
                (None, "required"),
                (expired, "expired"),
                (forged, "signature"),
                (tampered, "signature"),
                (b"garbage", "malformed"),
                (other_mount, "does not cover"),
            ):
                with pytest.raises(PermissionDenied, match=reason):
                    await conn.read_block(key.id, ref, 0, 1000, buf, cap=cap)
            # A capability for the subtree does not reach outside it.
            top = BlockKey(MOUNT, "top.bin", top_version, 0)
            top_ref = BlockRef(MOUNT, "top.bin", top_version, 0)
            with pytest.raises(PermissionDenied, match="outside"):
                await conn.read_block(top.id, top_ref, 0, 1000, buf, cap=good)
            # The connection survived every refusal.
            got = await conn.read_block(key.id, ref, 0, 1000, buf, cap=good)
            assert bytes(buf[:got]) == data
            assert body  # the good capability has a payload and a signature
        finally:
            await conn.close()
