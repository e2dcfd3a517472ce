"""What a client knows of the cluster: the ring, file metadata and mounts, cached.

:class:`ClusterView` sits between the readers and :class:`MasterApi`:

* **Ring.** Fetched on first use, then refreshed in the background every
  ``ring_refresh_interval`` seconds and soon after a worker failure
  (:meth:`ClusterView.request_ring_refresh`). ``GetRing`` carries the epoch
  the client holds, so an unchanged ring costs one tiny call; a new epoch is
  rebuilt in a thread (a 1,000-worker ring takes about half a second) and
  swapped in whole.
* **Placement.** :meth:`ClusterView.candidates` lists the workers to try for
  a block: its owners in ring order, then the next distinct workers on the
  ring ("any other live worker"). Workers the master sees missing heartbeats
  come last; workers that failed lately (suspects, for ``suspect_seconds``)
  are skipped but for one probe a second, so a dead worker costs one failed
  attempt a second rather than one a block.
* **Metadata.** ``stat`` and ``list_dir`` answers live ``metadata_ttl`` seconds;
  a listing also fills the status of each entry, and a ``stat`` whose entry
  expired in a folder listed before lists that folder again (one call for
  all its files rather than one a file, as a reader walking a folder of
  10,000 files needs). A folder with :data:`LIST_AFTER_MISSES` stat misses
  within ``metadata_ttl`` is listed (in the background) even if never listed
  before: a reader opening its files one by one then costs one call, not one
  a file. One call a key is in flight at a time. When the
  master cannot be reached, expired entries keep being served, so reads go
  on while it is away.
* **Mounts.** ``GetMount`` answers and one UFS backend a mount, for reading
  straight from the UFS when no worker can serve a block.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from cachecluster.client.data_conn import WorkerAddress
from cachecluster.client.master_api import (
    DatasetPath,
    FileInfo,
    MasterApi,
    MemberInfo,
    MountInfo,
    RingInfo,
)
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import CacheClusterError, NotFound, Unavailable
from cachecluster.common.ring import HashRing
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.registry import create_backend

log = logging.getLogger("cachecluster.client")

DEFAULT_METADATA_TTL = 5.0
DEFAULT_RING_REFRESH_INTERVAL = 3.0
DEFAULT_SUSPECT_SECONDS = 10.0
SUSPECT_PROBE_INTERVAL = 1.0
"""Seconds between two attempts on a suspect worker."""
DEFAULT_EXTRA_WORKERS = 2
"""Workers beyond a block's owners to try before the UFS."""
MAX_METADATA_ENTRIES = 100_000
LIST_AFTER_MISSES = 8
"""Stat misses in one folder (within ``metadata_ttl``) after which it is listed."""
_MIN_REFRESH_GAP = 0.2

T = TypeVar("T")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """A worker to try for a block, and how to reach it."""

    worker_id: str
    address: WorkerAddress


@dataclass(frozen=True, slots=True)
class RingState:
    """One epoch of the ring, built: placement plus the address of every member."""

    info: RingInfo
    ring: HashRing
    members: dict[str, MemberInfo]
    addresses: dict[str, WorkerAddress]
    missing_beats: frozenset[str]
    """Members the master sees as SUSPECT (missed heartbeats): tried last."""

    @property
    def epoch(self) -> int:
        """The master's membership epoch of this ring."""
        return self.info.epoch

    @property
    def block_size(self) -> int:
        """The cluster's block size in bytes."""
        return self.info.block_size

    @property
    def replicas(self) -> int:
        """Copies of each block on distinct workers."""
        return self.info.replicas

    def owners(self, key: BlockKey) -> list[str]:
        """The workers that own block ``key``, primary first (placed by its group)."""
        return self.ring.owners(key.placement_key(self.block_size), self.replicas)


def order_candidates(
    ring_order: list[str], last: Collection[str], skip: Collection[str] = ()
) -> list[str]:
    """``ring_order`` without ``skip``, the workers in ``last`` moved to the end.

    Each part keeps its ring order.
    """
    healthy = [w for w in ring_order if w not in last and w not in skip]
    return healthy + [w for w in ring_order if w in last and w not in skip]


@dataclass(slots=True)
class _Cached:
    expires: float
    value: object


