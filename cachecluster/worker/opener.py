"""The worker's block opener: serve a block from the store, fetching it from the UFS on a miss.

:class:`UfsBlockOpener` is the data server's ``BlockOpener`` and also what
``WorkerService.LoadBlocks`` loads through, so that a reader and a load of the
same block share one UFS fetch (the store's single flight).

A request names its block twice: by id and by key (mount id, path in the
mount, file version, block index). The opener recomputes the id from the key
and refuses a mismatch, so that a reader can never make the worker store
bytes under another block's id. On a miss the loader reads the whole block
(``block_size`` bytes, short at the end of the file) with the file version
pinned: a UFS object that changed since the reader saw it raises
``VersionChanged`` and the reader gets a ``conflict`` error, never mixed bytes.

After a fetch from the UFS, if this worker is the block's first owner on the
ring and the cluster keeps more than one replica, the other owners are asked
to load the block too (:class:`~cachecluster.worker.replication.Replicator`,
in the background, best effort).
"""

from __future__ import annotations

import dataclasses
import logging

from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.common.frames import ReadRequest
from cachecluster.common.paths import normalize_path
from cachecluster.worker.block_file import BlockLease
from cachecluster.worker.block_key import BlockKey, check_block_id
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.mounts import MountResolver
from cachecluster.worker.placement import RingView
from cachecluster.worker.replication import Replicator

log = logging.getLogger("cachecluster.worker.opener")


@dataclasses.dataclass(frozen=True, slots=True)
class LoadOutcome:
    """What loading one block did: nothing (``already_cached``) or a fetch of ``bytes_fetched``."""

    block_id: str
    already_cached: bool
    bytes_fetched: int


def checked_key(block_id: str, mount_id: str, path: str, version: str, index: int) -> BlockKey:
    """The key of a block request, refusing an id that does not match it.

    The path must already be normal (relative, no ``.``/``..``/double
    slashes): it is part of the block id, so two spellings of one file would
    otherwise cache its bytes twice.
    """
    check_block_id(block_id)
    key = BlockKey(mount_id, path, version, index)
    if normalize_path(path) != path:
        raise InvalidArgument(f"block path {path!r} is not normalised")
    if not version:
        raise InvalidArgument(f"block {block_id}: the file version is empty")
    if key.id != block_id:
        raise InvalidArgument(
            f"block id {block_id} does not match its key "
            f"(mount {mount_id}, path {path!r}, version {version!r}, index {index})"
        )
    return key


class UfsBlockOpener:
    """Leases blocks from ``store``, loading misses from the mount's UFS."""

    def __init__(
        self,
        store: BlockStore,
        mounts: MountResolver,
        ring: RingView,
        *,
        replicator: Replicator | None = None,
    ) -> None:
        self.store = store
        self.mounts = mounts
        self.ring = ring
        self.replicator = replicator

    async def open_block(self, request: ReadRequest) -> BlockLease:
        """The data server's entry point: a lease on the requested block (see the module doc)."""
        ref = request.key
        key = checked_key(request.block_id, ref.mount, ref.path, ref.version, ref.index)
        return await self.store.get(request.block_id, lambda: self.fetch(key))

    async def load(self, block_id: str, key: BlockKey) -> LoadOutcome:
        """Make sure a block is cached (LoadBlocks); ``key`` must be checked by the caller."""
        if self.store.contains(block_id):
            return LoadOutcome(block_id, True, 0)
        fetched = 0

        async def loader() -> memoryview:
            nonlocal fetched
            data = await self.fetch(key)
            fetched = len(data)
            return data

        lease = await self.store.get(block_id, loader)
        lease.close()
        return LoadOutcome(block_id, False, fetched)

    async def fetch(self, key: BlockKey) -> memoryview:
        """Read block ``key`` from its UFS: ``block_size`` bytes, fewer at the end of the file.

        Runs at most once per block at a time (it is the store's loader).
        Raises ``NotFound`` for a block past the end of the file,
        ``VersionChanged`` when the file has another version now.
        """
        block_size = self.ring.require_block_size()
        mount = await self.mounts.get(key.mount_id)
        buffer = bytearray(block_size)
        view = memoryview(buffer)
        offset = key.index * block_size
        count = await mount.backend.read_into(key.path, offset, view, version=key.version)
        if count <= 0:
            raise NotFound(
                f"block {key.index} of {mount.spec.uri.rstrip('/')}/{key.path} is past the end "
                f"of the file (offset {offset})"
            )
        if count < block_size // 4:  # a small file: do not keep a whole block's buffer alive
            view = memoryview(bytes(view[:count]))
        block_id = key.id
        if self.replicator is not None and self.ring.replicas > 1:
            owners = self.ring.owners(block_id)
            if owners and owners[0] == self.ring.worker_id:
                self.replicator.submit(block_id, key, mount.spec.uri, offset, count, owners[1:])
        return view[:count]
