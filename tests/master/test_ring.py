"""The consistent-hash ring: balance, movement, replicas, weights, determinism."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from cachecluster.common.block_key import PLACEMENT_GROUP_BYTES, BlockKey, group_blocks
from cachecluster.common.errors import InvalidArgument
from cachecluster.common.ring import (
    DEFAULT_VNODES,
    MAX_VNODES,
    RING_SCHEME,
    HashRing,
    RingSnapshot,
    RingWorker,
    vnode_count,
)

KEYS = [f"{index:032x}" for index in range(200_000)]
MOVEMENT_KEYS = 100_000


def _ring(count: int, **kwargs: int) -> HashRing:
    return HashRing((RingWorker(f"worker-{index}") for index in range(count)), **kwargs)


def _primaries(ring: HashRing, keys: list[str] | list[bytes]) -> list[str]:
    owners = ring.owners
    return [owners(key)[0] for key in keys]


@pytest.fixture(scope="module")
def ring100() -> HashRing:
    ring = _ring(100)
    ring.build()
    return ring


@pytest.fixture(scope="module")
def primaries100(ring100: HashRing) -> list[str]:
    return _primaries(ring100, KEYS)


def test_balance_of_equal_workers(ring100: HashRing, primaries100: list[str]) -> None:
    load = Counter(primaries100)
    assert len(load) == 100
    mean = len(KEYS) / 100
    assert max(load.values()) / mean <= 1.10
    assert min(load.values()) / mean >= 0.85


def test_join_moves_keys_only_to_the_new_worker(primaries100: list[str]) -> None:
    ring = _ring(100)
    ring.add_worker(RingWorker("worker-new"))
    keys = KEYS[:MOVEMENT_KEYS]
    after = _primaries(ring, keys)
    moved = [new for old, new in zip(primaries100, after, strict=False) if old != new]
    assert set(moved) == {"worker-new"}
    assert len(moved) / len(keys) <= 1.2 / 101


def test_leave_moves_only_the_removed_workers_keys(primaries100: list[str]) -> None:
    ring = _ring(100)
    assert ring.remove_worker("worker-7")
    assert not ring.remove_worker("worker-7")
    after = _primaries(ring, KEYS[:MOVEMENT_KEYS])
    for old, new in zip(primaries100, after, strict=False):
        if old == "worker-7":
            assert new != "worker-7"
        else:
            assert new == old


def test_replicas_are_distinct_and_start_with_the_primary(ring100: HashRing) -> None:
    for key in KEYS[:5000]:
        owners = ring100.owners(key, 3)
        assert len(owners) == 3
        assert len(set(owners)) == 3
        assert owners[0] == ring100.owner(key)


def test_replicas_are_capped_by_the_worker_count() -> None:
    ring = _ring(3, vnodes=50)
    assert sorted(ring.owners("k", 5)) == ["worker-0", "worker-1", "worker-2"]
    assert len(ring.owners("k", 100)) == 3
    assert ring.owners("k", 0) == []


def test_empty_ring_has_no_owner() -> None:
    ring = HashRing()
    assert ring.owners("k", 3) == []
    assert ring.owner("k") is None


def test_weights_skew_load_proportionally() -> None:
    workers = [RingWorker(f"worker-{index}") for index in range(18)]
    workers += [RingWorker("heavy", weight=2.0), RingWorker("light", weight=0.5)]
    ring = HashRing(workers)
    load = Counter(_primaries(ring, KEYS[:100_000]))
    base = sum(load[f"worker-{index}"] for index in range(18)) / 18
    assert load["heavy"] / base == pytest.approx(2.0, rel=0.12)
    assert load["light"] / base == pytest.approx(0.5, rel=0.12)


def test_a_weight_change_moves_keys_only_to_or_from_that_worker() -> None:
    ring = _ring(20, vnodes=200)
    keys = KEYS[:20_000]
    before = _primaries(ring, keys)
    ring.add_worker(RingWorker("worker-3", weight=1.5))
    after = _primaries(ring, keys)
    assert {new for old, new in zip(before, after, strict=True) if old != new} == {"worker-3"}
    ring.add_worker(RingWorker("worker-3", weight=1.0))
    assert _primaries(ring, keys) == before


def test_address_update_keeps_placement() -> None:
    ring = _ring(10, vnodes=100)
    before = _primaries(ring, KEYS[:2000])
    ring.add_worker(RingWorker("worker-2", address="10.0.0.2:7001"))
    assert ring.get("worker-2") == RingWorker("worker-2", "10.0.0.2:7001")
    assert _primaries(ring, KEYS[:2000]) == before


def test_insertion_order_does_not_matter() -> None:
    workers = [RingWorker(f"w{index}", weight=1 + index % 3) for index in range(30)]
    forward = HashRing(workers, vnodes=100)
    backward = HashRing(reversed(workers), vnodes=100)
    for key in KEYS[:3000]:
        assert forward.owners(key, 3) == backward.owners(key, 3)


def test_snapshot_round_trip_rebuilds_the_same_ring() -> None:
    ring = HashRing(
        [RingWorker(f"w{index}", f"10.0.0.{index}:7000", 1 + index % 2) for index in range(12)],
        vnodes=300,
    )
    ring.remove_worker("w5")
    ring.add_worker(RingWorker("w99", "10.0.0.99:7000", 0.75))
    wire = json.dumps(ring.snapshot().to_dict())
    snapshot = RingSnapshot.from_dict(json.loads(wire))
    assert snapshot == ring.snapshot()
    assert snapshot.scheme == RING_SCHEME
    assert [worker.worker_id for worker in snapshot.workers] == sorted(
        worker.worker_id for worker in snapshot.workers
    )
    rebuilt = HashRing.from_snapshot(snapshot)
    for key in KEYS[:3000]:
        assert rebuilt.owners(key, 2) == ring.owners(key, 2)


def test_placement_is_pinned() -> None:
    """Clients and masters of different releases must agree: the scheme never drifts."""
    ring = HashRing([RingWorker(f"worker-{index}") for index in range(10)], vnodes=100)
    got = {key: ring.owners(key, 3) for key in ("a", "block-0", "0" * 32, "ü")}
    assert got == {
        "a": ["worker-7", "worker-4", "worker-6"],
        "block-0": ["worker-3", "worker-0", "worker-4"],
        "0" * 32: ["worker-5", "worker-4", "worker-8"],
        "ü": ["worker-3", "worker-9", "worker-0"],
    }
    assert ring.owners(b"a", 3) == got["a"]


def _reference_owners(workers: list[RingWorker], vnodes: int, key: str, replicas: int) -> list[str]:
    """The scheme as the module docstring states it, written plainly (for other clients)."""
    points: list[tuple[int, str]] = []
    for worker in workers:
        count = max(1, round(vnodes * worker.weight))
        stream = hashlib.shake_128(b"cachecluster-ring/v1\0" + worker.worker_id.encode())
        data = stream.digest(8 * count)
        for start in range(0, len(data), 8):
            word = int.from_bytes(data[start : start + 8], "little")
            points.append((word >> 20, worker.worker_id))
    points.sort()
    digest = xxhash.xxh3_128_intdigest(key.encode())
    probes = [(digest >> 64) >> 20, (digest & (2**64 - 1)) >> 20]

    def first_at_or_after(probe: int) -> tuple[int, int]:
        for index, (position, _) in enumerate(points):
            if position >= probe:
                return position - probe, index
        return points[0][0] + 2**44 - probe, 0

    (high_distance, high_index), (low_distance, low_index) = map(first_at_or_after, probes)
    index = low_index if low_distance < high_distance else high_index
    owners: list[str] = []
    for step in range(len(points)):
        owner = points[(index + step) % len(points)][1]
        if owner not in owners:
            owners.append(owner)
    return owners[:replicas]


def test_matches_the_documented_scheme() -> None:
    workers = [RingWorker(f"node-{index}", weight=0.5 + index / 4) for index in range(6)]
    ring = HashRing(workers, vnodes=16)
    for key in KEYS[:300]:
        assert ring.owners(key, 3) == _reference_owners(workers, 16, key, 3)


@settings(max_examples=25, deadline=None)
@given(
    ids=st.sets(st.text(min_size=1, max_size=12), min_size=1, max_size=12),
    key=st.text(max_size=40),
    replicas=st.integers(min_value=1, max_value=15),
)
def test_owners_are_distinct_members(ids: set[str], key: str, replicas: int) -> None:
    ring = HashRing((RingWorker(worker_id) for worker_id in ids), vnodes=20)
    owners = ring.owners(key, replicas)
    assert len(owners) == min(replicas, len(ids))
    assert len(set(owners)) == len(owners)
    assert set(owners) <= ids


@pytest.mark.parametrize("weight", [0, -1.0, math.nan, math.inf, 1001.0, True, "2"])
def test_bad_weights_are_refused(weight: object) -> None:
    with pytest.raises(InvalidArgument, match="weight"):
        RingWorker("w", weight=weight)  # type: ignore[arg-type]


@pytest.mark.parametrize("vnodes", [0, -5, MAX_VNODES + 1, 2.5])
def test_bad_vnodes_are_refused(vnodes: object) -> None:
    with pytest.raises(InvalidArgument, match="vnodes"):
        HashRing(vnodes=vnodes)  # type: ignore[arg-type]


def test_bad_snapshots_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="scheme"):
        HashRing.from_snapshot(RingSnapshot(workers=(), scheme="maglev-v9"))
    twice = (RingWorker("a"), RingWorker("a"))
    with pytest.raises(InvalidArgument, match="duplicate"):
        HashRing.from_snapshot(RingSnapshot(workers=twice))
    with pytest.raises(InvalidArgument, match="id"):
        RingSnapshot.from_dict({"workers": [{"address": "x"}]})
    with pytest.raises(InvalidArgument, match="weight"):
        RingSnapshot.from_dict({"workers": [{"id": "a", "weight": "heavy"}]})
    with pytest.raises(InvalidArgument, match="worker id"):
        RingWorker("")


def test_vnode_counts_follow_weight() -> None:
    assert vnode_count(1.0, DEFAULT_VNODES) == DEFAULT_VNODES
    assert vnode_count(0.0001, 1000) == 1
    assert vnode_count(2.5, 100) == 250
    with pytest.raises(InvalidArgument, match="points"):
        vnode_count(200.0, 1000)


def test_membership_accessors() -> None:
    ring = _ring(3, vnodes=10)
    assert len(ring) == 3
    assert "worker-1" in ring
    assert "worker-9" not in ring
    assert ring.get("worker-9") is None
    assert [worker.worker_id for worker in ring.workers] == ["worker-0", "worker-1", "worker-2"]
    assert ring.vnodes == 10


def test_a_files_blocks_are_placed_by_group() -> None:
    block_size = 4 << 20
    group = group_blocks(block_size)
    assert group == PLACEMENT_GROUP_BYTES // block_size == 16
    keys = [
        BlockKey("m", "dir/f.bin", "etag-1", index).placement_key(block_size) for index in range(40)
    ]
    assert len(set(keys[:16])) == len(set(keys[16:32])) == len(set(keys[32:])) == 1
    assert len({keys[0], keys[16], keys[32]}) == 3
    # Another version, path or mount is placed on its own; block ids stay what they were.
    assert BlockKey("m", "dir/f.bin", "etag-2", 0).placement_key(block_size) != keys[0]
    assert BlockKey("m", "dir/g.bin", "etag-1", 0).placement_key(block_size) != keys[0]
    assert BlockKey("n", "dir/f.bin", "etag-1", 0).placement_key(block_size) != keys[0]
    assert BlockKey("m", "p", "v", 3).id == "013672fd0753f40903af728d3a043a84"
    # Blocks as large as a group (or larger) are each a group of one.
    assert group_blocks(PLACEMENT_GROUP_BYTES * 2) == 1
    big = [BlockKey("m", "f", "v", i).placement_key(PLACEMENT_GROUP_BYTES) for i in range(3)]
    assert len(set(big)) == 3


def test_balance_of_placement_groups(ring100: HashRing) -> None:
    """Files of 64 MiB groups (and one-block small files) still spread evenly over workers."""
    block_size = 4 << 20
    groups = [
        BlockKey("mount", f"data/{file:05d}.bin", "v1", group * 16).placement_key(block_size)
        for file in range(2_000)
        for group in range(16)  # 1 GiB files
    ]
    small = [
        BlockKey("mount", f"small/{n}", "v1", 0).placement_key(block_size) for n in range(32_000)
    ]
    for keys in (groups, small):
        load = Counter(_primaries(ring100, keys))
        mean = len(keys) / 100
        assert len(load) == 100
        assert max(load.values()) / mean <= 1.25
        assert min(load.values()) / mean >= 0.75
