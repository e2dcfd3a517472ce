"""The one interface every under file system (UFS) backend implements.

A backend serves one mount: a URI such as ``s3://bucket/dir``, ``oss://bucket/dir``
or ``local:///abs/dir`` plus its options. Paths given to a backend are relative to
that root (``"a/b.bin"``), normalised by :func:`cachecluster.common.paths.normalize_path`.

Every call is idempotent and safe to retry. Blocking SDK calls run in the
backend's thread pool, never on the event loop.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

Filled = Callable[[int, int], None]
"""``filled(index, count)``: buffer ``index`` of a scatter read holds its ``count`` bytes now."""


@dataclasses.dataclass(frozen=True, slots=True)
class FileStatus:
    """What a UFS says about one file or directory.

    ``path`` is relative to the mount root, posix form, no leading slash
    (``""`` is the root). ``version`` identifies the content: the ETag for
    object stores, ``"<size>-<mtime_ns>"`` for local files; it changes whenever
    the bytes change. Directories have size 0 and version ``""``.
    """

    path: str
    size: int
    version: str
    mtime: float
    is_dir: bool = False

    @property
    def name(self) -> str:
        """The last component of ``path``."""
        return self.path.rsplit("/", 1)[-1]


class UfsBackend(abc.ABC):
    """A read interface to one UFS mount.

    Subclasses set ``schemes`` and register with
    :func:`cachecluster.ufs.registry.register`. Errors: a missing path raises
    :class:`cachecluster.common.errors.NotFound`; an object whose version is not
    the one asked for raises :class:`~cachecluster.common.errors.VersionChanged`;
    an unreachable or failing service raises
    :class:`~cachecluster.common.errors.UfsError` (or ``Unavailable``).
    """

    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, uri: str, options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.options: dict[str, str] = dict(options or {})

    @classmethod
    def warm_up(cls) -> None:
        """Load, ahead of the first backend, what creating one would load (SDK data).

        Called in a background thread at process start (see
        :func:`cachecluster.ufs.registry.preload`); blocking, no network. The
        default does nothing.
        """
        return None

    @abc.abstractmethod
    async def list(self, path: str = "", *, recursive: bool = False) -> list[FileStatus]:
        """Entries under directory ``path`` (all descendants when ``recursive``).

        Returned paths are relative to the mount root. Directories appear as
        entries with ``is_dir=True``; with ``recursive`` only files are listed.
        A missing directory raises ``NotFound``.
        """

    @abc.abstractmethod
    async def stat(self, path: str) -> FileStatus:
        """Status of one file or directory (``""`` is the root)."""

    @abc.abstractmethod
    async def read_into(
        self, path: str, offset: int, buf: memoryview, *, version: str | None = None
    ) -> int:
        """Fill ``buf`` with the bytes at ``offset``; return how many were read.

        The count is short only at end of file. With ``version``, raises
        ``VersionChanged`` if the object no longer has that version, so that a
        reader never mixes bytes of two versions. Large ranges may be fetched
        as parallel range requests straight into ``buf`` (no extra copy).
        """

    async def read_blocks_into(
        self,
        path: str,
        offset: int,
        buffers: Sequence[memoryview],
        *,
        version: str | None = None,
        filled: Filled | None = None,
    ) -> int:
        """A scatter read: fill ``buffers`` one after the other with the bytes from ``offset``.

        As :meth:`read_into` over the buffers laid end to end: returns the
        bytes read in all, short only at end of file (later buffers then hold
        fewer bytes or none), ``VersionChanged`` as there. For consecutive
        cache blocks of one file: an object store answers them with one
        request (see :mod:`cachecluster.ufs.object_store`); this default reads
        each buffer in turn.

        ``filled(index, count)``, when given, is called as soon as buffer
        ``index`` is full (possibly from another thread: it must be
        thread-safe), so that a caller can use the first buffers before the
        last ones arrive. The buffer the data ends in may be reported with its
        short count, or not: the return value tells in any case.
        """
        total = 0
        for index, buffer in enumerate(buffers):
            count = await self.read_into(path, offset + total, buffer, version=version)
            total += count
            if count < buffer.nbytes:
                break
            if filled is not None:
                filled(index, count)
        return total

    async def read(
        self, path: str, offset: int, length: int, *, version: str | None = None
    ) -> bytes:
        """Up to ``length`` bytes at ``offset`` (short only at end of file)."""
        buf = bytearray(length)
        n = await self.read_into(path, offset, memoryview(buf), version=version)
        # Slicing copies, so no view of ``buf`` has to be released first.
        return bytes(buf) if n == length else bytes(buf[:n])

    async def close(self) -> None:
        """Release connections and threads. Safe to call twice."""
        return None
