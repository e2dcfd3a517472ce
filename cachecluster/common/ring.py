"""The consistent-hash ring that places blocks on workers.

The master keeps one :class:`HashRing` for its membership; every client
rebuilds the very same ring from a :class:`RingSnapshot` (sent by ``GetRing``)
and computes block owners itself, without a master round trip per read. The
ring is therefore a pure function of ``(workers, weights, vnodes, scheme)``:
the order workers were added in, the process and the platform do not matter.

Scheme ``cachecluster-ring-v2`` (:data:`RING_SCHEME`), precisely:

* Virtual nodes. A worker of weight ``w`` gets ``max(1, round(vnodes * w))``
  points (Python ``round``: half to even). Their positions are the successive
  little-endian 64-bit words of ``SHAKE128(b"cachecluster-ring/v1\\0" +
  utf8(worker_id))``, keeping the top :data:`POSITION_BITS` (44) bits. SHAKE is
  an extendable-output function, so a worker's points depend on its id only
  and a weight change adds or drops points at the end of its list: only the
  keys of those points move.
* Keys. A block's key is its placement key
  (:meth:`cachecluster.common.block_key.BlockKey.placement_key`: one key for
  each group of consecutive blocks of a file; v1 hashed each block id).
  ``XXH3-128(utf8(key))`` (a bytes key as it is) gives two probes, the top 44 bits of its high
  and of its low 64-bit half. Each probe finds the first point at or after it
  (clockwise, wrapping); the probe with the shorter clockwise distance wins
  (the high half on a tie). This is multi-probe consistent hashing (Appleton &
  O'Reilly, 2015) over virtual nodes: two probes halve the load variance of a
  plain ring, so 1,000 points a worker balance about as well as 2,000 would,
  at half the memory and build time.
* Replicas. From the winning point walk clockwise and take the first
  ``replicas`` distinct workers.
* Ties. Points at the same 44-bit position are ordered by worker id.

Movement is minimal: a new worker's points only shorten distances, so a key
either keeps its owner or moves to the new worker; removing a worker moves
only the keys it owned. (Secondary replicas of a key whose primary moved may
change too.)

Memory and speed: the lookup table is one ``array('Q')`` of 8 bytes a point,
each word ``position << 20 | rank`` where ``rank`` is the worker's index in id
order. 1,000 workers x 1,000 vnodes take 8 MB and about a second to build in
pure Python (see ``python -m bench.bench_ring``); a lookup hashes the key once,
bisects twice and reads ``replicas`` words. Membership changes mark the table
stale and it is rebuilt on the next lookup, so a burst of joins costs one
build.

The epoch of the membership belongs to the master, not to the ring.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
import operator
import sys
from array import array
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any

import xxhash
from sortedcontainers import SortedDict

from cachecluster.common.errors import InvalidArgument

RING_SCHEME = "cachecluster-ring-v2"
"""Name of the placement scheme described in the module docstring."""

DEFAULT_VNODES = 1000
"""Virtual nodes of a worker of weight 1.0."""

MAX_VNODES = 100_000
"""Upper bound for ``vnodes`` and for the points of a single worker."""

MAX_WEIGHT = 1000.0
"""Upper bound for a worker's weight."""

POSITION_BITS = 44
"""Bits of a point's position on the ring."""

RANK_BITS = 64 - POSITION_BITS
"""Bits of a packed point naming its worker: at most 2**20 workers."""

MAX_WORKERS = 1 << RANK_BITS

_RANK_MASK = (1 << RANK_BITS) - 1
_POSITION_MASK = ((1 << 64) - 1) ^ _RANK_MASK
_WORD_MASK = (1 << 64) - 1
_VNODE_DOMAIN = b"cachecluster-ring/v1\0"


@dataclasses.dataclass(frozen=True, slots=True)
class RingWorker:
    """One worker on the ring.

    ``worker_id`` is the stable id placement hashes (never the address, which
    may change across restarts); ``address`` is where readers reach it
    (``host:port`` of its data server) and plays no part in placement;
    ``weight`` scales its share of keys (1.0 = :data:`DEFAULT_VNODES` points).
    """

    worker_id: str
    address: str = ""
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.worker_id, str) or not self.worker_id:
            raise InvalidArgument(f"worker id {self.worker_id!r}: must be a non-empty string")
        weight = self.weight
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or not 0 < weight <= MAX_WEIGHT
        ):
            raise InvalidArgument(
                f"worker {self.worker_id}: weight {weight!r} must be in (0, {MAX_WEIGHT:g}]"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {"id": self.worker_id, "address": self.address, "weight": self.weight}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RingWorker:
        """Inverse of :meth:`to_dict`; a missing ``id`` is an ``InvalidArgument``."""
        if "id" not in data:
            raise InvalidArgument(f"ring worker {dict(data)!r}: missing 'id'")
        try:
            weight = float(data.get("weight", 1.0))
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"worker {data['id']}: weight {data.get('weight')!r} is not a number"
            ) from None
        return cls(worker_id=data["id"], address=str(data.get("address", "")), weight=weight)


