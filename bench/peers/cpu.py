"""The CPU time a figure cost: the S3 server's, and the rest of what the suite runs.

Read from ``/proc`` before and after each figure, over the suite's own
process tree: the S3 server (its process and children) on one side; on the
other the suite's process (the reader, and the peers that run in it: boto3,
fsspec) with every other process it started (cachecluster's master, workers
and mount, rclone, s3fs-fuse). On this 2-core machine a cold read is CPU-bound:
these seconds show who spent them (a process that exits within a figure is
not counted; none does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds (user + system) spent between two snapshots."""

    s3: float
    """By the S3 server."""
    rest: float
    """By the suite's process and every other process it started."""


def _process_table() -> dict[int, tuple[int, float]]:
    """Every process: its parent and the CPU seconds it used so far."""
    table: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                raw = stat.read()
        except OSError:  # gone meanwhile
            continue
        fields = raw.rsplit(b")", 1)[1].split()  # after the command, which may hold spaces
        table[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return table


def _descendants(root: int, table: dict[int, tuple[int, float]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class CpuMeter:
    """Snapshots of the CPU time of this process's tree, split into S3 server and the rest."""

    def __init__(self, s3_pid: int = 0) -> None:
        self.s3_pid = s3_pid

    def snapshot(self) -> dict[int, tuple[bool, float]]:
        """Per process of the tree: whether it is the S3 server's, and its CPU seconds."""
        table = _process_table()
        s3 = _descendants(self.s3_pid, table) if self.s3_pid in table else set()
        return {pid: (pid in s3, table[pid][1]) for pid in _descendants(os.getpid(), table)}

    @staticmethod
    def spent(
        before: dict[int, tuple[bool, float]], after: dict[int, tuple[bool, float]]
    ) -> CpuSplit:
        """The CPU seconds used between ``before`` and ``after`` (processes new since: all)."""
        s3 = rest = 0.0
        for pid, (is_s3, seconds) in after.items():
            used = max(0.0, seconds - before.get(pid, (is_s3, 0.0))[1])
            if is_s3:
                s3 += used
            else:
                rest += used
        return CpuSplit(s3, rest)
