"""Garbage-collector settings for the processes that serve: master, worker, FUSE mount.

CPython's cyclic collector runs a young collection every 700 new container
objects, and now and then a full one over every object the process holds.
A server on an event loop makes many short-lived containers (tasks,
futures, frames, tuples) a request, and holds a large heap that never dies
(gRPC, protobuf, the UFS SDKs' service models). With the defaults a cold
sequential read spent about 7% of the worker's CPU in the collector (perf:
``gc_collect_main``, ``visit_reachable``, ``visit_decref``).

:func:`tune_for_server` moves what the process holds after start-up out of
the collector's sight (``gc.freeze``) and lets the young generation grow
to :data:`YOUNG_THRESHOLD` objects first, so most of them have died by
reference count before a collection looks at them. Cycles are still
collected, a little later. Library code (the client in a user's process)
never calls this: a user's process keeps its own settings.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""New container objects between two young collections (CPython's default: 700)."""


def tune_for_server() -> None:
    """Freeze the objects made so far and raise the young collection threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
