"""The one interface every compared system implements, and its POSIX (mount) form.

A system is set up on the bucket (:meth:`System.start`), read by the
workloads, and torn down (:meth:`System.stop`, safe to call twice and after a
failed start). :meth:`System.available` says, before anything starts, why it
cannot run here (None when it can).
"""

from __future__ import annotations

import abc
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from bench.peers.data import Layout


@dataclass(frozen=True)
class UfsEnv:
    """Where the shared objects live (a SeaweedFS S3 server) and a scratch folder."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    bucket: str
    workdir: Path
    """A folder on tmpfs for mount points, logs and cachecluster's MEM tiers (removed by
    the suite)."""
    peer_cache: Path
    """The folder the peers (fsspec, rclone, s3fs-fuse) keep their caches in: on the root
    disk or on tmpfs, as ``--peer-cache`` says (removed by the suite)."""
    layout: Layout | None = None
    """The objects the suite put in the bucket (names, sizes, seed)."""
    s3_pid: int = 0
    """The S3 server's process (its CPU time is counted apart: :mod:`bench.peers.cpu`)."""


class RangeReader(Protocol):
    """An open file of a system, read at offsets."""

    def read_at(self, offset: int, buffer: memoryview) -> int:
        """Read ``len(buffer)`` bytes (fewer at the end) at ``offset`` into ``buffer``."""

    def close(self) -> None:
        """Release the file."""


class System(abc.ABC):
    """One system under comparison."""

    name: ClassVar[str]
    """Short id used on the command line (``--systems``) and in the JSON."""
    label: ClassVar[str]
    """What the table calls it."""
    cold_how: ClassVar[str]
    """How :meth:`reset_cold` makes the next read cold (shown in the table)."""
    skips: ClassVar[Mapping[str, str]] = {}
    """Workloads this system does not run, each with the reason the table shows."""
    default_cache: ClassVar[str] = ""
    """Where the system puts its cache when its user does not say (shown in the report)."""

    def available(self) -> str | None:
        """None when the system can run here, else the reason it cannot."""
        return None

    def cache_parent(self, env: UfsEnv) -> Path | None:
        """The folder this system's cache goes in, None when it has no cache.

        By default the scratch folder (cachecluster's MEM tiers, on tmpfs); the peers
        override it with ``env.peer_cache``.
        """
        return env.workdir

    def default_cache_dir(self) -> Path | None:
        """Where :attr:`default_cache` is on this machine (None: there is no default)."""
        return None

    @abc.abstractmethod
    def start(self, env: UfsEnv) -> None:
        """Set up on the bucket (mount, client, cluster)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Tear down everything :meth:`start` made; safe after a failed start."""

    @abc.abstractmethod
    def reset_cold(self) -> None:
        """Empty the system's cache and start it afresh: the next read of anything is cold."""

    @abc.abstractmethod
    def fresh(self) -> None:
        """A fresh mount or client (cache kept): a new process opening the data."""

    @abc.abstractmethod
    def read_whole(self, key: str, buffer: memoryview) -> int:
        """Read object ``key`` start to end (into ``buffer``, over and over); the byte count."""

    @abc.abstractmethod
    def open_reader(self, key: str) -> RangeReader:
        """Open ``key`` for reads at offsets."""

    @abc.abstractmethod
    def list_tree(self, prefix: str) -> int:
        """List everything under ``prefix`` recursively with sizes; the number of files."""

    @abc.abstractmethod
    def stat(self, key: str) -> int:
        """The size of ``key`` as the system reports it."""


def read_file_into(path: Path, buffer: memoryview) -> int:
    """Read the file at ``path`` whole into ``buffer`` (reused); the byte count."""
    total = 0
    with open(path, "rb", buffering=0) as file:
        while got := file.readinto(buffer):
            total += got
    return total


class PosixReader:
    """A file of a mount read with ``os.preadv``."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)

    def read_at(self, offset: int, buffer: memoryview) -> int:
        """Read at ``offset`` until ``buffer`` is full or the file ends."""
        done = 0
        while done < len(buffer):
            got = os.preadv(self._fd, [buffer[done:]], offset + done)
            if got == 0:
                break
            done += got
        return done

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self._fd)


def count_ls_lr(output: str) -> int:
    """Files (lines starting with ``-``) in the output of ``ls -lR``."""
    return sum(1 for line in output.splitlines() if line.startswith("-"))


class MountSystem(System):
    """A system read through a FUSE mount at :attr:`root` with plain POSIX calls."""

    root: Path

    def read_whole(self, key: str, buffer: memoryview) -> int:
        """Read the mounted file whole."""
        return read_file_into(self.root / key, buffer)

    def open_reader(self, key: str) -> RangeReader:
        """Open the mounted file."""
        return PosixReader(self.root / key)

    def list_tree(self, prefix: str) -> int:
        """``ls -lR`` of the mounted folder."""
        done = subprocess.run(
            ["ls", "-lR", str(self.root / prefix)], capture_output=True, text=True, check=True
        )
        return count_ls_lr(done.stdout)

    def stat(self, key: str) -> int:
        """``os.stat`` of the mounted file."""
        return os.stat(self.root / key).st_size


def command_line(parts: Sequence[str]) -> str:
    """A command as one line for the report."""
    return " ".join(parts)
