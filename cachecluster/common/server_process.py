"""Process settings for the processes that serve: master, worker, FUSE mount.

:func:`prepare_server_process` runs once at start, after the imports and
before the event loop. Library code (the client in a user's process) never
calls it: a user's process keeps its own settings.

**Garbage collector.** CPython's cyclic collector runs a young collection
every 700 new container objects, and now and then a full one over every
object the process holds. A server on an event loop makes many short-lived
containers (tasks, futures, frames, tuples) a request, and holds a large heap
that never dies (gRPC, protobuf, the UFS SDKs' service models). With the
defaults a cold sequential read spent about 7% of the worker's CPU in the
collector (perf: ``gc_collect_main``, ``visit_reachable``, ``visit_decref``).
:func:`tune_gc` moves what the process holds after start-up out of the
collector's sight (``gc.freeze``) and lets the young generation grow to
:data:`YOUNG_THRESHOLD` objects first, so most of them have died by
reference count before a collection looks at them. Cycles are still
collected, a little later.

**Open files.** A worker holds a descriptor for every block being read or
passed; a FUSE mount holds the block files of the files it reads (up to a
quarter of its limit, see
:func:`cachecluster.client.short_circuit.max_blocks_for_fd_limit`). Many
systems start processes with a soft limit of 1,024 under a much higher hard
one: :func:`raise_fd_limit` lifts the soft limit to the hard one, as Go's
runtime and most servers do.
"""

from __future__ import annotations

import gc
import logging
import resource

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 20_000
"""New container objects between two young collections (CPython's default: 700)."""


def prepare_server_process() -> None:
    """Everything below, once, at the start of a serving process."""
    raise_fd_limit()
    tune_gc()


def tune_gc() -> None:
    """Freeze the objects made so far and raise the young collection threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (soft, hard) or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # a sandbox may refuse it: keep the soft limit
        log.info("open-file limit stays at %d (hard %d): %s", soft, hard, exc)
        return soft
    return hard
