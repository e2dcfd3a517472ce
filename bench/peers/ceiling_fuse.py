"""A reference for the mount's warm rows: the tmpfs copy served by the least pyfuse3 server.

Not a system anyone mounts: the objects as files on tmpfs (written as
:class:`bench.peers.ceiling.TmpfsCopy` writes them), passed through by
:mod:`bench.peers.minimal_fuse`, whose ``read`` is a slice of the file's
mapping, with the mount's ``read_ahead_kb`` raised as cachecluster's mount
raises its own (1 MiB requests). It pays what every pyfuse3 file system pays
(a request per 1 MiB or less from the kernel, the copy into the reply, the
kernel's copy into its page cache) and nothing else: no blocks, no cache
lookups, no network. A warm target for
cachecluster-fuse far above this figure asks for more than pyfuse3 gives on
this machine. "Fresh" is a new server process: the kernel's pages of the old
mount are gone with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.peers.base import UfsEnv
from bench.peers.ceiling import TmpfsCopy
from bench.peers.processes import fuse_missing, start_mount, stop_mount
from cachecluster.fuse.mount import raise_read_ahead

REPO = Path(__file__).resolve().parents[2]
"""The folder ``bench`` is in: the server runs as ``python -m bench.peers.minimal_fuse``."""


class Pyfuse3Minimal(TmpfsCopy):
    """The tmpfs copy of the objects behind a minimal pyfuse3 pass-through mount."""

    name = "pyfuse3-minimal"
    label = "reference: the tmpfs copy through the least pyfuse3 mount"

    def __init__(self) -> None:
        super().__init__()
        self._env: UfsEnv | None = None
        self._source = Path()
        self._process: subprocess.Popen[bytes] | None = None

    def available(self) -> str | None:
        """FUSE and pyfuse3 must be there."""
        try:
            import pyfuse3  # noqa: F401
        except ImportError:
            return "pyfuse3 is not installed (pip install pyfuse3)"
        return fuse_missing()

    def start(self, env: UfsEnv) -> None:
        """Write the objects under the scratch folder (tmpfs) and mount them."""
        super().start(env)
        self._env, self._source = env, self.root
        self.root = env.workdir / "pyfuse3-minimal-mnt"
        self._mount()

    def _mount(self) -> None:
        assert self._env is not None
        server = [sys.executable, "-m", "bench.peers.minimal_fuse"]
        command = [*server, str(self._source), str(self.root)]
        log = self._env.workdir / "pyfuse3-minimal.log"
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self._process = start_mount(command, self.root, log, {**os.environ, "PYTHONPATH": path})
        raise_read_ahead(self.root)  # as cachecluster's mount does after its INIT

    def stop(self) -> None:
        """Unmount, then remove the files."""
        if self._env is not None:
            stop_mount(self._process, self.root)
            self._process, self._env = None, None
        super().stop()

    def fresh(self) -> None:
        """A new server process on the same files."""
        assert self._env is not None
        stop_mount(self._process, self.root)
        self._mount()
