"""Mount resolution: from the mount id in a block request to an open UFS backend.

A block request names its mount by id only (the id is part of the block id).
On the first miss for a mount the worker asks the master (``GetMount``) where
the mount's bytes live and with which options, opens one backend for it
(``create_backend``) and keeps both:

* concurrent misses of one unknown mount share one lookup;
* while the master is away a lookup is retried until ``resolve_timeout``
  passes, then fails with ``Unavailable`` (the reader falls back);
* a mount already resolved keeps working when the master is down: it is
  looked up again in the background once it is ``refresh_interval`` old, and
  swapped only when the master answers (a mount whose dataset was deleted is
  dropped; new options get a new backend);
* every backend is closed by :meth:`MountResolver.close`; a replaced one a
  while after the swap, so reads still using it can finish;
* :meth:`MountResolver.prepare` takes the master's whole mount set (the
  ``WatchMounts`` stream, :mod:`cachecluster.worker.mount_watch`): the
  backends of new mounts open in the background, so the first read finds
  them open (a read that comes first joins the opening); mounts missing from
  the set are dropped, changed ones looked up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any, Protocol

from cachecluster.common.errors import InvalidArgument, NotFound, Unavailable
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.protos import master_pb2, master_pb2_grpc
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.registry import create_backend
from cachecluster.worker.singleflight import SingleFlight

log = logging.getLogger("cachecluster.worker.mounts")

MAX_MOUNT_ID_LENGTH = 128
GET_MOUNT_TIMEOUT = 5.0
"""Seconds one GetMount call may take."""
RETIRED_BACKEND_GRACE = 60.0
"""Seconds a replaced backend stays open for the reads still using it."""
GONE_BACKEND_GRACE = 5.0
"""Seconds the backend of a mount whose dataset was deleted stays open (reads in flight)."""
MAX_PREPARED_MOUNTS = 64
"""Mounts whose backends :meth:`MountResolver.prepare` opens ahead at most; others on first use."""


@dataclasses.dataclass(frozen=True, slots=True)
class MountSpec:
    """Where one mount's bytes come from: its UFS root URI and backend options.

    ``options`` may hold credentials: never log them or send them to readers.
    """

    mount_id: str
    uri: str
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    namespace: str = ""
    dataset: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @classmethod
    def from_proto(cls, info: master_pb2.MountInfo) -> MountSpec:
        """The spec of a ``MountInfo`` from the master."""
        return cls(
            mount_id=info.mount_id,
            uri=info.uri,
            options=dict(info.options),
            namespace=info.dataset.namespace,
            dataset=info.dataset.name,
            name=info.name,
        )

    def same_source(self, other: MountSpec) -> bool:
        """Whether ``other`` reads the same bytes the same way (URI and options)."""
        return self.uri == other.uri and dict(self.options) == dict(other.options)

    def file_uri(self, path: str) -> str:
        """The UFS URI of ``path`` (relative to the mount root), for messages."""
        return f"{self.uri.rstrip('/')}/{path}"

    def describe(self) -> str:
        """``ns/dataset:mount (uri)`` for log lines; no options (they may be secret)."""
        return f"{self.namespace}/{self.dataset}:{self.name} ({self.uri})"


class MountLookup(Protocol):
    """Finds a mount's spec: ``NotFound`` if there is none, ``Unavailable`` if unreachable."""

    def __call__(self, mount_id: str) -> Awaitable[MountSpec]: ...


class MasterMountLookup:
    """A :class:`MountLookup` asking the master's ``MetadataService.GetMount``."""

    def __init__(
        self, stub: master_pb2_grpc.MetadataServiceStub, *, timeout: float = GET_MOUNT_TIMEOUT
    ) -> None:
        self.stub = stub
        self.timeout = timeout

    async def __call__(self, mount_id: str) -> MountSpec:
        with rpc_errors():
            reply = await self.stub.GetMount(
                master_pb2.GetMountRequest(mount_id=mount_id), timeout=self.timeout
            )
        if reply.mount.mount_id not in ("", mount_id):
            raise InvalidArgument(
                f"master answered GetMount({mount_id}) with mount {reply.mount.mount_id}"
            )
        return dataclasses.replace(MountSpec.from_proto(reply.mount), mount_id=mount_id)


BackendFactory = Callable[[str, Mapping[str, str]], UfsBackend]


