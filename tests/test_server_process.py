"""The process settings the master, worker and mount processes start with."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cachecluster.common.server_process import YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _run(script: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip()


@pytest.mark.usefixtures("restore_gc")
def test_gc_freezes_what_start_up_made_and_collects_young_objects_later() -> None:
    _, middle, old = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 1000  # this process's modules, classes, functions


def test_cycles_are_still_collected() -> None:
    """A cycle made after the freeze is freed by the raised young threshold, not kept."""
    assert (
        _run(
            "import weakref\n"
            "from cachecluster.common.server_process import YOUNG_THRESHOLD, tune_gc\n"
            "tune_gc()\n"
            "class Node: pass\n"
            "a, b = Node(), Node(); a.other, b.other = b, a\n"
            "gone = weakref.ref(a); del a, b\n"
            "junk = [[] for _ in range(YOUNG_THRESHOLD * 2)]\n"
            "print(gone() is None)\n"
        )
        == "True"
    )


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    """In a process started with a low soft limit (as many systems start them: 1,024)."""
    assert (
        _run(
            "import resource\n"
            "from cachecluster.common.server_process import prepare_server_process\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
            "prepare_server_process()\n"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard))\n"
        )
        == "True"
    )
