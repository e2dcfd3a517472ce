"""Eviction policies: which block a tier gives up first.

A policy only orders block ids; it knows nothing about sizes, quotas or
files. Capacity (when to evict and how much) lives in
:mod:`cachecluster.worker.block_store`, which keeps one policy per tier, tells
it about every block that enters (:meth:`EvictionPolicy.add`), is read
(:meth:`~EvictionPolicy.touch`) or leaves (:meth:`~EvictionPolicy.remove`), and
walks :meth:`~EvictionPolicy.victims` when it must free space (skipping blocks
it cannot move right now).

Policies are chosen by name (``lru``, the default, or ``slru``) through
:func:`make_policy`; an unknown name is one ``ConfigError``. New policies
register with :func:`register_policy`.

All methods are called from the event loop that owns the store; policies are
not thread-safe and need not be.
"""

from __future__ import annotations

import abc
import collections
import itertools
from collections.abc import Callable, Iterator

from cachecluster.common.errors import ConfigError

DEFAULT_POLICY = "lru"


class EvictionPolicy(abc.ABC):
    """An order over the block ids of one tier, least valuable first."""

    name: str = ""

    @abc.abstractmethod
    def add(self, block_id: str) -> None:
        """A block entered the tier (new, demoted, promoted or found on rescan).

        Adding an id that is already tracked counts as a :meth:`touch`.
        """

    @abc.abstractmethod
    def touch(self, block_id: str) -> None:
        """The block was read; unknown ids are ignored."""

    @abc.abstractmethod
    def remove(self, block_id: str) -> None:
        """The block left the tier; unknown ids are ignored."""

    @abc.abstractmethod
    def victims(self) -> Iterator[str]:
        """Every tracked id, in the order they should be evicted.

        The caller must not add, touch or remove while it iterates; it
        collects the victims it wants and removes them afterwards.
        """

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many ids are tracked."""

    @abc.abstractmethod
    def __contains__(self, block_id: object) -> bool:
        """Whether ``block_id`` is tracked."""

    def pick(self) -> str | None:
        """The first victim, or ``None`` when the policy tracks nothing."""
        return next(self.victims(), None)


class LruPolicy(EvictionPolicy):
    """Least recently used first: one ``OrderedDict``, O(1) for every operation.

    Simple and right for most workloads, but one pass over a dataset larger
    than the tier (a scan, or an epoch of a big training set) pushes out
    everything else, including blocks read over and over.
    """

    name = "lru"

    def __init__(self) -> None:
        self._order: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, block_id: str) -> None:
        self._order[block_id] = None
        self._order.move_to_end(block_id)

    def touch(self, block_id: str) -> None:
        if block_id in self._order:
            self._order.move_to_end(block_id)

    def remove(self, block_id: str) -> None:
        self._order.pop(block_id, None)

    def victims(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._order


class SlruPolicy(EvictionPolicy):
    """Segmented LRU: a probation segment for blocks read once, a protected one for the rest.

    A new block enters *probation* (at its most recent end). A read of a
    block on probation moves it to *protected*; a read of a protected block
    moves it to the protected most recent end. When victims are asked for,
    protected may hold at most ``protected_fraction`` of the tracked blocks:
    its least recent blocks past that fall back to the most recent end of
    probation (a second chance, not an eviction). Victims come from
    probation first, least recent first, then from protected. The cap is
    applied at eviction time, when the tier is full, so a cache that is
    still filling up does not cap protected against a small count.

    Why SLRU and not LFU with aging or 2Q: a scan (blocks read once) only
    ever churns probation, so a working set that is read at least twice
    survives scans larger than the tier, which is the failure of plain LRU
    that matters for dataset caches (a second job reading a large dataset
    once must not flush the hot files of the first). SLRU gets that with two
    ``OrderedDict``s and O(1) operations. LFU needs frequency counters with
    an aging scheme tuned to the workload, and keeps once-hot blocks long
    after a job moves on; 2Q needs a ghost queue of evicted ids and two
    sizing knobs. The protected fraction (0.8, as in common SLRU
    deployments) is the only knob, and it adapts as the tier grows or
    shrinks because it is a fraction of the tracked count.
    """

    name = "slru"

    def __init__(self, protected_fraction: float = 0.8) -> None:
        if not 0.0 < protected_fraction < 1.0:
            raise ConfigError("slru.protected_fraction", f"{protected_fraction} is outside (0, 1)")
        self.protected_fraction = protected_fraction
        self._probation: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._protected: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, block_id: str) -> None:
        if block_id in self._probation or block_id in self._protected:
            self.touch(block_id)
            return
        self._probation[block_id] = None

    def touch(self, block_id: str) -> None:
        if block_id in self._protected:
            self._protected.move_to_end(block_id)
        elif block_id in self._probation:
            del self._probation[block_id]
            self._protected[block_id] = None

    def remove(self, block_id: str) -> None:
        if block_id in self._probation:
            del self._probation[block_id]
        else:
            self._protected.pop(block_id, None)

    def victims(self) -> Iterator[str]:
        self._rebalance()
        return itertools.chain(self._probation, self._protected)

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._probation or block_id in self._protected

    @property
    def protected_limit(self) -> int:
        """How many blocks protected may hold now (at least one)."""
        return max(1, int(self.protected_fraction * len(self)))

    def segment_of(self, block_id: str) -> str | None:
        """``"probation"``, ``"protected"`` or ``None``: for tests and debugging."""
        if block_id in self._probation:
            return "probation"
        if block_id in self._protected:
            return "protected"
        return None

    def _rebalance(self) -> None:
        limit = self.protected_limit
        while len(self._protected) > limit:
            demoted, _ = self._protected.popitem(last=False)
            self._probation[demoted] = None


PolicyFactory = Callable[[], EvictionPolicy]

_POLICIES: dict[str, PolicyFactory] = {}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make ``factory`` available as policy ``name`` (lowercase); a later call replaces it."""
    _POLICIES[name.lower()] = factory


def policy_names() -> list[str]:
    """The registered policy names, sorted."""
    return sorted(_POLICIES)


def make_policy(name: str = DEFAULT_POLICY, field: str = "worker.evictionPolicy") -> EvictionPolicy:
    """A new, empty policy of the given name; an unknown name is a ``ConfigError`` on ``field``."""
    factory = _POLICIES.get(name.strip().lower()) if isinstance(name, str) else None
    if factory is None:
        known = ", ".join(policy_names())
        raise ConfigError(field, f"unknown eviction policy {name!r} (known: {known})")
    return factory()


register_policy(LruPolicy.name, LruPolicy)
register_policy(SlruPolicy.name, SlruPolicy)
