"""Read capabilities of a client: asked of the master per dataset, kept until shortly before expiry.

With a cluster secret, workers serve a block only with a capability the
master signed for the dataset being read (:mod:`cachecluster.common.auth`).
:class:`CapabilityCache` asks ``AuthService.IssueCapability`` once per
dataset, shares one call among concurrent readers, and asks again
:data:`RENEW_BEFORE_S` seconds before the capability expires, or at once
after a worker refused it (:meth:`CapabilityCache.drop`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from cachecluster.client.master_api import DatasetPath, MasterApi

RENEW_BEFORE_S = 30.0
"""Seconds before expiry at which a capability is renewed."""
NOT_REQUIRED_TTL_S = 60.0
"""How long an open cluster's "no capability needed" answer is reused."""


@dataclass(frozen=True, slots=True)
class _Held:
    capability: bytes | None
    renew_at: float  # time.time()


class CapabilityCache:
    """Capabilities by dataset (``ns/name``), fetched through ``api``."""

    def __init__(self, api: MasterApi) -> None:
        self.api = api
        self.required = True
        """False once the master said it runs open (no capability needed)."""
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, dataset: str) -> bytes | None:
        """The capability to send with reads of ``dataset`` (``None``: none needed)."""
        held = self._held.get(dataset)
        if held is not None and time.time() < held.renew_at:
            return held.capability
        lock = self._locks.setdefault(dataset, asyncio.Lock())
        async with lock:
            held = self._held.get(dataset)
            if held is None or time.time() >= held.renew_at:
                held = await self._fetch(dataset)
                self._held[dataset] = held
            return held.capability

    def drop(self, dataset: str, capability: bytes | None = None) -> None:
        """Forget ``dataset``'s capability (only if it is still ``capability``, when given)."""
        held = self._held.get(dataset)
        if held is not None and (capability is None or held.capability == capability):
            del self._held[dataset]

    async def _fetch(self, dataset: str) -> _Held:
        namespace, _, name = dataset.partition("/")
        capability, expires = await self.api.issue_capability(DatasetPath(namespace, name))
        if capability is None:
            self.required = False
            return _Held(None, time.time() + NOT_REQUIRED_TTL_S)
        self.required = True
        now = time.time()
        renew_at = max(now + 1.0, expires - RENEW_BEFORE_S) if expires else now + 60.0
        return _Held(capability, renew_at)


def dataset_of(path: str) -> str:
    """``ns/name`` of a reader path ``ns/name/sub/file``."""
    return "/".join(path.split("/", 2)[:2])
