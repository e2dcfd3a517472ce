"""Worker membership: who is in the cluster, where they listen, what they hold.

Workers register, then beat every ``heartbeat_interval`` seconds. A worker
silent for more than two intervals is SUSPECT (it stays on the ring; readers
try it last); silent for ``missed_heartbeats`` intervals it is LOST and leaves
the ring. A LOST worker, or one the master does not know (the master
restarted), is told to register again by its next heartbeat.

The *epoch* names one version of the ring. It changes whenever the ring a
reader computes from could change: a worker joins, comes back from LOST, is
lost, restarts (new incarnation: its blocks and ports may differ) or moves to
another endpoint. It starts at the wall-clock time in milliseconds, so that a
restarted master never hands out an epoch a client already holds for another
ring (clients ask ``GetRing(known_epoch)`` and keep their ring on
``unchanged``).

The state is soft: nothing is persisted. After a master restart workers learn
from a heartbeat answer that they must register again, and report their blocks.

Start-up grace. Right after a (re)start the master knows only the workers that
registered so far: its ring is a part of the real one. A reader or worker that
still holds a ring of an earlier master (an epoch this master never issued)
should keep it rather than move blocks to fewer workers, which would fetch
them from the UFS again: for ``startup_grace`` seconds (default
``missed_heartbeats`` x ``heartbeat_interval``, the time within which a live
worker must have beaten anyway), extended by one interval after each
registration while workers keep coming back (at most twice the grace),
:meth:`Membership.ring_withheld` says how long such a holder should wait.
Holders without a ring, or with one of this master, get the ring at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import re
import time
from collections.abc import Callable, Iterable

from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.protos import common_pb2

log = logging.getLogger(__name__)

_BLOCK_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_WORKER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

LOST_RETENTION_S = 3600.0
"""How long a LOST worker stays listed before it is forgotten."""


class WorkerState(enum.Enum):
    """Where a worker stands with the master (``WorkerState`` in master.proto)."""

    ACTIVE = "active"
    SUSPECT = "suspect"
    LOST = "lost"


ON_RING = frozenset({WorkerState.ACTIVE, WorkerState.SUSPECT})
"""States whose workers are members of the ring."""


def check_worker_id(worker_id: str) -> str:
    """Return ``worker_id`` if it is well formed, else raise ``InvalidArgument``."""
    if not isinstance(worker_id, str) or not _WORKER_ID_RE.match(worker_id):
        raise InvalidArgument(
            f"worker id {worker_id!r}: expected 1-128 characters of letters, digits, '.', '_', '-'"
        )
    return worker_id


def check_block_ids(block_ids: Iterable[str]) -> list[str]:
    """The ids as a list; one that is not 32 lowercase hex chars is an ``InvalidArgument``."""
    checked = list(block_ids)
    for block_id in checked:
        if not _BLOCK_ID_RE.match(block_id):
            raise InvalidArgument(f"block id {block_id!r}: expected 32 lowercase hex chars")
    return checked


def _same_endpoint(a: common_pb2.WorkerEndpoint, b: common_pb2.WorkerEndpoint) -> bool:
    return bool(a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True))


@dataclasses.dataclass(eq=False)
class WorkerRecord:
    """What the master knows about one worker.

    ``blocks`` are the block ids the worker reported (full reports replace
    them, deltas edit them); ``block_count`` is the latest count from either a
    report or a heartbeat (a heartbeat's count wins until the next report).
    Times ending in ``_ms`` are Unix milliseconds; ``last_seen`` is monotonic.
    """

    worker_id: str
    incarnation: int
    endpoint: common_pb2.WorkerEndpoint
    version: str
    state: WorkerState
    registered_at_ms: int
    last_heartbeat_ms: int
    last_seen: float
    weight: float = 1.0
    tiers: list[common_pb2.TierUsage] = dataclasses.field(default_factory=list)
    counters: common_pb2.WorkerCounters = dataclasses.field(
        default_factory=common_pb2.WorkerCounters
    )
    blocks: set[str] = dataclasses.field(default_factory=set)
    block_count: int = 0
    lost_at: float = 0.0

    @property
    def address(self) -> str:
        """``host:data_port``: where readers send block requests."""
        return f"{self.endpoint.host}:{self.endpoint.data_port}"


class BlockReport:
    """One ``ReportBlocks`` stream in progress: feed chunks, then :meth:`finish`.

    A full report collects every id first and replaces the worker's set only
    when the stream ends, so a broken stream leaves the previous set intact.
    A delta report applies each chunk as it comes.
    """

    def __init__(self, membership: Membership, worker_id: str, incarnation: int, full: bool):
        self._membership = membership
        self.worker_id = worker_id
        self.incarnation = incarnation
        self.full = full
        self._collected: set[str] = set()

    def add_chunk(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Apply (or collect, for a full report) one message's ids."""
        added_ids = check_block_ids(added)
        removed_ids = check_block_ids(removed)
        if self.full:
            if removed_ids:
                raise InvalidArgument("a full block report lists added ids only, not removed")
            self._collected.update(added_ids)
            return
        record = self._membership._reporting_worker(self.worker_id, self.incarnation)
        record.blocks.update(added_ids)
        record.blocks.difference_update(removed_ids)
        record.block_count = len(record.blocks)

    def finish(self) -> int:
        """End the report; return how many blocks the master now lists for the worker."""
        record = self._membership._reporting_worker(self.worker_id, self.incarnation)
        if self.full:
            record.blocks = self._collected
            self._collected = set()
        record.block_count = len(record.blocks)
        return record.block_count


class Membership:
    """The worker table and the ring epoch of one master.

    Not thread-safe: use it from the event loop only. ``clock`` (monotonic
    seconds) and ``wall_clock`` (Unix seconds) are injectable for tests.
    """

    def __init__(
        self,
        *,
        heartbeat_interval: float = 1.0,
        missed_heartbeats: int = 3,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        lost_retention: float = LOST_RETENTION_S,
        startup_grace: float | None = None,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.missed_heartbeats = missed_heartbeats
        self.lost_after = heartbeat_interval * missed_heartbeats
        self.suspect_after = heartbeat_interval * 2 if missed_heartbeats > 2 else self.lost_after
        self.lost_retention = lost_retention
        self._clock = clock
        self._wall_clock = wall_clock
        self._workers: dict[str, WorkerRecord] = {}
        self._epoch = int(wall_clock() * 1000)
        self.first_epoch = self._epoch
        """The epoch this master started with: every epoch it issues is at least this."""
        self.epoch_changes = 0
        self.startup_grace = self.lost_after if startup_grace is None else max(0.0, startup_grace)
        self._started = clock()
        self._grace_ends = self._started + self.startup_grace

    # -- reading ---------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current ring epoch."""
        return self._epoch

    def get(self, worker_id: str) -> WorkerRecord | None:
        """The record of ``worker_id`` (in any state), or ``None``."""
        return self._workers.get(worker_id)

    def workers(self, *, include_lost: bool = False) -> list[WorkerRecord]:
        """Known workers sorted by id; LOST ones only with ``include_lost``."""
        return [
            self._workers[worker_id]
            for worker_id in sorted(self._workers)
            if include_lost or self._workers[worker_id].state in ON_RING
        ]

    def ring_members(self) -> list[WorkerRecord]:
        """The workers on the ring (ACTIVE and SUSPECT), sorted by id."""
        return self.workers(include_lost=False)

    def ring_withheld(self, known_epoch: int) -> float:
        """Seconds a holder of ring ``known_epoch`` should keep it rather than take ours.

        Positive only during the start-up grace (see the module doc), and only
        for a ring of another master (``known_epoch`` not issued by this one);
        0 for no ring (``known_epoch`` 0) or one of ours.
        """
        if not known_epoch or self.first_epoch <= known_epoch <= self._epoch:
            return 0.0
        return self.startup_grace_left()

    def startup_grace_left(self) -> float:
        """Seconds until the start-up grace ends: workers may still be re-registering."""
        return max(0.0, self._grace_ends - self._clock())

    def count_in_state(self, state: WorkerState) -> int:
        """How many known workers are in ``state``."""
        return sum(1 for record in self._workers.values() if record.state is state)

    # -- changes -----------------------------------------------------------------

    def _bump(self, reason: str) -> None:
        self._epoch += 1
        self.epoch_changes += 1
        log.info("epoch %d: %s", self._epoch, reason)

    def register(
        self,
        worker_id: str,
        incarnation: int,
        endpoint: common_pb2.WorkerEndpoint,
        *,
        tiers: Iterable[common_pb2.TierUsage] = (),
        block_ids: Iterable[str] = (),
        blocks_follow: bool = False,
        version: str = "",
    ) -> int:
        """Add or refresh a worker; return the epoch once it is in.

        Idempotent for the same ``(worker_id, incarnation)``. A new incarnation
        replaces the old entry (a restarted worker). Inline ``block_ids``
        replace the worker's block set; with ``blocks_follow`` a full
        ``ReportBlocks`` stream is expected next.
        """
        check_worker_id(worker_id)
        if not endpoint.host or not 0 < endpoint.data_port <= 65535:
            raise InvalidArgument(
                f"worker {worker_id}: endpoint needs a host and a data port "
                f"(got {endpoint.host!r}:{endpoint.data_port})"
            )
        ids = check_block_ids(block_ids)
        if blocks_follow and ids:
            raise InvalidArgument(
                f"worker {worker_id}: block ids inline and blocks_follow both set"
            )
        now, now_ms = self._clock(), int(self._wall_clock() * 1000)
        old = self._workers.get(worker_id)
        record = WorkerRecord(
            worker_id=worker_id,
            incarnation=incarnation,
            endpoint=endpoint,
            version=version,
            state=WorkerState.ACTIVE,
            registered_at_ms=now_ms,
            last_heartbeat_ms=now_ms,
            last_seen=now,
            tiers=list(tiers),
        )
        if old is None:
            reason = f"worker {worker_id} joined at {record.address}"
        elif old.incarnation != incarnation:
            reason = f"worker {worker_id} restarted (incarnation {incarnation}) at {record.address}"
        elif old.state is WorkerState.LOST:
            reason = f"worker {worker_id} is back at {record.address}"
        elif not _same_endpoint(old.endpoint, endpoint):
            reason = f"worker {worker_id} moved to {record.address}"
        else:
            reason = ""
        if old is not None and old.incarnation == incarnation:
            record.registered_at_ms = old.registered_at_ms
            record.counters = old.counters
            record.blocks = old.blocks  # same process: what it held still holds
        if not blocks_follow:
            record.blocks = set(ids)
        record.block_count = len(record.blocks)
        self._workers[worker_id] = record
        if reason:
            self._bump(reason)
            if now < self._grace_ends:  # workers are coming back: wait for the rest a little
                cap = self._started + 2 * self.startup_grace
                self._grace_ends = min(cap, max(self._grace_ends, now + self.heartbeat_interval))
        return self._epoch

    def heartbeat(
        self,
        worker_id: str,
        incarnation: int,
        *,
        tiers: Iterable[common_pb2.TierUsage] = (),
        counters: common_pb2.WorkerCounters | None = None,
        block_count: int | None = None,
    ) -> tuple[int, bool]:
        """Record a beat; return ``(epoch, reregister)``.

        ``reregister`` is true when the master does not know this worker or
        this incarnation, or has declared it LOST: it must call ``register``.
        """
        record = self._workers.get(worker_id)
        if record is None or record.incarnation != incarnation or record.state is WorkerState.LOST:
            return self._epoch, True
        record.last_seen = self._clock()
        record.last_heartbeat_ms = int(self._wall_clock() * 1000)
        record.tiers = list(tiers)
        if counters is not None:
            record.counters = counters
        if block_count is not None:
            record.block_count = block_count
        if record.state is WorkerState.SUSPECT:
            log.info("worker %s is beating again", worker_id)
            record.state = WorkerState.ACTIVE
        return self._epoch, False

    def start_block_report(self, worker_id: str, incarnation: int, *, full: bool) -> BlockReport:
        """Begin a ``ReportBlocks`` stream from a registered worker."""
        self._reporting_worker(worker_id, incarnation)
        return BlockReport(self, worker_id, incarnation, full)

    def _reporting_worker(self, worker_id: str, incarnation: int) -> WorkerRecord:
        record = self._workers.get(worker_id)
        if record is None or record.incarnation != incarnation:
            raise NotFound(
                f"worker {worker_id!r} incarnation {incarnation} is not registered "
                "(call RegisterWorker first)"
            )
        return record

    def check_liveness(self) -> list[str]:
        """Mark silent workers SUSPECT or LOST; return the ids lost by this check.

        One epoch change covers every worker lost at the same check. LOST
        workers silent for longer than ``lost_retention`` are forgotten.
        """
        now = self._clock()
        lost: list[str] = []
        for worker_id in sorted(self._workers):
            record = self._workers[worker_id]
            silent = now - record.last_seen
            if record.state is WorkerState.LOST:
                if now - record.lost_at > self.lost_retention:
                    del self._workers[worker_id]
                continue
            if silent > self.lost_after:
                record.state = WorkerState.LOST
                record.lost_at = now
                lost.append(worker_id)
                log.warning("worker %s lost: no heartbeat for %.1fs", worker_id, silent)
            elif silent > self.suspect_after and record.state is WorkerState.ACTIVE:
                record.state = WorkerState.SUSPECT
                log.info("worker %s suspect: no heartbeat for %.1fs", worker_id, silent)
        if lost:
            self._bump(f"lost {', '.join(lost)}")
        return lost

    async def run_liveness_checks(self) -> None:
        """Call :meth:`check_liveness` several times an interval, until cancelled."""
        period = max(0.005, min(self.heartbeat_interval / 4, 1.0))
        while True:
            await asyncio.sleep(period)
            self.check_liveness()
