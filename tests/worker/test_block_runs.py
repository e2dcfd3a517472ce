"""Planning runs of consecutive blocks (one UFS request each) for LoadBlocks."""

from __future__ import annotations

import pytest

from cachecluster.common.block_key import BlockKey
from cachecluster.worker.block_runs import MAX_RUN_BYTES, max_run_blocks, plan_runs


def keys(path: str, *indices: int, version: str = "v1", mount: str = "m") -> list[BlockKey]:
    return [BlockKey(mount, path, version, index) for index in indices]


def shape(runs: list[list[BlockKey]]) -> list[tuple[str, str, list[int]]]:
    return [(run[0].path, run[0].version, [key.index for key in run]) for run in runs]


def test_consecutive_blocks_of_a_file_make_one_run_and_gaps_split_it() -> None:
    runs = plan_runs(keys("a", 0, 1, 2, 5, 6, 9), max_blocks=16)
    assert shape(runs) == [("a", "v1", [0, 1, 2]), ("a", "v1", [5, 6]), ("a", "v1", [9])]


def test_files_versions_and_mounts_never_share_a_run() -> None:
    mixed = [
        *keys("a", 0, 1),
        *keys("b", 2, 3),
        *keys("a", 2, version="v2"),
        *keys("a", 2, mount="other"),
    ]
    assert shape(plan_runs(mixed, max_blocks=16)) == [
        ("a", "v1", [0, 1]),
        ("b", "v1", [2, 3]),
        ("a", "v2", [2]),
        ("a", "v1", [2]),  # same path and version, other mount
    ]


def test_order_of_the_request_does_not_matter_within_a_file() -> None:
    shuffled = [*keys("a", 3, 0), *keys("b", 0), *keys("a", 2, 1)]
    assert shape(plan_runs(shuffled, max_blocks=16)) == [
        ("a", "v1", [0, 1, 2, 3]),
        ("b", "v1", [0]),
    ]


def test_runs_are_cut_at_the_length_limit_and_a_repeated_index() -> None:
    assert shape(plan_runs(keys("a", *range(7)), max_blocks=3)) == [
        ("a", "v1", [0, 1, 2]),
        ("a", "v1", [3, 4, 5]),
        ("a", "v1", [6]),
    ]
    assert shape(plan_runs(keys("a", 0, 1, 1, 2), max_blocks=8)) == [
        ("a", "v1", [0, 1]),
        ("a", "v1", [1, 2]),
    ]
    assert plan_runs([], max_blocks=4) == []
    with pytest.raises(ValueError, match="at least 1"):
        plan_runs(keys("a", 0), max_blocks=0)


def test_max_run_blocks_from_the_block_size() -> None:
    assert max_run_blocks(4 << 20) == MAX_RUN_BYTES // (4 << 20)
    assert max_run_blocks(MAX_RUN_BYTES * 2) == 1
    assert max_run_blocks(1 << 20, max_bytes=3 << 20) == 3
