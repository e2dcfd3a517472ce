"""Benchmark of the consistent-hash ring at cluster scale.

Run: ``.venv/bin/python -m bench.bench_ring [--workers 1000] [--vnodes 1000] [--keys 1000000]``.

Builds a ring of ``--workers`` equal workers and reports, in one table:

* build time (median of ``--builds`` builds from a snapshot, as a client does
  on an epoch change) and the size of the lookup table;
* balance: max/mean and min/mean keys a worker over ``--keys`` keys, next to
  the same figures for a plain one-probe ring with the same points and for
  ideal placement (``hash % N``, the sampling noise floor of that many keys);
* movement when one worker joins and when one leaves: the fraction of keys
  whose primary moved, as a multiple of the ideal ``1/N``, and whether any key
  moved between two workers that stayed;
* lookup time: median microseconds a lookup for 1 and for 3 replicas.

It reports figures; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping

import xxhash

from cachecluster.common.ring import HashRing, RingSnapshot, RingWorker

_POSITION_MASK = ((1 << 64) - 1) ^ ((1 << 20) - 1)


def _balance(counts: Mapping[str, float], workers: int, keys: float) -> tuple[float, float]:
    mean = keys / workers
    loads = [counts.get(f"worker-{index}", 0) for index in range(workers)]
    return max(loads) / mean, min(loads) / mean


def _primaries(ring: HashRing, keys: list[str]) -> list[str]:
    owners = ring.owners
    return [owners(key)[0] for key in keys]


def _exact_shares(ring: HashRing) -> tuple[dict[str, float], dict[str, float]]:
    """Each worker's exact share of the key space, two-probe and one-probe.

    One probe: a point owns the gap before it. Two probes ``u1, u2``: the key
    goes to the point after the probe with the shorter distance ``d``. With
    ``F(x) = P(d <= x) = sum_j min(g_j, x)`` over the gaps ``g_j``, the point
    after gap ``g`` wins with probability ``2 * integral_0^g (1 - F(x)) dx``,
    computed for every gap at once over the gaps sorted.
    """
    ring.build()
    table = ring._table
    assert table is not None
    span = float(1 << 44)
    positions = [point >> 20 for point in table.points]
    gaps = [
        (positions[index] - positions[index - 1]) % (1 << 44) / span
        for index in range(len(positions))
    ]
    if len(positions) == 1:
        gaps = [1.0]
    order = sorted(range(len(gaps)), key=gaps.__getitem__)
    integral = [0.0] * len(gaps)
    below, previous, total = 0.0, 0.0, len(gaps)
    for done, index in enumerate(order):
        gap = gaps[index]
        done_integral = (1.0 - below) * (gap - previous) - (total - done) * (
            gap**2 - previous**2
        ) / 2
        integral[index] = (integral[order[done - 1]] if done else 0.0) + done_integral
        below += gap
        previous = gap
    two: dict[str, float] = dict.fromkeys(table.ids, 0.0)
    one: dict[str, float] = dict.fromkeys(table.ids, 0.0)
    for index, point in enumerate(table.points):
        worker_id = table.ids[point & 0xFFFFF]
        two[worker_id] += 2 * integral[index]
        one[worker_id] += gaps[index]
    return two, one


def _timed(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _lookup_us(ring: HashRing, keys: list[str], replicas: int, batches: int = 7) -> float:
    owners = ring.owners
    batch = keys[:20_000]

    def run() -> None:
        for key in batch:
            owners(key, replicas)

    return _timed(run, batches) / len(batch) * 1e6


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--vnodes", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--builds", type=int, default=3)
    args = parser.parse_args()
    workers = args.workers
    keys = [f"{index:032x}" for index in range(args.keys)]
    snapshot = RingSnapshot(
        workers=tuple(RingWorker(f"worker-{index}") for index in range(workers)),
        vnodes=args.vnodes,
    )
    rows: list[tuple[str, str, str]] = []

    build_s = _timed(lambda: HashRing.from_snapshot(snapshot), args.builds)
    ring = HashRing.from_snapshot(snapshot)
    assert ring._table is not None
    points = len(ring._table.points)
    rows.append(("build from snapshot", f"{build_s:.2f} s", f"median of {args.builds}"))
    rows.append(("lookup table", f"{points * 8 / 1e6:.1f} MB", f"{points:,} points x 8 B"))

    two, one = _exact_shares(ring)
    high, low = _balance(two, workers, 1)
    rows.append(("balance max/mean, exact", f"{high:.3f}", f"min/mean {low:.3f}, two probes"))
    high, low = _balance(one, workers, 1)
    rows.append(("  plain ring, same points", f"{high:.3f}", f"min/mean {low:.3f}, one probe"))
    before = _primaries(ring, keys)
    high, low = _balance(Counter(before), workers, len(keys))
    rows.append(("balance max/mean, keys", f"{high:.3f}", f"min/mean {low:.3f}, two probes"))
    ideal: Counter[str] = Counter(
        f"worker-{xxhash.xxh3_64_intdigest(key.encode()) % workers}" for key in keys
    )
    high, low = _balance(ideal, workers, len(keys))
    rows.append(("  ideal (hash % N)", f"{high:.3f}", f"min/mean {low:.3f}, noise of the keys"))

    ring.add_worker(RingWorker("worker-joined"))
    joined = _primaries(ring, keys)
    moved = [(old, new) for old, new in zip(before, joined, strict=True) if old != new]
    stray = sum(1 for _, new in moved if new != "worker-joined")
    fraction = len(moved) / len(keys)
    rows.append(
        (
            "join: keys moved",
            f"{fraction * (workers + 1):.3f} x 1/N",
            f"{fraction:.5f} of keys, {stray} not to the new worker",
        )
    )

    ring.remove_worker("worker-joined")
    ring.remove_worker("worker-0")
    left = _primaries(ring, keys)
    moved = [(old, new) for old, new in zip(before, left, strict=True) if old != new]
    stray = sum(1 for old, _ in moved if old != "worker-0")
    fraction = len(moved) / len(keys)
    rows.append(
        (
            "leave: keys moved",
            f"{fraction * workers:.3f} x 1/N",
            f"{fraction:.5f} of keys, {stray} not from the leaver",
        )
    )

    ring = HashRing.from_snapshot(snapshot)
    for replicas in (1, 3):
        micros = _lookup_us(ring, keys, replicas)
        rows.append((f"lookup, {replicas} replica(s)", f"{micros:.2f} us", "median of 7 x 20k"))

    print(f"ring: {workers} workers x {args.vnodes} vnodes, {len(keys):,} keys")
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for name, value, note in rows:
        print(f"  {name:<{widths[0]}}  {value:>{widths[1]}}  {note}")


if __name__ == "__main__":
    main()
