"""What the kernel has mounted, read from ``/proc/self/mountinfo``.

The plugin decides from this table whether a target is published, what it is
bound from and whether it is read-only, and whether a FUSE path really lies on
a FUSE mount (an empty host folder where the FUSE pod has not mounted yet must
never be bound into a pod).
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")

STALE_ERRNOS = frozenset({errno.ENOTCONN, errno.ECONNABORTED})
"""What a path on a FUSE mount whose process died answers ("Transport endpoint is not
connected"; "Software caused connection abort" right after the death)."""

_ESCAPE_RE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (``\\040`` for a space) decoded."""
    return _ESCAPE_RE.sub(lambda match: chr(int(match.group(1), 8)), field)


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of mountinfo: a mount, where it sits and what it shows."""

    device: str
    """``major:minor`` of the file system."""
    root: str
    """The folder of the file system this mount shows (``/ns/ds`` for a bind of one)."""
    mount_point: str
    options: frozenset[str]
    """Per-mount options (``ro`` or ``rw``, ``nosuid``...)."""
    fstype: str

    @property
    def read_only(self) -> bool:
        """Whether this mount refuses writes."""
        return "ro" in self.options

    @property
    def is_fuse(self) -> bool:
        """Whether the file system is a FUSE one (``fuse``, ``fuse.NAME``)."""
        return self.fstype == "fuse" or self.fstype.startswith("fuse.")


def parse_line(line: str) -> MountEntry:
    """One mountinfo line as a :class:`MountEntry` (``ValueError`` when it is not one)."""
    fields = line.split()
    separator = fields.index("-")  # optional fields end with a lone "-"
    if separator < 6 or len(fields) < separator + 2:
        raise ValueError(f"not a mountinfo line: {line!r}")
    return MountEntry(
        device=fields[2],
        root=_unescape(fields[3]),
        mount_point=_unescape(fields[4]),
        options=frozenset(fields[5].split(",")),
        fstype=fields[separator + 1],
    )


def read_mounts(path: Path = MOUNTINFO) -> list[MountEntry]:
    """Every mount of this process's mount namespace, in mount order."""
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        return [parse_line(line) for line in lines if line.strip()]


def mount_at(target: str | Path, mounts: list[MountEntry] | None = None) -> MountEntry | None:
    """The mount on top at ``target`` exactly, or None when nothing is mounted there."""
    wanted = os.path.abspath(target)
    found = None
    for entry in read_mounts() if mounts is None else mounts:
        if entry.mount_point == wanted:
            found = entry  # later lines are stacked on earlier ones
    return found


def mount_holding(path: str | Path, mounts: list[MountEntry] | None = None) -> MountEntry | None:
    """The mount that serves ``path``: the deepest mount point at or above it."""
    wanted = os.path.abspath(path)
    best: MountEntry | None = None
    for entry in read_mounts() if mounts is None else mounts:
        point = entry.mount_point
        inside = wanted == point or wanted.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = entry
    return best
