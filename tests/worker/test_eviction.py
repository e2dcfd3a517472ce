"""Eviction policies on their own: LRU order, SLRU scan resistance, the registry."""

from __future__ import annotations

import pytest

from cachecluster.common.errors import ConfigError
from cachecluster.worker.eviction import (
    EvictionPolicy,
    LruPolicy,
    SlruPolicy,
    make_policy,
    policy_names,
)


def test_lru_order() -> None:
    policy = LruPolicy()
    for name in "abcde":
        policy.add(name)
    policy.touch("a")
    policy.touch("c")
    policy.touch("zz")  # unknown: ignored
    assert list(policy.victims()) == ["b", "d", "e", "a", "c"]
    assert policy.pick() == "b"
    policy.remove("b")
    policy.remove("nope")
    policy.add("d")  # re-adding counts as a touch
    assert list(policy.victims()) == ["e", "a", "c", "d"]
    assert len(policy) == 4 and "a" in policy and "b" not in policy


def test_slru_segments() -> None:
    policy = SlruPolicy(protected_fraction=0.5)
    for name in "abcd":
        policy.add(name)
    policy.touch("a")
    assert policy.segment_of("a") == "protected"
    assert list(policy.victims()) == ["b", "c", "d", "a"]
    policy.touch("b")
    policy.touch("c")
    assert policy.segment_of("a") == "protected"  # the cap applies when evicting
    # protected may hold 2 of 4: its least recent block, "a", falls back to probation
    assert list(policy.victims()) == ["d", "a", "b", "c"]
    assert policy.segment_of("a") == "probation"
    policy.remove("b")
    assert policy.segment_of("b") is None
    assert len(policy) == 3


def _simulate(policy: EvictionPolicy, accesses: list[str], capacity: int) -> set[str]:
    """Run a cache of ``capacity`` blocks over ``accesses``; return what it holds at the end."""
    held: set[str] = set()
    for name in accesses:
        if name in held:
            policy.touch(name)
            continue
        if len(held) >= capacity:
            victim = policy.pick()
            assert victim is not None
            policy.remove(victim)
            held.discard(victim)
        policy.add(name)
        held.add(name)
    return held


def test_slru_keeps_a_hot_set_through_a_scan_that_flushes_lru() -> None:
    capacity = 100
    hot = [f"hot-{i}" for i in range(40)]
    warmup = hot * 3  # the hot set is read several times
    scan = [f"scan-{i}" for i in range(1000)]  # one pass over 10x the cache
    accesses = warmup + scan
    lru_held = _simulate(LruPolicy(), accesses, capacity)
    slru_held = _simulate(SlruPolicy(), accesses, capacity)
    assert not lru_held & set(hot)  # LRU lost every hot block
    assert set(hot) <= slru_held  # SLRU kept all of them
    # and so the hot set still hits after the scan
    hits_lru = sum(name in lru_held for name in hot)
    hits_slru = sum(name in slru_held for name in hot)
    assert (hits_lru, hits_slru) == (0, len(hot))


def test_registry() -> None:
    assert {"lru", "slru"} <= set(policy_names())
    assert isinstance(make_policy(), LruPolicy)
    assert isinstance(make_policy("SLRU"), SlruPolicy)
    with pytest.raises(ConfigError) as info:
        make_policy("fifo")
    assert str(info.value) == (
        "worker.evictionPolicy: unknown eviction policy 'fifo' (known: lru, slru)"
    )
    with pytest.raises(ConfigError, match=r"^slru.protected_fraction"):
        SlruPolicy(1.5)
