"""Where a cache really lives: RAM (tmpfs) or a disk, as ``df`` sees the folder.

``python -m bench --peer-cache disk|tmpfs`` claims a medium for the peers'
caches; :func:`require` checks that claim against the file system holding the
folder (``df --output=source,fstype,target``), so the report never says
"disk" for a folder that is in RAM, or the other way round.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

RAM_FSTYPES = frozenset({"tmpfs", "ramfs"})
"""File systems whose files live in memory; anything else counts as a disk."""

Kind = Literal["tmpfs", "disk"]


class WrongMedium(Exception):
    """A folder is not on the medium it was meant to be on (the message is one line)."""


@dataclass(frozen=True)
class Medium:
    """The file system holding a folder."""

    path: str
    source: str
    """What is mounted (``/dev/vda``, ``tmpfs``, ``overlay``)."""
    fstype: str
    mount_point: str

    @property
    def kind(self) -> Kind:
        """``tmpfs`` for a file system in RAM, else ``disk``."""
        return "tmpfs" if self.fstype in RAM_FSTYPES else "disk"

    def describe(self) -> str:
        """``disk (/dev/vda, ext4)`` or ``tmpfs (/dev/shm)``, for the report."""
        if self.kind == "tmpfs":
            return f"tmpfs ({self.mount_point})"
        return f"disk ({self.source}, {self.fstype})"

    def as_json(self) -> dict[str, Any]:
        """The fields, the kind and the description."""
        return {**asdict(self), "kind": self.kind, "describe": self.describe()}


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a default folder may not be made yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def medium_of(path: Path) -> Medium:
    """The file system holding ``path`` (or its nearest existing ancestor), from ``df``."""
    where = _existing(path)
    done = subprocess.run(
        ["df", "--output=source,fstype,target", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) < 2:
        reason = " ".join(done.stderr.split()) or "no output"
        raise WrongMedium(f"df {where}: {reason}")
    source, fstype, mount_point = lines[1].split(maxsplit=2)
    return Medium(str(path), source, fstype, mount_point)


def require(path: Path, kind: Kind, what: str) -> Medium:
    """The medium of ``path``; :class:`WrongMedium` naming ``what`` when it is not ``kind``."""
    medium = medium_of(path)
    if medium.kind != kind:
        raise WrongMedium(f"{what}: {path} is on {medium.describe()}, not {kind}")
    return medium
