"""Membership: registration, heartbeats, loss after missed beats, epochs, block reports."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.master.membership import Membership, WorkerState
from cachecluster.protos import common_pb2


class FakeClock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoint(port: int = 7000, host: str = "127.0.0.1") -> common_pb2.WorkerEndpoint:
    return common_pb2.WorkerEndpoint(host=host, data_port=port, grpc_port=port + 1)


def block(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def members(clock: FakeClock) -> Membership:
    return Membership(heartbeat_interval=1.0, missed_heartbeats=3, clock=clock)


def test_register_is_idempotent_and_bumps_epoch_once(members: Membership) -> None:
    start = members.epoch
    first = members.register("w1", 11, endpoint())
    assert first == start + 1
    assert members.register("w1", 11, endpoint()) == first  # same incarnation, same place
    assert [r.worker_id for r in members.ring_members()] == ["w1"]
    members.register("w0", 5, endpoint(7100))
    assert [r.worker_id for r in members.ring_members()] == ["w0", "w1"]
    assert members.epoch == first + 1


def test_epoch_starts_from_wall_clock_so_a_restarted_master_never_reuses_one() -> None:
    before = Membership(wall_clock=lambda: 1_000.0)
    after = Membership(wall_clock=lambda: 1_001.0)
    before.register("w1", 1, endpoint())
    assert after.epoch > before.epoch


def test_new_incarnation_replaces_the_entry(members: Membership) -> None:
    members.register("w1", 1, endpoint(), block_ids=[block(1), block(2)])
    epoch = members.epoch
    members.register("w1", 2, endpoint(7200), block_ids=[block(3)])
    record = members.get("w1")
    assert record is not None
    assert (record.incarnation, record.endpoint.data_port) == (2, 7200)
    assert record.blocks == {block(3)}
    assert members.epoch == epoch + 1
    # The old incarnation is told to register (it is gone anyway).
    assert members.heartbeat("w1", 1) == (members.epoch, True)
    assert members.heartbeat("w1", 2) == (members.epoch, False)


def test_endpoint_change_of_same_incarnation_changes_epoch(members: Membership) -> None:
    members.register("w1", 1, endpoint(7000))
    epoch = members.epoch
    members.register("w1", 1, endpoint(7300))
    assert members.epoch == epoch + 1


def test_unknown_worker_heartbeat_asks_to_reregister(members: Membership) -> None:
    assert members.heartbeat("nobody", 1) == (members.epoch, True)


def test_silent_worker_goes_suspect_then_lost_then_back(
    members: Membership, clock: FakeClock
) -> None:
    members.register("w1", 1, endpoint())
    members.register("w2", 1, endpoint(7100))
    epoch = members.epoch
    clock.now += 2.5
    members.heartbeat("w2", 1)
    assert members.check_liveness() == []
    assert members.get("w1").state is WorkerState.SUSPECT  # type: ignore[union-attr]
    assert members.epoch == epoch  # still on the ring
    assert {r.worker_id for r in members.ring_members()} == {"w1", "w2"}

    clock.now += 0.6  # 3.1 s silent: more than 3 missed beats
    members.heartbeat("w2", 1)
    assert members.check_liveness() == ["w1"]
    assert members.get("w1").state is WorkerState.LOST  # type: ignore[union-attr]
    assert members.epoch == epoch + 1
    assert [r.worker_id for r in members.ring_members()] == ["w2"]
    assert [r.worker_id for r in members.workers(include_lost=True)] == ["w1", "w2"]
    assert members.count_in_state(WorkerState.LOST) == 1

    # A late heartbeat of the lost worker is refused: it must register again.
    assert members.heartbeat("w1", 1) == (epoch + 1, True)
    members.register("w1", 1, endpoint())
    assert members.get("w1").state is WorkerState.ACTIVE  # type: ignore[union-attr]
    assert members.epoch == epoch + 2


def test_suspect_worker_recovers_on_heartbeat_without_epoch_change(
    members: Membership, clock: FakeClock
) -> None:
    members.register("w1", 1, endpoint())
    epoch = members.epoch
    clock.now += 2.5
    members.check_liveness()
    assert members.get("w1").state is WorkerState.SUSPECT  # type: ignore[union-attr]
    assert members.heartbeat("w1", 1) == (epoch, False)
    assert members.get("w1").state is WorkerState.ACTIVE  # type: ignore[union-attr]


def test_one_epoch_change_for_workers_lost_together(members: Membership, clock: FakeClock) -> None:
    for n in range(3):
        members.register(f"w{n}", 1, endpoint(7000 + n))
    epoch = members.epoch
    clock.now += 10
    assert members.check_liveness() == ["w0", "w1", "w2"]
    assert members.epoch == epoch + 1


def test_lost_workers_are_forgotten_after_retention(clock: FakeClock) -> None:
    members = Membership(heartbeat_interval=1.0, clock=clock, lost_retention=60)
    members.register("w1", 1, endpoint())
    clock.now += 5
    members.check_liveness()
    clock.now += 61
    members.check_liveness()
    assert members.get("w1") is None


def test_heartbeat_records_usage_and_counters(members: Membership) -> None:
    members.register("w1", 1, endpoint())
    tier = common_pb2.TierUsage(medium=common_pb2.MEDIUM_MEM, capacity_bytes=100, used_bytes=40)
    counters = common_pb2.WorkerCounters(hits=7, misses=2)
    members.heartbeat("w1", 1, tiers=[tier], counters=counters, block_count=12)
    record = members.get("w1")
    assert record is not None
    assert record.tiers[0].used_bytes == 40
    assert record.counters.hits == 7
    assert record.block_count == 12


def test_block_reports_full_and_incremental(members: Membership) -> None:
    members.register("w1", 1, endpoint(), blocks_follow=True)
    report = members.start_block_report("w1", 1, full=True)
    report.add_chunk([block(n) for n in range(5)], [])
    report.add_chunk([block(n) for n in range(5, 8)], [])
    assert members.get("w1").blocks == set()  # type: ignore[union-attr]  # not until the end
    assert report.finish() == 8

    delta = members.start_block_report("w1", 1, full=False)
    delta.add_chunk([block(100)], [block(0), block(1)])
    assert delta.finish() == 7
    assert members.get("w1").blocks == {block(n) for n in (2, 3, 4, 5, 6, 7, 100)}  # type: ignore[union-attr]

    # A full report replaces everything.
    again = members.start_block_report("w1", 1, full=True)
    again.add_chunk([block(9)], [])
    assert again.finish() == 1


def test_reregistering_same_incarnation_keeps_blocks_until_the_report(
    members: Membership,
) -> None:
    members.register("w1", 1, endpoint(), block_ids=[block(1)])
    members.register("w1", 1, endpoint(), blocks_follow=True)
    assert members.get("w1").blocks == {block(1)}  # type: ignore[union-attr]


def test_block_report_errors(members: Membership) -> None:
    with pytest.raises(NotFound, match="not registered"):
        members.start_block_report("w1", 1, full=True)
    members.register("w1", 1, endpoint())
    with pytest.raises(NotFound):
        members.start_block_report("w1", 2, full=True)
    report = members.start_block_report("w1", 1, full=False)
    with pytest.raises(InvalidArgument, match="block id"):
        report.add_chunk(["not-a-block-id"], [])
    # The worker restarted mid-stream: the old stream cannot finish.
    members.register("w1", 2, endpoint())
    with pytest.raises(NotFound):
        report.finish()


@pytest.mark.parametrize(
    ("worker_id", "port", "message"),
    [("", 7000, "worker id"), ("bad id", 7000, "worker id"), ("w1", 0, "data port")],
)
def test_register_refuses_bad_input(
    members: Membership, worker_id: str, port: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        members.register(worker_id, 1, endpoint(port))


async def test_background_check_loses_a_silent_worker() -> None:
    members = Membership(heartbeat_interval=0.1, missed_heartbeats=3)
    members.register("w1", 1, endpoint())
    members.register("w2", 1, endpoint(7100))
    task = asyncio.create_task(members.run_liveness_checks())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while members.get("w1").state is not WorkerState.LOST:  # type: ignore[union-attr]
            assert loop.time() < deadline, "w1 was never declared lost"
            members.heartbeat("w2", 1)  # w2 keeps beating, w1 is silent
            await asyncio.sleep(0.02)
        assert members.get("w2").state is WorkerState.ACTIVE  # type: ignore[union-attr]
        assert [r.worker_id for r in members.ring_members()] == ["w2"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_restarted_master_withholds_its_partial_ring_from_old_ring_holders(
    clock: FakeClock,
) -> None:
    old = Membership(heartbeat_interval=1.0, missed_heartbeats=3, clock=clock, wall_clock=lambda: 1)
    old.register("w0", 1, endpoint(7000))
    old.register("w1", 1, endpoint(7100))
    old_epoch = old.epoch
    new = Membership(heartbeat_interval=1.0, missed_heartbeats=3, clock=clock, wall_clock=lambda: 9)
    assert new.startup_grace == 3.0
    # An old ring is kept for the grace; no ring, or one of this master, is served at once.
    assert new.ring_withheld(old_epoch) == pytest.approx(3.0)
    assert new.ring_withheld(new.epoch + 10**9) == pytest.approx(3.0)  # not issued by us either
    assert new.ring_withheld(0) == 0.0
    new.register("w0", 1, endpoint(7000))
    assert new.ring_withheld(new.epoch) == 0.0
    assert new.ring_withheld(new.first_epoch) == 0.0
    clock.now += 2.9
    assert new.ring_withheld(old_epoch) == pytest.approx(0.1)
    clock.now += 0.2
    assert new.ring_withheld(old_epoch) == 0.0


def test_the_grace_grows_while_workers_come_back_but_is_bounded(clock: FakeClock) -> None:
    members = Membership(heartbeat_interval=1.0, missed_heartbeats=2, clock=clock)
    old_epoch = members.first_epoch - 5
    clock.now += 1.5
    members.register("w0", 1, endpoint(7000))
    assert members.ring_withheld(old_epoch) == pytest.approx(1.0)  # joined 1.5 s in: 2.5 s
    members.register("w0", 1, endpoint(7000))  # no change: no extension
    assert members.ring_withheld(old_epoch) == pytest.approx(1.0)
    for port in range(7100, 7600, 100):
        clock.now += 0.8
        members.register(f"w{port}", 1, endpoint(port))
    assert members.ring_withheld(old_epoch) == 0.0  # capped at twice the grace (4 s)
    members.register("w9", 1, endpoint(7900))
    assert members.ring_withheld(old_epoch) == 0.0  # after the grace a join extends nothing


def test_no_grace_when_configured_off(clock: FakeClock) -> None:
    members = Membership(heartbeat_interval=1.0, clock=clock, startup_grace=0)
    members.register("w0", 1, endpoint())
    assert members.ring_withheld(members.first_epoch - 1) == 0.0
