"""Dataset and runtime status as Fluid shows it: the figures behind ``cachecluster get``.

For each dataset (a reference: its source, below its subpath):

* **UFS TOTAL SIZE** and **FILE COUNT**: from a recursive listing through the
  :class:`~cachecluster.master.metadata.MetadataCache`, computed in the
  background and kept for ``ufs_refresh`` seconds; a ``get`` answers from the
  last listing and starts a new one when it is old (``refresh`` waits for it);
* **CACHED**: bytes of the dataset's blocks that at least one worker on the
  ring reports holding. Block ids are computed for every block of every file
  (``BlockKey(mount_id, mount_path, version, index)``, the same ids readers
  and workers use) and looked up in the membership's block sets, in a thread;
  the result is kept for ``cached_ttl`` seconds;
* **CACHE CAPACITY**: the tier capacities of the runtime's workers (in local
  mode every worker of the cluster serves every runtime);
* **CACHED PERCENTAGE**: ``100 * cached / total`` (``100.0%`` for an empty dataset);
* **PHASE**: ``Failed`` when the source is missing, the reference chains or the
  UFS listing fails; ``NotBound`` when no worker is on the ring or the named
  runtime is not registered; ``Bound`` otherwise;
* **CACHE HIT RATIO**: ``hits / (hits + misses)`` summed over the workers.

Runtimes: MASTER PHASE is ``Ready`` (this master answers); WORKER PHASE is
``Ready`` when at least ``replicas`` workers are ACTIVE, ``PartialReady`` with
fewer but some, ``NotReady`` with none; FUSE PHASE is ``Ready`` in local mode,
where readers use the client or a FUSE mount of their own and the runtime runs
no FUSE daemon that could be unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from cachecluster.common.block_key import DEFAULT_BLOCK_SIZE, BlockKey, block_count
from cachecluster.common.errors import CacheClusterError, InvalidArgument, NotFound
from cachecluster.master.datasets import DatasetRecord, DatasetRegistry
from cachecluster.master.membership import Membership, WorkerState
from cachecluster.master.metadata import MetadataCache
from cachecluster.master.references import effective_access_modes, reference_of, resolve_source

log = logging.getLogger(__name__)

UFS_REFRESH_S = 30.0
CACHED_TTL_S = 2.0
FIRST_LISTING_WAIT_S = 5.0
LIST_PAGE_SIZE = 10_000

PHASE_BOUND = "Bound"
PHASE_NOT_BOUND = "NotBound"
PHASE_FAILED = "Failed"
READY = "Ready"
NOT_READY = "NotReady"
PARTIAL_READY = "PartialReady"


@dataclasses.dataclass(frozen=True, slots=True)
class FileBlocks:
    """One file of a dataset as far as caching goes."""

    mount_id: str
    mount_path: str
    version: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Listing:
    files: tuple[FileBlocks, ...]
    total_bytes: int
    computed_at: float  # monotonic
    computed_ms: int  # wall clock
    error: str = ""


@dataclasses.dataclass(slots=True)
class DatasetFigures:
    """What ``get datasets`` prints for one dataset (``DatasetStatus`` in status.proto)."""

    namespace: str
    name: str
    phase: str
    ufs_total_bytes: int = -1
    cached_bytes: int = -1
    cache_capacity_bytes: int = 0
    cached_percentage: float = -1.0
    file_count: int = -1
    cache_hit_ratio: float = -1.0
    created_ms: int = 0
    runtime: str = ""
    reference: str = ""
    access_modes: tuple[str, ...] = ()
    message: str = ""
    ufs_computed_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """A registered runtime, as the runtime registry describes it."""

    namespace: str
    name: str
    kind: str
    replicas: int
    created_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeFigures:
    """What ``get runtimes`` prints for one runtime (``RuntimeStatus`` in status.proto)."""

    namespace: str
    name: str
    kind: str
    master_phase: str
    worker_phase: str
    fuse_phase: str
    desired_workers: int
    ready_workers: int
    cache_capacity_bytes: int
    created_ms: int


RuntimeSource = Callable[[str], Sequence[RuntimeInfo]]
"""Runtimes of a namespace ("" = all), from the runtime registry."""


def worker_phase(ready: int, desired: int) -> str:
    """``Ready``, ``PartialReady`` or ``NotReady`` for ``ready`` of ``desired`` workers."""
    if ready >= max(desired, 1):
        return READY
    return PARTIAL_READY if ready > 0 else NOT_READY


def cached_bytes_of(
    files: Iterable[FileBlocks], block_sets: Sequence[set[str]], block_size: int
) -> int:
    """Bytes of ``files`` whose blocks are in at least one of ``block_sets``.

    Runs in a thread: membership tests on sets the event loop may change are
    atomic; the sets are never iterated here.
    """
    cached = 0
    for file in files:
        count = block_count(file.size, block_size)
        for index in range(count):
            block_id = BlockKey(file.mount_id, file.mount_path, file.version, index).id
            if any(block_id in blocks for blocks in block_sets):
                cached += min(block_size, file.size - index * block_size)
    return cached


class DatasetStatusBoard:
    """Computes and caches dataset figures; answers runtime phases."""

    def __init__(
        self,
        registry: DatasetRegistry,
        metadata: MetadataCache,
        membership: Membership,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        ufs_refresh: float = UFS_REFRESH_S,
        cached_ttl: float = CACHED_TTL_S,
        runtimes: RuntimeSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.metadata = metadata
        self.membership = membership
        self.block_size = block_size
        self.ufs_refresh = ufs_refresh
        self.cached_ttl = cached_ttl
        self.runtimes = runtimes
        self._clock = clock
        # (namespace, name, subpath, generation) of the source -> listing
        self._listings: dict[tuple[str, str, str, int], _Listing] = {}
        self._pending: dict[tuple[str, str, str, int], asyncio.Task[_Listing]] = {}
        # listing key -> (cached bytes, computed_at, listing it counted)
        self._cached: dict[tuple[str, str, str, int], tuple[int, float, _Listing]] = {}

    # -- listings --------------------------------------------------------------

    async def _list_files(self, source: DatasetRecord, subpath: str) -> _Listing:
        files: list[FileBlocks] = []
        token = ""
        try:
            while True:
                entries, token = await self.metadata.list_status(
                    source.namespace,
                    source.name,
                    subpath,
                    recursive=True,
                    page_size=LIST_PAGE_SIZE,
                    page_token=token,
                )
                files.extend(
                    FileBlocks(entry.mount_id, entry.mount_path, entry.version, entry.size)
                    for entry in entries
                    if not entry.is_dir and entry.mount_id
                )
                if not token:
                    break
        except NotFound:
            files = []  # an empty bucket prefix, or a subpath that is not there (yet)
        except (CacheClusterError, OSError) as exc:
            log.warning("status of %s: listing failed: %s", source.ref, exc)
            return _Listing((), 0, self._clock(), int(time.time() * 1000), error=str(exc))
        return _Listing(
            files=tuple(files),
            total_bytes=sum(file.size for file in files),
            computed_at=self._clock(),
            computed_ms=int(time.time() * 1000),
        )

    def _start_listing(
        self, key: tuple[str, str, str, int], source: DatasetRecord, subpath: str
    ) -> asyncio.Task[_Listing]:
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._list_files(source, subpath))
            self._pending[key] = task

            def done(finished: asyncio.Task[_Listing]) -> None:
                if self._pending.get(key) is finished:
                    del self._pending[key]
                if not finished.cancelled() and finished.exception() is None:
                    self._listings[key] = finished.result()

            task.add_done_callback(done)
        return task

    async def _listing(
        self, source: DatasetRecord, subpath: str, refresh: bool
    ) -> tuple[tuple[str, str, str, int], _Listing | None]:
        key = (source.namespace, source.name, subpath, source.generation)
        known = self._listings.get(key)
        fresh = known is not None and self._clock() - known.computed_at < self.ufs_refresh
        if fresh and not refresh:
            return key, known
        task = self._start_listing(key, source, subpath)
        if refresh:
            return key, await asyncio.shield(task)
        if known is not None:
            return key, known  # answer now; the new listing lands in the background
        with contextlib.suppress(asyncio.TimeoutError):
            return key, await asyncio.wait_for(asyncio.shield(task), FIRST_LISTING_WAIT_S)
        return key, None

    async def _cached_bytes(
        self, key: tuple[str, str, str, int], listing: _Listing, refresh: bool
    ) -> int:
        known = self._cached.get(key)
        if (
            known is not None
            and not refresh
            and known[2] is listing
            and self._clock() - known[1] < self.cached_ttl
        ):
            return known[0]
        block_sets = [record.blocks for record in self.membership.ring_members()]
        value = await asyncio.to_thread(cached_bytes_of, listing.files, block_sets, self.block_size)
        self._cached[key] = (value, self._clock(), listing)
        return value

    def forget_stale(self) -> None:
        """Drop figures of datasets that went away or changed generation."""
        live = {(r.namespace, r.name, r.generation) for r in self.registry.datasets()}
        for key in [key for key in self._listings if (key[0], key[1], key[3]) not in live]:
            del self._listings[key]
            self._cached.pop(key, None)

    # -- cluster figures ---------------------------------------------------------

    def cache_capacity(self) -> int:
        """Sum of the tier capacities of the workers on the ring."""
        return sum(
            tier.capacity_bytes
            for record in self.membership.ring_members()
            for tier in record.tiers
        )

    def hit_ratio(self) -> float:
        """``hits / (hits + misses)`` over the workers on the ring; -1 before any read."""
        hits = misses = 0
        for record in self.membership.ring_members():
            hits += record.counters.hits
            misses += record.counters.misses
        return hits / (hits + misses) if hits + misses else -1.0

    def _runtime_of(self, record: DatasetRecord) -> tuple[str, str]:
        """``(runtime "ns/name" or "", why it is not bound or "")``."""
        binding = getattr(record, "runtime", None)
        if binding and any(binding):  # ("", "") binds to the running cluster
            namespace, name = binding
            ref = f"{namespace}/{name}"
            if self.runtimes is not None:
                known = {(info.namespace, info.name) for info in self.runtimes(namespace)}
                if (namespace, name) not in known:
                    return ref, f"runtime {ref} is not registered"
            return ref, ""
        return "", ""

    # -- the answers -------------------------------------------------------------

    async def dataset_status(
        self, namespace: str, name: str, *, refresh: bool = False
    ) -> DatasetFigures:
        """The figures of ``namespace/name``; ``NotFound`` when there is no such dataset."""
        record = self.registry.get(namespace, name)
        self.forget_stale()
        return await self._figures(record, refresh)

    async def list_status(
        self, namespace: str = "", *, refresh: bool = False
    ) -> list[DatasetFigures]:
        """Figures of every dataset of ``namespace`` ("" = all), by namespace then name."""
        records = self.registry.datasets(namespace)
        self.forget_stale()
        return list(await asyncio.gather(*(self._figures(r, refresh) for r in records)))

    async def _figures(self, record: DatasetRecord, refresh: bool) -> DatasetFigures:
        reference = None
        with contextlib.suppress(InvalidArgument):
            reference = reference_of(record)
        figures = DatasetFigures(
            namespace=record.namespace,
            name=record.name,
            phase=PHASE_BOUND,
            created_ms=record.created_ms,
            reference=reference.uri if reference is not None else "",
            cache_capacity_bytes=self.cache_capacity(),
            cache_hit_ratio=self.hit_ratio(),
            access_modes=effective_access_modes(self.registry, record),
        )
        try:
            source, subpath = resolve_source(self.registry, record)
        except (NotFound, InvalidArgument) as exc:
            figures.phase = PHASE_FAILED
            figures.message = str(exc)
            return figures
        figures.runtime, unbound = self._runtime_of(source)
        if unbound:
            figures.phase, figures.message = PHASE_NOT_BOUND, unbound
        elif not self.membership.ring_members():
            figures.phase, figures.message = PHASE_NOT_BOUND, "no worker is on the ring"
        key, listing = await self._listing(source, subpath, refresh)
        if listing is None:
            figures.message = figures.message or "UFS listing in progress"
            return figures
        if listing.error:
            figures.phase = PHASE_FAILED
            figures.message = f"listing the UFS failed: {listing.error}"
            return figures
        figures.ufs_total_bytes = listing.total_bytes
        figures.file_count = len(listing.files)
        figures.ufs_computed_ms = listing.computed_ms
        figures.cached_bytes = await self._cached_bytes(key, listing, refresh)
        figures.cached_percentage = (
            100.0 * figures.cached_bytes / listing.total_bytes if listing.total_bytes else 100.0
        )
        return figures

    def runtime_status(self, namespace: str = "") -> list[RuntimeFigures]:
        """Phases of every registered runtime of ``namespace`` ("" = all)."""
        if self.runtimes is None:
            return []
        ready = self.membership.count_in_state(WorkerState.ACTIVE)
        capacity = self.cache_capacity()
        return [
            RuntimeFigures(
                namespace=info.namespace,
                name=info.name,
                kind=info.kind,
                master_phase=READY,
                worker_phase=worker_phase(ready, info.replicas),
                fuse_phase=READY,
                desired_workers=info.replicas,
                ready_workers=ready,
                cache_capacity_bytes=capacity,
                created_ms=info.created_ms,
            )
            for info in sorted(self.runtimes(namespace), key=lambda i: (i.namespace, i.name))
        ]

    async def close(self) -> None:
        """Cancel listings in flight."""
        for task in list(self._pending.values()):
            task.cancel()
        self._pending.clear()