@dataclasses.dataclass(frozen=True, slots=True)
class RingSnapshot:
    """Everything a client needs to rebuild the exact ring of the master.

    ``workers`` are sorted by id; ``scheme`` names the placement algorithm
    (:data:`RING_SCHEME`), so that a client refuses a ring it cannot compute
    rather than reading from the wrong workers.
    """

    workers: tuple[RingWorker, ...]
    vnodes: int = DEFAULT_VNODES
    scheme: str = RING_SCHEME

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {
            "scheme": self.scheme,
            "vnodes": self.vnodes,
            "workers": [worker.to_dict() for worker in self.workers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RingSnapshot:
        """Inverse of :meth:`to_dict`."""
        return cls(
            workers=tuple(RingWorker.from_dict(item) for item in data.get("workers", ())),
            vnodes=int(data.get("vnodes", DEFAULT_VNODES)),
            scheme=str(data.get("scheme", RING_SCHEME)),
        )


def vnode_count(weight: float, vnodes: int) -> int:
    """Points of a worker of ``weight`` on a ring of ``vnodes`` points per unit weight.

    More than :data:`MAX_VNODES` is an ``InvalidArgument``: the weights are
    meant to be relative (1.0 for a typical worker), not raw byte counts.
    """
    count = max(1, round(vnodes * weight))
    if count > MAX_VNODES:
        raise InvalidArgument(
            f"ring: weight {weight:g} x {vnodes} vnodes gives {count} points, "
            f"more than {MAX_VNODES} for one worker"
        )
    return count


def vnode_positions(worker_id: str, count: int) -> array[int]:
    """The ``count`` packed positions (rank bits zero) of ``worker_id``'s points, sorted.

    Sorted runs let the table build merge rather than sort from scratch.
    """
    stream = hashlib.shake_128(_VNODE_DOMAIN + worker_id.encode("utf-8"))
    words = array("Q")
    words.frombytes(stream.digest(8 * count))
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        words.byteswap()
    return array("Q", sorted(map(operator.and_, words, repeat(_POSITION_MASK))))


class HashRing:
    """Consistent hashing with weighted virtual nodes and two-probe lookup.

    Workers are kept in a ``SortedDict`` by id (their rank in that order tags
    their points); the points live in one sorted ``array('Q')`` searched with
    :mod:`bisect`. See the module docstring for the exact scheme.

    Lookups may run from several threads; mutations may not overlap with
    anything. A large ring (1,000 workers) takes about half a second to build,
    so code on an event loop should build a new ring in a thread
    (``await asyncio.to_thread(HashRing.from_snapshot, snapshot)``) and swap it
    in, rather than mutate the ring it serves lookups from.
    """

    def __init__(self, workers: Iterable[RingWorker] = (), *, vnodes: int = DEFAULT_VNODES) -> None:
        if isinstance(vnodes, bool) or not isinstance(vnodes, int) or not 1 <= vnodes <= MAX_VNODES:
            raise InvalidArgument(
                f"ring vnodes {vnodes!r}: must be an integer in [1, {MAX_VNODES}]"
            )
        self._vnodes = vnodes
        self._workers: SortedDict = SortedDict()  # worker id -> RingWorker
        self._positions: dict[str, array[int]] = {}  # worker id -> its points, rank bits zero
        self._table: _Table | None = None
        for worker in workers:
            self.add_worker(worker)

    @classmethod
    def from_snapshot(cls, snapshot: RingSnapshot) -> HashRing:
        """The ring ``snapshot`` describes, built; an unknown scheme is an ``InvalidArgument``."""
        if snapshot.scheme != RING_SCHEME:
            raise InvalidArgument(
                f"ring scheme {snapshot.scheme!r}: this client computes only {RING_SCHEME!r}"
            )
        ids = [worker.worker_id for worker in snapshot.workers]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("ring snapshot: duplicate worker ids")
        ring = cls(snapshot.workers, vnodes=snapshot.vnodes)
        ring.build()
        return ring

    def snapshot(self) -> RingSnapshot:
        """The serialisable form of this ring."""
        return RingSnapshot(workers=tuple(self._workers.values()), vnodes=self._vnodes)

    @property
    def vnodes(self) -> int:
        """Points of a worker of weight 1.0."""
        return self._vnodes

    @property
    def workers(self) -> list[RingWorker]:
        """The workers on the ring, sorted by id."""
        return list(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)

    def __contains__(self, worker_id: object) -> bool:
        return worker_id in self._workers

    def get(self, worker_id: str) -> RingWorker | None:
        """The worker with ``worker_id``, or ``None``."""
        worker: RingWorker | None = self._workers.get(worker_id)
        return worker

    def add_worker(self, worker: RingWorker) -> None:
        """Add ``worker``, or update it when its id is already on the ring.

        An address-only update does not touch placement; a weight update adds
        or drops points at the end of the worker's list.
        """
        if not isinstance(worker, RingWorker):
            raise InvalidArgument(f"ring worker {worker!r}: expected a RingWorker")
        old: RingWorker | None = self._workers.get(worker.worker_id)
        if old is None and len(self._workers) >= MAX_WORKERS:
            raise InvalidArgument(f"ring: at most {MAX_WORKERS} workers")
        self._workers[worker.worker_id] = worker
        count = vnode_count(worker.weight, self._vnodes)
        if old is not None and len(self._positions[worker.worker_id]) == count:
            return  # same points: placement unchanged
        self._positions[worker.worker_id] = vnode_positions(worker.worker_id, count)
        self._table = None

    def remove_worker(self, worker_id: str) -> bool:
        """Remove the worker with ``worker_id``; ``False`` if it was not on the ring."""
        if worker_id not in self._workers:
            return False
        del self._workers[worker_id]
        del self._positions[worker_id]
        self._table = None
        return True

    def build(self) -> None:
        """Build the lookup table now rather than on the next lookup."""
        if self._table is None:
            self._table = _Table.build(self._workers.keys(), self._positions)

    def owners(self, key: str | bytes, replicas: int = 1) -> list[str]:
        """Ids of the ``replicas`` distinct workers that own ``key``, primary first.

        Fewer when the ring has fewer workers; empty when it has none.
        """
        table = self._table
        if table is None:
            self.build()
            table = self._table
            assert table is not None
        return table.owners(key, replicas)

    def owner(self, key: str | bytes) -> str | None:
        """The primary owner of ``key``, or ``None`` on an empty ring."""
        found = self.owners(key, 1)
        return found[0] if found else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Table:
    """The immutable lookup structure: sorted packed points and worker ids by rank."""

    points: array[int]
    ids: tuple[str, ...]

    @classmethod
    def build(cls, ids: Iterable[str], positions: Mapping[str, array[int]]) -> _Table:
        ids = tuple(ids)  # sorted: rank order
        packed: list[int] = []
        for rank, worker_id in enumerate(ids):
            packed.extend(map(operator.or_, positions[worker_id], repeat(rank)))
        packed.sort()  # timsort merges the sorted runs of each worker
        return cls(points=array("Q", packed), ids=ids)

    def owners(self, key: str | bytes, replicas: int) -> list[str]:
        points = self.points
        count = len(points)
        if count == 0 or replicas < 1:
            return []
        if isinstance(key, str):
            key = key.encode("utf-8")
        digest = xxhash.xxh3_128_intdigest(key)
        high = (digest >> 64) & _POSITION_MASK
        low = digest & _POSITION_MASK
        index = bisect.bisect_left(points, high)
        if index == count:
            index = 0
        other = bisect.bisect_left(points, low)
        if other == count:
            other = 0
        if (points[other] - low) & _WORD_MASK < (points[index] - high) & _WORD_MASK:
            index = other
        ids = self.ids
        first = points[index] & _RANK_MASK
        if replicas == 1:
            return [ids[first]]
        wanted = min(replicas, len(ids))
        ranks = [first]
        seen = {first}
        for _ in range(count - 1):
            if len(ranks) == wanted:
                break
            index += 1
            if index == count:
                index = 0
            rank = points[index] & _RANK_MASK
            if rank not in seen:
                seen.add(rank)
                ranks.append(rank)
        return [ids[rank] for rank in ranks]
