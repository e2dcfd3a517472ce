"""The collector settings the master, worker and mount processes start with."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cachecluster.common.gc_tuning import YOUNG_THRESHOLD, tune_for_server


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
def test_freezes_what_start_up_made_and_collects_young_objects_later() -> None:
    _, middle, old = gc.get_threshold()
    tune_for_server()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 1000  # this process's modules, classes, functions


def test_cycles_are_still_collected() -> None:
    """A cycle made after the freeze is freed by the raised young threshold, not kept."""
    script = (
        "import gc, weakref\n"
        "from cachecluster.common.gc_tuning import YOUNG_THRESHOLD, tune_for_server\n"
        "tune_for_server()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "gone = weakref.ref(a); del a, b\n"
        "junk = [[] for _ in range(YOUNG_THRESHOLD * 2)]\n"
        "print(gone() is None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "True"