@dataclasses.dataclass(slots=True)
class ResolvedMount:
    """A mount spec with its open backend, as the block loader uses them."""

    spec: MountSpec
    backend: UfsBackend
    resolved_at: float


class MountResolver:
    """mount id -> :class:`ResolvedMount`, cached, one backend per mount. See the module doc."""

    def __init__(
        self,
        lookup: MountLookup,
        *,
        resolve_timeout: float = 10.0,
        refresh_interval: float = 60.0,
        backend_factory: BackendFactory = create_backend,
    ) -> None:
        self.lookup = lookup
        self.resolve_timeout = resolve_timeout
        self.refresh_interval = refresh_interval
        self.backend_factory = backend_factory
        self._mounts: dict[str, ResolvedMount] = {}
        self._flights: SingleFlight[str, ResolvedMount] = SingleFlight()
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retired: list[UfsBackend] = []
        self._listed: frozenset[str] | None = None  # the last set given to prepare()
        self._closed = False
        self.lookups = 0
        """GetMount calls made (for tests and logs)."""
        self.prepared = 0
        """Backends opened ahead by :meth:`prepare` (for metrics)."""
        self.backends_closed = 0
        """Backends closed so far, retired or at close (for metrics)."""

    def cached(self, mount_id: str) -> ResolvedMount | None:
        """The resolved mount if it is cached, without any call."""
        return self._mounts.get(mount_id)

    def __len__(self) -> int:
        return len(self._mounts)

    def mounts(self) -> list[ResolvedMount]:
        """The mounts with an open backend now, by mount id (safe from another thread)."""
        return sorted(list(self._mounts.values()), key=lambda resolved: resolved.spec.mount_id)

    @property
    def retired(self) -> int:
        """Replaced or dropped backends waiting for their grace period to close."""
        return len(self._retired)

    def prepare(self, specs: Iterable[MountSpec]) -> None:
        """Take the master's whole mount set; see the module doc.

        Returns at once: new backends open in background tasks (at most
        :data:`MAX_PREPARED_MOUNTS` held in all), one flight per mount shared
        with the reads that come meanwhile.
        """
        if self._closed:
            return
        wanted = {spec.mount_id: spec for spec in specs}
        self._listed = frozenset(wanted)
        for mount_id in [mount_id for mount_id in self._mounts if mount_id not in wanted]:
            self._drop_gone(mount_id)
        room = MAX_PREPARED_MOUNTS - len(self._mounts) - len(self._flights)
        for mount_id, spec in sorted(wanted.items()):
            current = self._mounts.get(mount_id)
            if current is not None:
                if not current.spec.same_source(spec):
                    self._start_refresh(mount_id)  # GetMount again, then swap the backend
            elif not self._flights.in_flight(mount_id) and room > 0:
                room -= 1
                # The flight starts now, so a read that comes before it ends joins it.
                flight = self._flights.start(mount_id, partial(self._open, spec, ahead=True))
                self._spawn(self._prepared(spec, flight))

    async def get(self, mount_id: str) -> ResolvedMount:
        """The resolved mount, from the cache or the master.

        Raises ``NotFound`` for a mount id the master does not know,
        ``Unavailable`` when the master stays unreachable for
        ``resolve_timeout`` seconds and the mount is not cached.
        """
        if self._closed:
            raise Unavailable("the worker is shutting down")
        if not mount_id or len(mount_id) > MAX_MOUNT_ID_LENGTH:
            raise InvalidArgument(f"mount id {mount_id[:MAX_MOUNT_ID_LENGTH]!r} is not valid")
        resolved = self._mounts.get(mount_id)
        if resolved is not None:
            if time.monotonic() - resolved.resolved_at > self.refresh_interval:
                self._start_refresh(mount_id)
            return resolved
        return await self._flights.do(mount_id, lambda: self._resolve(mount_id))

    async def close(self) -> None:
        """Stop background lookups and close every backend (cached and retired)."""
        self._closed = True
        await self._flights.cancel_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        backends = [resolved.backend for resolved in self._mounts.values()] + self._retired
        self._mounts.clear()
        self._retired.clear()
        for backend in backends:
            await self._close_backend(backend)

    # ------------------------------------------------------------ internals

    async def _resolve(self, mount_id: str) -> ResolvedMount:
        """Look the mount up (retrying while the master is away) and open its backend."""
        spec = await self._lookup_with_retry(mount_id)
        existing = self._mounts.get(mount_id)
        if existing is not None:  # a refresh put it there while we waited
            return existing
        return await self._open(spec)

    async def _open(self, spec: MountSpec, *, ahead: bool = False) -> ResolvedMount:
        """Open the backend of ``spec`` (in a thread: SDK clients block) and cache it."""
        backend = await asyncio.to_thread(self.backend_factory, spec.uri, spec.options)
        if self._closed:
            await self._close_backend(backend)
            raise Unavailable("the worker is shutting down")
        resolved = ResolvedMount(spec, backend, time.monotonic())
        self._mounts[spec.mount_id] = resolved
        if ahead:
            self.prepared += 1
        how = "opened ahead" if ahead else "resolved"
        log.info("mount %s %s: %s", spec.mount_id, how, spec.describe())
        return resolved

    async def _prepared(self, spec: MountSpec, flight: asyncio.Future[ResolvedMount]) -> None:
        """Wait for a listed mount's backend opened ahead of its first read; log a failure."""
        mount_id = spec.mount_id
        try:
            await asyncio.shield(flight)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the first read tries again and reports it
            log.warning("mount %s (%s): backend not opened ahead: %s", mount_id, spec.uri, error)
            return
        if self._listed is not None and mount_id not in self._listed:
            self._drop_gone(mount_id)  # deleted while its backend was opening

    def _drop_gone(self, mount_id: str) -> None:
        """Forget a mount whose dataset is gone; its backend closes after a short grace."""
        old = self._mounts.pop(mount_id, None)
        if old is not None:
            log.info("mount %s is gone (%s): dropped", mount_id, old.spec.describe())
            self._retire(old.backend, GONE_BACKEND_GRACE)

    async def _lookup_with_retry(self, mount_id: str) -> MountSpec:
        deadline = time.monotonic() + self.resolve_timeout
        delay = 0.1
        while True:
            self.lookups += 1
            try:
                return await self.lookup(mount_id)
            except Unavailable as error:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unavailable(
                        f"mount {mount_id}: the master could not be reached for "
                        f"{self.resolve_timeout:g}s ({error})"
                    ) from error
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)

    def _start_refresh(self, mount_id: str) -> None:
        if mount_id in self._refreshing or self._closed:
            return
        self._refreshing.add(mount_id)
        self._spawn(self._refresh(mount_id))

    async def _refresh(self, mount_id: str) -> None:
        """Look a cached mount up again; keep it if the master is away."""
        try:
            self.lookups += 1
            try:
                spec = await self.lookup(mount_id)
            except NotFound:
                self._drop_gone(mount_id)
                return
            except Exception as error:  # the master is away: keep serving the cached mount
                log.debug("refresh of mount %s failed: %s", mount_id, error)
                current = self._mounts.get(mount_id)
                if current is not None:  # try again after a short while, not at once
                    current.resolved_at = time.monotonic() - self.refresh_interval + 5.0
                return
            current = self._mounts.get(mount_id)
            if current is None:
                return
            if current.spec.same_source(spec):
                current.spec = spec
                current.resolved_at = time.monotonic()
                return
            backend = await asyncio.to_thread(self.backend_factory, spec.uri, spec.options)
            if self._closed or self._mounts.get(mount_id) is not current:
                await self._close_backend(backend)  # shutting down, or dropped meanwhile
                return
            self._mounts[mount_id] = ResolvedMount(spec, backend, time.monotonic())
            log.info("mount %s changed: now %s", mount_id, spec.describe())
            self._retire(current.backend)
        finally:
            self._refreshing.discard(mount_id)

    def _retire(self, backend: UfsBackend, grace: float = RETIRED_BACKEND_GRACE) -> None:
        """Close a replaced backend after a grace period (reads may still use it)."""
        self._retired.append(backend)

        async def close_later() -> None:
            await asyncio.sleep(grace)
            with contextlib.suppress(ValueError):
                self._retired.remove(backend)
            await self._close_backend(backend)

        self._spawn(close_later())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that :meth:`close` cancels."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_backend(self, backend: UfsBackend) -> None:
        self.backends_closed += 1
        try:
            await backend.close()
        except Exception:
            log.warning("closing UFS backend %s failed", backend.uri, exc_info=True)
