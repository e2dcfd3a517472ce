"""A warm workload chosen without its cold one still reads warm: the suite warms up untimed.

The system here is a recording stand-in for a cache (a bench harness test, not a
product one): it only notes which objects were read in which order.
"""

from __future__ import annotations

import argparse

from bench.peers.base import RangeReader, System, UfsEnv
from bench.peers.data import SMALL_SIZE, Layout, expected
from bench.peers.suite import SystemRun
from bench.peers.workloads import SAMPLE_FILES

LAYOUT = Layout(big_size=1 << 20, small_files=4, model_size=1 << 20)


class Recorder(System):
    """Serves the small files' bytes (the warm pass checks them), only the length of the
    others; records each whole read."""

    name = "recorder"
    label = "records its reads"
    cold_how = "forgets nothing"

    def __init__(self) -> None:
        self.reads: list[str] = []

    def start(self, env: UfsEnv) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def reset_cold(self) -> None:
        """Nothing to empty."""

    def fresh(self) -> None:
        """Nothing to reopen."""

    def read_whole(self, key: str, buffer: memoryview) -> int:
        """Record ``key``; the object's size."""
        self.reads.append(key)
        if key == LAYOUT.big_key:
            return LAYOUT.big_size
        shard = dict(LAYOUT.model_keys()).get(key)
        if shard is not None:
            return shard
        buffer[:SMALL_SIZE] = expected(LAYOUT.seed, key, SMALL_SIZE, 0, SMALL_SIZE)
        return SMALL_SIZE

    def open_reader(self, key: str) -> RangeReader:
        """Not used here."""
        raise AssertionError("no random reads in these tests")

    def list_tree(self, prefix: str) -> int:
        """Not used here."""
        raise AssertionError("no listing in these tests")

    def stat(self, key: str) -> int:
        """Not used here."""
        raise AssertionError("no stat in these tests")


class NoCache(Recorder):
    """A system with no warm sequential read."""

    skips = {"seq_warm": "no cache"}


def one_round(system: System, *workloads: str) -> SystemRun:
    """One round of ``workloads`` (no page cache drop: not root in every test run)."""
    args = argparse.Namespace(
        workloads=list(workloads), timeout=30.0, drop_caches=False, random_reads=2,
        pass_seconds=5.0, runs=1,
    )  # fmt: skip
    run = SystemRun(system, LAYOUT, args)
    run.round(0)
    return run


def test_a_warm_read_chosen_alone_is_preceded_by_its_cold_read_untimed() -> None:
    system = Recorder()
    run = one_round(system, "seq_warm", "model_load")
    model = [key for key, _ in LAYOUT.model_keys()]
    assert system.reads == [*model, *model, LAYOUT.big_key, LAYOUT.big_key]
    cells = run.record["workloads"]
    assert list(cells) == ["seq_warm", "model_load"]  # the warm-ups are not figures
    assert len(cells["seq_warm"]["values"]) == len(cells["model_load"]["values"]) == 1


def test_small_files_warm_alone_reads_them_cold_first_and_cold_rows_are_not_repeated() -> None:
    system = Recorder()
    one_round(system, "small_warm")
    files = len(LAYOUT.small_keys())
    assert sorted(system.reads[:files]) == LAYOUT.small_keys()  # the untimed cold pass first
    checked = min(SAMPLE_FILES, files)  # the first warm pass reads a sample again, checked
    assert len(system.reads) == files + files + checked
    assert set(system.reads[files:]) == set(LAYOUT.small_keys())  # then the warm pass
    chosen = Recorder()
    one_round(chosen, "seq_cold", "seq_warm")
    assert chosen.reads == [LAYOUT.big_key] * 2  # the cold row is the warm-up


def test_no_warm_up_when_the_warm_rows_are_not_run_or_are_skipped() -> None:
    only_cold = Recorder()
    one_round(only_cold, "model_cold")
    assert only_cold.reads == [key for key, _ in LAYOUT.model_keys()]
    no_cache = NoCache()
    one_round(no_cache, "seq_warm")
    assert no_cache.reads == []
