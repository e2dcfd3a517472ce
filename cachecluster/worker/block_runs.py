"""Runs of consecutive blocks: what one UFS request can fetch for a LoadBlocks call.

A DataLoad sends a worker the blocks it owns, file by file in index order.
Where several of them follow each other in one file (same mount, path and
version, indices n, n+1, ...), the worker fetches them with one scatter read
(one ranged GET on an object store) instead of one request per block: a
request costs a fixed millisecond or two of SDK and server time however
many bytes it carries.
"""

from __future__ import annotations

from collections.abc import Iterable

from cachecluster.common.block_key import BlockKey

MAX_RUN_BYTES = 64 << 20
"""Bytes one run fetches at most (so that runs of a big file still load in parallel)."""


def max_run_blocks(block_size: int, max_bytes: int = MAX_RUN_BYTES) -> int:
    """Blocks in one run at most: ``max_bytes`` worth, at least one."""
    return max(1, max_bytes // max(1, block_size))


def plan_runs(keys: Iterable[BlockKey], max_blocks: int) -> list[list[BlockKey]]:
    """Split ``keys`` into runs of consecutive blocks of one file, at most ``max_blocks`` each.

    Keys of one file (mount, path, version) are sorted by index; a gap, a
    repeated index or the length limit starts a new run. Runs come in the
    order their files first appear, each file's runs by index.
    """
    if max_blocks < 1:
        raise ValueError(f"max_blocks must be at least 1, not {max_blocks}")
    files: dict[tuple[str, str, str], list[BlockKey]] = {}
    for key in keys:
        files.setdefault((key.mount_id, key.path, key.version), []).append(key)
    runs: list[list[BlockKey]] = []
    for blocks in files.values():
        run: list[BlockKey] = []
        for key in sorted(blocks, key=lambda k: k.index):
            if run and (key.index != run[-1].index + 1 or len(run) >= max_blocks):
                runs.append(run)
                run = []
            run.append(key)
        runs.append(run)
    return runs