class ClusterView:
    """The ring, metadata and mount caches of one client (one event loop)."""

    def __init__(
        self,
        api: MasterApi,
        *,
        metadata_ttl: float = DEFAULT_METADATA_TTL,
        ring_refresh_interval: float = DEFAULT_RING_REFRESH_INTERVAL,
        suspect_seconds: float = DEFAULT_SUSPECT_SECONDS,
        extra_workers: int = DEFAULT_EXTRA_WORKERS,
        prefer_unix: bool = True,
    ) -> None:
        self.api = api
        self.metadata_ttl = metadata_ttl
        self.ring_refresh_interval = ring_refresh_interval
        self.suspect_seconds = suspect_seconds
        self.extra_workers = max(0, extra_workers)
        self.prefer_unix = prefer_unix
        self._ring: RingState | None = None
        self._ring_lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._refresh_wanted = asyncio.Event()
        # worker id -> [monotonic time it stops being suspect, time of its next probe]
        self._suspects: dict[str, list[float]] = {}
        self._metadata: OrderedDict[tuple[str, ...], _Cached] = OrderedDict()
        self._fetching: dict[tuple[str, ...], asyncio.Future[object]] = {}
        self._mounts: dict[str, MountInfo] = {}
        self._backends: dict[str, UfsBackend] = {}
        self._mount_locks: dict[str, asyncio.Lock] = {}
        self._local_hosts: frozenset[str] | None = None
        # folder -> (stat misses, monotonic time the count started)
        self._misses: dict[str, tuple[int, float]] = {}
        self._listings: set[asyncio.Task[object]] = set()
        self._closed = False

    # ------------------------------------------------------------ ring

    async def ring(self) -> RingState:
        """The current ring; fetched from the master on first use."""
        state = self._ring
        if state is None:
            state = await self.refresh_ring(if_missing=True)
        if self._refresher is None and not self._closed:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        return state

    async def refresh_ring(self, *, if_missing: bool = False) -> RingState:
        """Ask the master for the ring now; rebuild it when the epoch changed.

        With ``if_missing``, a ring fetched meanwhile (by a concurrent first
        reader) is returned as is.
        """
        async with self._ring_lock:
            known = self._ring
            if if_missing and known is not None:
                return known
            info = await self.api.get_ring(known.epoch if known is not None else 0)
            if info is None and known is not None:
                return known
            assert info is not None
            ring = await asyncio.to_thread(HashRing.from_snapshot, info.snapshot())
            local = await self._local()
            members = {m.worker_id: m for m in info.members}
            addresses = {
                m.worker_id: WorkerAddress(
                    m.host,
                    m.data_port,
                    m.unix_socket if self.prefer_unix and m.host in local else None,
                )
                for m in info.members
            }
            suspect = frozenset(m.worker_id for m in info.members if m.suspect)
            state = RingState(info, ring, members, addresses, suspect)
            if known is None or known.epoch != state.epoch:
                log.info("ring epoch %d: %d workers", state.epoch, len(members))
            self._ring = state
            return state

    def request_ring_refresh(self) -> None:
        """Refresh the ring soon (in the background), e.g. after a worker failed."""
        self._refresh_wanted.set()

    async def _refresh_loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_wanted.wait(), self.ring_refresh_interval)
            self._refresh_wanted.clear()
            try:
                await self.refresh_ring()
            except Exception as exc:  # the master may be away: keep the ring we have
                log.debug("ring refresh failed: %s", exc)
            await asyncio.sleep(_MIN_REFRESH_GAP)

    async def _local(self) -> frozenset[str]:
        if self._local_hosts is None:
            self._local_hosts = await asyncio.to_thread(_local_host_names)
        return self._local_hosts

    # ------------------------------------------------------------ placement

    def mark_suspect(self, worker_id: str) -> None:
        """Skip ``worker_id`` for a while (but for one probe a second), refresh the ring soon.

        A dead worker then costs one failed attempt a ``SUSPECT_PROBE_INTERVAL``,
        not one a block: a read goes on to the next worker or the UFS at once.
        """
        now = time.monotonic()
        self._suspects[worker_id] = [now + self.suspect_seconds, now + SUSPECT_PROBE_INTERVAL]
        self.request_ring_refresh()

    def mark_healthy(self, worker_id: str) -> None:
        """A worker answered: it is no suspect any more."""
        self._suspects.pop(worker_id, None)

    def suspects(self) -> set[str]:
        """Workers that failed within ``suspect_seconds``."""
        now = time.monotonic()
        for worker_id, (until, _) in list(self._suspects.items()):
            if until <= now:
                del self._suspects[worker_id]
        return set(self._suspects)

    async def candidates(self, key: BlockKey) -> list[Candidate]:
        """The workers to try for block ``key``, in order; empty when the ring is empty.

        Healthy workers in ring order, then the ones the master sees missing
        heartbeats and the suspects due for a probe; other suspects are skipped.
        """
        state = await self.ring()
        count = min(len(state.members), state.replicas + self.extra_workers)
        ring_order = state.ring.owners(key.placement_key(state.block_size), count)
        last: Collection[str] = state.missing_beats
        skip: set[str] = set()
        if self._suspects:
            now = time.monotonic()
            probes = set()
            for worker_id in self.suspects():
                if worker_id not in ring_order:
                    continue
                times = self._suspects[worker_id]
                if times[1] <= now:
                    times[1] = now + SUSPECT_PROBE_INTERVAL
                    probes.add(worker_id)
                else:
                    skip.add(worker_id)
            last = state.missing_beats | probes
        return [
            Candidate(worker_id, state.addresses[worker_id])
            for worker_id in order_candidates(ring_order, last, skip)
            if worker_id in state.addresses
        ]

    # ------------------------------------------------------------ metadata

    async def stat(self, path: DatasetPath) -> FileInfo:
        """Status of a file or directory (namespaces and the root are directories)."""
        if not path.namespace:
            return FileInfo.directory("")
        if not path.dataset:
            datasets = await self.list_datasets(path.namespace)
            if not datasets:
                raise NotFound(f"no namespace {path.namespace!r} with datasets")
            return FileInfo.directory(path.namespace)
        key = ("stat", str(path))
        held = self._metadata.get(key)
        if held is not None and held.expires > time.monotonic():
            self._metadata.move_to_end(key)
            return held.value  # type: ignore[return-value]
        if path.path:
            parent = DatasetPath(path.namespace, path.dataset, path.path.rpartition("/")[0])
            if ("list", str(parent), "") in self._metadata:  # listed before: list it again
                try:
                    await self.list_dir(parent)
                except CacheClusterError as exc:  # e.g. the folder went: ask for the file
                    log.debug("listing %s again failed: %s", parent, exc)
                held = self._metadata.get(key)
                if held is not None and held.expires > time.monotonic():
                    return held.value  # type: ignore[return-value]
            else:
                self._count_miss(parent)
        return await self._cached(key, lambda: self.api.get_status(path))

    def _count_miss(self, folder: DatasetPath) -> None:
        """Count a stat miss in ``folder``; list it in the background at the limit."""
        now = time.monotonic()
        text = str(folder)
        count, since = self._misses.get(text, (0, now))
        if now - since > self.metadata_ttl:
            count, since = 0, now
        count += 1
        if count < LIST_AFTER_MISSES:
            if len(self._misses) >= 1024:
                self._misses.clear()
            self._misses[text] = (count, since)
            return
        self._misses.pop(text, None)
        if self._closed:
            return
        task: asyncio.Task[object] = asyncio.ensure_future(self._list_quietly(folder))
        self._listings.add(task)
        task.add_done_callback(self._listings.discard)

    async def _list_quietly(self, folder: DatasetPath) -> object:
        try:
            return await self.list_dir(folder)
        except CacheClusterError as exc:
            log.debug("listing %s failed: %s", folder, exc)
            return None

    def cached_stat(self, path: DatasetPath) -> FileInfo | None:
        """The status of a dataset entry if cached and fresh, else None; safe on any thread."""
        if not path.namespace or not path.dataset:
            return None
        held = self._metadata.get(("stat", str(path)))
        if held is None or held.expires <= time.monotonic():
            return None
        return held.value  # type: ignore[return-value]

    def cached_listing(self, folder: DatasetPath) -> list[FileInfo] | None:
        """The entries of ``folder`` if listed and fresh, else None (in listing order)."""
        held = self._metadata.get(("list", str(folder), ""))
        if held is None or held.expires <= time.monotonic():
            return None
        return held.value  # type: ignore[return-value]

    def cached_ring(self) -> RingState | None:
        """The ring if fetched already, else None; safe on any thread."""
        return self._ring

    async def list_dir(self, path: DatasetPath, *, recursive: bool = False) -> list[FileInfo]:
        """Entries of a directory (every descendant file when ``recursive``)."""
        if not path.dataset:
            return await self._list_above_datasets(path)
        key = ("list", str(path), "r" if recursive else "")
        entries = await self._cached(key, lambda: self.api.list_status(path, recursive=recursive))
        expires = time.monotonic() + self.metadata_ttl
        for entry in entries:
            self._store(("stat", entry.path), entry, expires)
        return entries

    async def list_datasets(self, namespace: str = "") -> list[tuple[str, str]]:
        """``(namespace, name)`` of the datasets (of ``namespace`` when given)."""
        return await self._cached(
            ("datasets", namespace), lambda: self.api.list_datasets(namespace)
        )

    async def _list_above_datasets(self, path: DatasetPath) -> list[FileInfo]:
        datasets = await self.list_datasets(path.namespace)
        if not path.namespace:
            return [FileInfo.directory(ns) for ns in sorted({ns for ns, _ in datasets})]
        if not datasets:
            raise NotFound(f"no namespace {path.namespace!r} with datasets")
        return [FileInfo.directory(f"{ns}/{name}") for ns, name in datasets]

    def invalidate(self, path: DatasetPath | str) -> None:
        """Forget what is cached about ``path`` and the listings that hold it.

        Called when its UFS object changed, so that the next open stats it again.
        """
        text = str(path)

        def holds(key: tuple[str, ...]) -> bool:
            if key[0] == "stat":
                return key[1] == text
            return key[0] == "list" and (key[1] == text or text.startswith(key[1] + "/"))

        for key in [k for k in self._metadata if holds(k)]:
            del self._metadata[key]

    async def _cached(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[T]]) -> T:
        entry = self._metadata.get(key)
        now = time.monotonic()
        if entry is not None and entry.expires > now:
            self._metadata.move_to_end(key)
            return entry.value  # type: ignore[return-value]
        flight = self._fetching.get(key)
        if flight is None:  # one call a key at a time; the others wait for its answer
            started: asyncio.Future[object] = asyncio.ensure_future(fetch())
            self._fetching[key] = flight = started
            started.add_done_callback(functools.partial(self._fetched, key))
        try:
            value = await asyncio.shield(flight)
        except Unavailable:
            if entry is not None:  # the master is away: stale is better than nothing
                log.debug("master unavailable, serving cached %s", key)
                return entry.value  # type: ignore[return-value]
            raise
        self._store(key, value, now + self.metadata_ttl)
        return value  # type: ignore[return-value]

    def _fetched(self, key: tuple[str, ...], flight: asyncio.Future[object]) -> None:
        if self._fetching.get(key) is flight:
            del self._fetching[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: the waiters raise it

    def _store(self, key: tuple[str, ...], value: object, expires: float) -> None:
        self._metadata[key] = _Cached(expires, value)
        self._metadata.move_to_end(key)
        while len(self._metadata) > MAX_METADATA_ENTRIES:
            self._metadata.popitem(last=False)

    # ------------------------------------------------------------ mounts

    async def mount(self, mount_id: str) -> MountInfo:
        """The mount's UFS root and options (asked of the master once)."""
        mount = self._mounts.get(mount_id)
        if mount is None:
            mount = await self.api.get_mount(mount_id)
            self._mounts[mount_id] = mount
        return mount

    async def backend(self, mount_id: str) -> UfsBackend:
        """The UFS backend of a mount, made once and kept until :meth:`close`."""
        backend = self._backends.get(mount_id)
        if backend is not None:
            return backend
        lock = self._mount_locks.setdefault(mount_id, asyncio.Lock())
        async with lock:
            backend = self._backends.get(mount_id)
            if backend is None:
                mount = await self.mount(mount_id)
                # Creating a backend may import an SDK (boto3, oss2): not on the loop.
                backend = await asyncio.to_thread(create_backend, mount.uri, mount.options)
                self._backends[mount_id] = backend
            return backend

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stop the ring refresher and close the UFS backends."""
        self._closed = True
        for task in list(self._listings):
            task.cancel()
        await asyncio.gather(*self._listings, return_exceptions=True)
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            try:
                await backend.close()
            except Exception as exc:  # closing must not fail the client's close
                log.warning("closing UFS backend %s: %s", backend.uri, exc)


def _local_host_names() -> frozenset[str]:
    """Host names and addresses that mean this machine (blocking: DNS)."""
    names = set(_LOOPBACK)
    with contextlib.suppress(OSError):
        hostname = socket.gethostname()
        names.add(hostname)
        names.update(socket.gethostbyname_ex(hostname)[2])
    return frozenset(names)
