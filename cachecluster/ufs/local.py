"""The local filesystem as a UFS: ``local:///abs/dir`` (also ``file:///abs/dir``).

Useful for datasets on a host path or an NFS/CPFS mount. A file's version is
``"<size>-<mtime_ns>"``. Reads use ``os.preadv`` straight into the caller's
buffer in a worker thread; the version is checked with ``fstat`` on the opened
descriptor, so the check and the read concern the same inode. Symbolic links
are followed when stat-ing and reading; a recursive listing does not descend
into linked directories (no cycles).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import stat as stat_mod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from cachecluster.common.errors import (
    CacheClusterError,
    ConfigError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    UfsError,
    VersionChanged,
)
from cachecluster.common.paths import join_path, normalize_path
from cachecluster.ufs.base import FileStatus, UfsBackend
from cachecluster.ufs.threads import BlockingCalls, BufferLease, forget_locals, writable_bytes

_T = TypeVar("_T")

LOCAL_THREADS = 16  # concurrent blocking filesystem calls per backend


def file_version(st: os.stat_result) -> str:
    """The version string of a local file: ``"<size>-<mtime_ns>"``."""
    return f"{st.st_size}-{st.st_mtime_ns}"


class LocalBackend(UfsBackend):
    """A directory on this host served as a UFS."""

    schemes: ClassVar[tuple[str, ...]] = ("local", "file")

    def __init__(self, uri: str, options: Mapping[str, str] | None = None) -> None:
        from cachecluster.ufs.registry import split_uri

        super().__init__(uri, options)
        location = split_uri(uri)
        if location.scheme not in self.schemes:
            raise ConfigError("uri", f"{uri!r} is not a local:// or file:// URI")
        for key in self.options:
            if key.startswith(("fs.local.", "fs.file.")):
                raise ConfigError(key, "unknown option for a local UFS (it takes none)")
        self.root = location.root
        self._display_root = f"{location.scheme}://{self.root}"
        self._calls = BlockingCalls(
            LOCAL_THREADS, "ufs-local", f"{self._display_root}: the UFS backend is closed"
        )

    # -- helpers ---------------------------------------------------------------

    def _display(self, rel: str) -> str:
        """The URI of ``rel`` as users wrote it, for messages."""
        return f"{self._display_root.rstrip('/')}/{rel}" if rel else self._display_root

    def _abs(self, rel: str) -> str:
        return join_path(self.root, rel)

    def _map_os_error(self, exc: OSError, rel: str) -> CacheClusterError:
        where = self._display(rel)
        if isinstance(exc, FileNotFoundError):
            return NotFound(f"no such file or directory: {where}")
        if isinstance(exc, NotADirectoryError):
            return NotFound(f"not a directory: {where}")
        if isinstance(exc, IsADirectoryError):
            return NotFound(f"is a directory, not a file: {where}")
        if isinstance(exc, PermissionError):
            return PermissionDenied(f"permission denied: {where}")
        if exc.errno == errno.ELOOP:
            return NotFound(f"too many levels of symbolic links: {where}")
        return UfsError(f"cannot access {where}: {exc.strerror or exc}")

    async def _run(self, rel: str, func: Callable[..., _T], *args: Any) -> _T:
        try:
            return await self._calls.call(func, *args)
        except OSError as exc:
            forget_locals(exc)
            raise self._map_os_error(exc, rel) from exc

    def _status(self, rel: str, st: os.stat_result) -> FileStatus:
        if stat_mod.S_ISDIR(st.st_mode):
            return FileStatus(path=rel, size=0, version="", mtime=st.st_mtime, is_dir=True)
        return FileStatus(
            path=rel, size=st.st_size, version=file_version(st), mtime=st.st_mtime, is_dir=False
        )

    # -- UfsBackend ------------------------------------------------------------

    async def stat(self, path: str) -> FileStatus:
        """Status of a file or directory under the root (symbolic links followed)."""
        rel = normalize_path(path)
        st = await self._run(rel, os.stat, self._abs(rel))
        return self._status(rel, st)

    async def list(self, path: str = "", *, recursive: bool = False) -> list[FileStatus]:
        """Entries of directory ``path``, sorted by path; only files when ``recursive``."""
        rel = normalize_path(path)
        if recursive:
            entries = await self._run(rel, self._walk_files, rel)
        else:
            entries = await self._run(rel, self._scan_dir, rel)
        entries.sort(key=lambda status: status.path)
        return entries

    def _child(self, parent_rel: str, name: str) -> str:
        return f"{parent_rel}/{name}" if parent_rel else name

    def _scan_dir(self, rel: str) -> builtins.list[FileStatus]:
        entries: builtins.list[FileStatus] = []
        with os.scandir(self._abs(rel)) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError:
                    continue  # a dangling link or an entry removed meanwhile
                if stat_mod.S_ISDIR(st.st_mode) or stat_mod.S_ISREG(st.st_mode):
                    entries.append(self._status(self._child(rel, entry.name), st))
        return entries

    def _walk_files(self, rel: str) -> builtins.list[FileStatus]:
        top = self._abs(rel)
        if not stat_mod.S_ISDIR(os.stat(top).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", top)
        files: builtins.list[FileStatus] = []
        pending = [rel]
        while pending:
            current = pending.pop()
            try:
                it = os.scandir(self._abs(current))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            with it:
                for entry in it:
                    child = self._child(current, entry.name)
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(child)
                            continue
                        st = entry.stat(follow_symlinks=True)
                    except OSError:
                        continue
                    if stat_mod.S_ISREG(st.st_mode):
                        files.append(self._status(child, st))
        return files

    async def read_into(
        self, path: str, offset: int, buf: memoryview, *, version: str | None = None
    ) -> int:
        """Fill ``buf`` from ``offset`` with ``os.preadv`` in a worker thread."""
        rel = normalize_path(path)
        if offset < 0:
            raise InvalidArgument(f"negative offset {offset} for {self._display(rel)}")
        lease = BufferLease(writable_bytes(buf))
        del buf  # from here on only the lease holds the caller's buffer
        return await self._run(rel, self._read_blocking, rel, offset, lease, version)

    def _read_blocking(self, rel: str, offset: int, view: memoryview, version: str | None) -> int:
        fd = os.open(self._abs(rel), os.O_RDONLY | os.O_CLOEXEC)
        try:
            before = os.fstat(fd)
            if stat_mod.S_ISDIR(before.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", self._abs(rel))
            if version is not None and file_version(before) != version:
                raise VersionChanged(
                    f"{self._display(rel)} changed: version {file_version(before)}, "
                    f"expected {version}"
                )
            total = 0
            length = len(view)
            while total < length:
                n = os.preadv(fd, [view[total:]], offset + total)
                if n == 0:
                    break  # end of file
                total += n
            if version is not None:
                after = os.fstat(fd)
                if file_version(after) != version:
                    raise VersionChanged(
                        f"{self._display(rel)} changed while it was read: "
                        f"version {file_version(after)}, expected {version}"
                    )
            return total
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def close(self) -> None:
        """Stop the backend's threads (after running calls finish). Safe to call twice."""
        await self._calls.close()
