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
  while after the swap, so reads still using it can finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
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
        self._closed = False
        self.lookups = 0
        """GetMount calls made (for tests and logs)."""

    def cached(self, mount_id: str) -> ResolvedMount | None:
        """The resolved mount if it is cached, without any call."""
        return self._mounts.get(mount_id)

    def __len__(self) -> int:
        return len(self._mounts)

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
            await _close_backend(backend)

    # ------------------------------------------------------------ internals

    async def _resolve(self, mount_id: str) -> ResolvedMount:
        """Look the mount up (retrying while the master is away) and open its backend."""
        spec = await self._lookup_with_retry(mount_id)
        existing = self._mounts.get(mount_id)
        if existing is not None:  # a refresh put it there while we waited
            return existing
        backend = await asyncio.to_thread(self.backend_factory, spec.uri, spec.options)
        if self._closed:
            await _close_backend(backend)
            raise Unavailable("the worker is shutting down")
        resolved = ResolvedMount(spec, backend, time.monotonic())
        self._mounts[mount_id] = resolved
        log.info("mount %s resolved: %s", mount_id, spec.describe())
        return resolved

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
        task = asyncio.ensure_future(self._refresh(mount_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, mount_id: str) -> None:
        """Look a cached mount up again; keep it if the master is away."""
        try:
            self.lookups += 1
            try:
                spec = await self.lookup(mount_id)
            except NotFound:
                old = self._mounts.pop(mount_id, None)
                if old is not None:
                    log.info("mount %s is gone (%s): dropped", mount_id, old.spec.describe())
                    self._retire(old.backend)
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
            if self._closed:
                await _close_backend(backend)
                return
            self._mounts[mount_id] = ResolvedMount(spec, backend, time.monotonic())
            log.info("mount %s changed: now %s", mount_id, spec.describe())
            self._retire(current.backend)
        finally:
            self._refreshing.discard(mount_id)

    def _retire(self, backend: UfsBackend) -> None:
        """Close a replaced backend after a grace period (reads may still use it)."""
        self._retired.append(backend)

        async def close_later() -> None:
            await asyncio.sleep(RETIRED_BACKEND_GRACE)
            with contextlib.suppress(ValueError):
                self._retired.remove(backend)
            await _close_backend(backend)

        task = asyncio.ensure_future(close_later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _close_backend(backend: UfsBackend) -> None:
    try:
        await backend.close()
    except Exception:
        log.warning("closing UFS backend %s failed", backend.uri, exc_info=True)
