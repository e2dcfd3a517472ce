"""The mount's inode table: lookups counted, inodes freed when the kernel forgets them.

In process, over a real client of the session's cluster (no mount needed:
the kernel's side is the ``lookup`` and ``forget`` calls made here).
"""

from __future__ import annotations

import errno
from typing import Any, cast

import pyfuse3
import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.fuse.ops import CacheClusterOperations, MountView
from tests.fuse.conftest import FILES_A, FuseCluster

NO_CTX = cast(Any, None)


async def test_forgotten_inodes_are_freed(fuse_cluster: FuseCluster) -> None:
    cluster = fuse_cluster.cluster
    async with AsyncClient(cluster.master_address, token=cluster.token("ta")) as client:
        ops = CacheClusterOperations(client, MountView("ta/data"), attr_timeout=1.0)
        start = ops.inode_count
        name = pyfuse3.FileNameT(b"one.bin")
        first = await ops.lookup(pyfuse3.ROOT_INODE, name, NO_CTX)
        again = await ops.lookup(pyfuse3.ROOT_INODE, name, NO_CTX)
        assert first.st_ino == again.st_ino and ops.inode_count == start + 1
        await ops.forget([(first.st_ino, 1)])  # one lookup is still held
        assert (await ops.getattr(first.st_ino)).st_size == len(FILES_A["one.bin"])
        await ops.forget([(first.st_ino, 1), (pyfuse3.ROOT_INODE, 1)])  # the root stays
        assert ops.inode_count == start
        with pytest.raises(pyfuse3.FUSEError) as caught:
            await ops.getattr(first.st_ino)
        assert caught.value.errno == errno.ENOENT
        assert (await ops.getattr(pyfuse3.ROOT_INODE)).st_ino == pyfuse3.ROOT_INODE
        later = await ops.lookup(pyfuse3.ROOT_INODE, name, NO_CTX)  # a new inode, same file
        assert later.st_ino != first.st_ino
        assert later.st_size == len(FILES_A["one.bin"])
        # Many files looked up and forgotten leave the table as it was.
        big = pyfuse3.FileNameT(b"big")
        folder = await ops.lookup(pyfuse3.ROOT_INODE, big, NO_CTX)
        inner = await ops.lookup(folder.st_ino, pyfuse3.FileNameT(b"seven.bin"), NO_CTX)
        await ops.forget([(inner.st_ino, 1), (folder.st_ino, 1), (later.st_ino, 1)])
        assert ops.inode_count == start
