"""Make a running local cluster match a runtime document: worker count and tiers.

In local mode the running cluster *is* the runtime. ``cachecluster apply -f``
calls :func:`sync_runtime` after the master stored a runtime:

* extra workers (highest index first) are stopped; missing ones are started
  with the tiers the others have;
* when ``tieredstore`` differs from what a worker runs, workers are restarted
  **one at a time** with the new tiers (each back ACTIVE before the next), so
  readers always have the others.

Tier paths are templates, as for ``up --tier``: worker ``i`` gets its own
``<path>/w<i>``. A path of exactly ``/dev/shm`` (what Fluid's examples write:
a pod's own tmpfs) becomes this cluster's tmpfs folder
(``/dev/shm/cachecluster-<uid>-<hash>``), so that two local clusters never
share a folder. Every change is reported through ``say`` as one line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from cachecluster.local.cluster import LocalCluster
from cachecluster.local.layout import SHM_ROOT, check_tier_templates
from cachecluster.worker.tiers import TierConfig


def _key(tiers: Sequence[TierConfig]) -> list[tuple[str, str, int, float, float]]:
    return sorted((t.medium.value, os.path.normpath(t.path), t.quota, t.high, t.low) for t in tiers)


def local_templates(cluster: LocalCluster, tiers: Sequence[TierConfig]) -> list[TierConfig]:
    """``tiers`` as this cluster's templates (``/dev/shm`` -> the cluster's tmpfs folder)."""
    templates = [
        dataclasses.replace(tier, path=str(cluster.layout.shm_root))
        if os.path.normpath(tier.path) == str(SHM_ROOT)
        else tier
        for tier in tiers
    ]
    return check_tier_templates(templates)


def _like_first(cluster: LocalCluster, index: int) -> list[TierConfig]:
    """Tiers for a new worker ``index`` when the runtime names none: worker 0's, moved to w<i>."""
    first = cluster.workers[0]
    own, new = first.worker_id, cluster.layout.worker_id(index)
    tiers = []
    for tier in first.tiers:
        parts = [new if part == own else part for part in tier.path.split(os.sep)]
        tiers.append(dataclasses.replace(tier, path=os.sep.join(parts)))
    return tiers


def _describe(tiers: Sequence[TierConfig], written: str) -> str:
    return written or ", ".join(f"{t.medium.value} {t.path} {t.quota}" for t in tiers)


def sync_runtime(
    cluster: LocalCluster,
    replicas: int,
    tiers: Sequence[TierConfig],
    *,
    say: Callable[[str], None],
    written_tiers: str = "",
) -> int:
    """Scale ``cluster`` to ``replicas`` workers on ``tiers`` (templates; empty: keep them).

    ``written_tiers`` is how the document wrote the tiers (``MEM /dev/shm 4Gi``),
    for the messages. Returns how many workers were started, stopped or restarted.
    """
    if replicas < 1:
        raise ValueError("replicas must be >= 1")
    templates = local_templates(cluster, tiers) if tiers else None
    changes = 0
    with cluster.locked():
        while len(cluster.workers) > replicas:
            worker = cluster.remove_worker()
            say(f"stopped worker {worker.worker_id} (replicas: {replicas})")
            changes += 1
        for worker in list(cluster.workers):
            if not templates:
                break
            want = cluster.layout.worker_tiers(templates, worker.index)
            if _key(want) == _key(worker.tiers):
                continue
            say(
                f"restarting worker {worker.worker_id} to apply tieredstore: "
                f"{_describe(want, written_tiers)}"
            )
            cluster.restart_worker(worker.index, want)
            cluster.wait_active()  # back in the ring before the next one goes
            changes += 1
        while len(cluster.workers) < replicas:
            index = len(cluster.workers)
            tiers = (
                cluster.layout.worker_tiers(templates, index)
                if templates
                else _like_first(cluster, index)
            )
            worker = cluster.add_worker(tiers)
            say(f"started worker {worker.worker_id} (replicas: {replicas})")
            changes += 1
        if changes:
            cluster.tier_templates = templates or cluster.tier_templates
            cluster.wait_active()
    return changes
