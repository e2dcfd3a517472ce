"""A reference for the warm rows: the objects as files on tmpfs, read in the bench's process.

Not a system anyone mounts: what a cache in RAM amounts to without any cache
system, measured in the same run (``os.preadv``/``readinto`` of a tmpfs file
in the reading thread). Every warm read ends in such a copy from RAM into the
reader's buffer, so a warm target far above this figure asks for more than
copying bytes from RAM gives on this machine. It is not a strict ceiling: a
cache's own reads of its tmpfs block files can come out a little faster or
slower in a run. The files are written at start from the seed (the same
bytes as the objects, :mod:`bench.peers.data`), so there is no cold read; the
rows that need one are not run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.peers.base import MountSystem, UfsEnv
from bench.peers.data import SMALL_SIZE, chunks

NO_COLD = "a reference, not a cache: the files are in RAM from the start, nothing is cold"


class TmpfsCopy(MountSystem):
    """The objects written to a tmpfs folder; read, listed and stat-ed with POSIX calls."""

    name = "tmpfs-copy"
    label = "reference: the objects as tmpfs files, read in-process"
    cold_how = "no cold read (a reference, not a cache)"
    skips = {"seq_cold": NO_COLD, "small_cold": NO_COLD, "model_cold": NO_COLD}

    def __init__(self) -> None:
        self.root = Path()
        self._made: Path | None = None

    def start(self, env: UfsEnv) -> None:
        """Write every object of the run's layout under the scratch folder (tmpfs)."""
        layout = env.layout
        if layout is None:
            raise RuntimeError("the suite gave no layout: nothing to write")
        self._made = self.root = env.workdir / "tmpfs-copy"
        objects = [(layout.big_key, layout.big_size), *layout.model_keys()]
        objects += [(key, SMALL_SIZE) for key in layout.small_keys()]
        for key, size in objects:
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as file:
                for data in chunks(layout.seed, key, size):
                    file.write(data)

    def stop(self) -> None:
        """Remove the files."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            self._made = None

    def reset_cold(self) -> None:
        """Nothing to empty (the cold rows are not run)."""

    def fresh(self) -> None:
        """Nothing to reopen: every read opens its file."""

    def stat(self, key: str) -> int:
        """``os.stat`` of the file."""
        return os.stat(self.root / key).st_size
