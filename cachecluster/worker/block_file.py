"""The on-disk form of one cached block, and the lease a reader holds on it.

A block file is a fixed :data:`DATA_OFFSET`-byte header followed by the raw
block data, so the data server can ``sendfile(fd, DATA_OFFSET, length)``
straight from the file, and a reader can ``mmap`` the data (the offset is
page aligned). On disks with 4 KiB allocation units the padded header costs
nothing that a 48-byte header would not.

Header (little endian, then zero padding up to ``DATA_OFFSET``)::

    magic        8s   b"CCBLK\\r\\n\\x1a" (catches text-mode mangling, like PNG's)
    version      u16  FORMAT_VERSION
    flags        u16  0
    data_offset  u32  DATA_OFFSET
    data_length  u64  bytes of block data after the header
    checksum     u64  xxh3_64 of the data
    block_id     16s  the block id, raw (the file name must match it)
    header_sum   u64  xxh3_64 of the 48 bytes above

Files are written to a temporary name in the same directory and renamed into
place (``os.replace``), so a reader or a rescan never sees half a block under
a block's name. No fsync: after a crash a torn file fails its length or
checksum check and is dropped, then fetched again.

Everything here is blocking file I/O; the store runs it in its thread pool.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import itertools
import os
import shutil
import struct
import threading
import types
import warnings
from typing import Self

import xxhash

from cachecluster.common.errors import CorruptBlock
from cachecluster.worker.tiers import Medium

MAGIC = b"CCBLK\r\n\x1a"
FORMAT_VERSION = 1
DATA_OFFSET = 4096
"""Where block data starts in a block file: one page, so the data is page aligned."""

BLOCK_SUFFIX = ".blk"
TEMP_MARKER = ".tmp-"

_FIELDS = struct.Struct("<8sHHIQQ16s")
_HEADER_SUM = struct.Struct("<Q")
HEADER_USED_BYTES = _FIELDS.size + _HEADER_SUM.size
_PADDING = bytes(DATA_OFFSET - HEADER_USED_BYTES)
_temp_counter = itertools.count()
_scratch = threading.local()


@dataclasses.dataclass(frozen=True, slots=True)
class BlockHeader:
    """The decoded header of a block file."""

    block_id: str
    data_length: int
    checksum: int
    format_version: int = FORMAT_VERSION

    @property
    def file_size(self) -> int:
        """The size the whole file must have."""
        return DATA_OFFSET + self.data_length


def block_file_size(data_length: int) -> int:
    """Bytes a block of ``data_length`` bytes occupies as a file (what quotas count)."""
    return DATA_OFFSET + data_length


def data_checksum(data: bytes | bytearray | memoryview) -> int:
    """The xxh3_64 checksum stored in a block header."""
    return int(xxhash.xxh3_64_intdigest(data))


def encode_header(block_id: str, data_length: int, checksum: int) -> bytes:
    """The full ``DATA_OFFSET``-byte header for a block."""
    fields = _FIELDS.pack(
        MAGIC, FORMAT_VERSION, 0, DATA_OFFSET, data_length, checksum, bytes.fromhex(block_id)
    )
    return fields + _HEADER_SUM.pack(xxhash.xxh3_64_intdigest(fields)) + _PADDING


def decode_header(raw: bytes, path: str) -> BlockHeader:
    """Parse and check the first ``HEADER_USED_BYTES`` of a block file.

    Raises :class:`CorruptBlock` naming ``path`` for a short read, a wrong
    magic, an unknown version or a header whose own checksum fails.
    """
    if len(raw) < HEADER_USED_BYTES:
        raise CorruptBlock(f"block file {path}: header is {len(raw)} bytes, truncated")
    fields = raw[: _FIELDS.size]
    (stored_sum,) = _HEADER_SUM.unpack_from(raw, _FIELDS.size)
    magic, version, _flags, data_offset, length, checksum, raw_id = _FIELDS.unpack(fields)
    if magic != MAGIC:
        raise CorruptBlock(f"block file {path}: not a block file (bad magic)")
    if xxhash.xxh3_64_intdigest(fields) != stored_sum:
        raise CorruptBlock(f"block file {path}: header checksum mismatch")
    if version != FORMAT_VERSION or data_offset != DATA_OFFSET:
        raise CorruptBlock(
            f"block file {path}: format version {version} at offset {data_offset} "
            f"is not supported (expected {FORMAT_VERSION} at {DATA_OFFSET})"
        )
    return BlockHeader(raw_id.hex(), length, checksum, version)


def block_file_name(block_id: str) -> str:
    """``<id>.blk``."""
    return block_id + BLOCK_SUFFIX


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file left by an unfinished write."""
    return TEMP_MARKER in name


def write_block_file(path: str, block_id: str, data: bytes | bytearray | memoryview) -> int:
    """Write a block atomically (temp file in the same directory, then rename).

    Returns the file size. The temp file is removed if anything fails.
    """
    view = memoryview(data).cast("B")
    header = encode_header(block_id, len(view), data_checksum(view))
    temp = f"{path}{TEMP_MARKER}{os.getpid()}-{next(_temp_counter)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            _write_all(fd, [memoryview(header), view])
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        remove_file(temp)
        raise
    return DATA_OFFSET + len(view)


def _write_all(fd: int, parts: list[memoryview]) -> None:
    while parts:
        written = os.writev(fd, parts)
        while parts and written >= len(parts[0]):
            written -= len(parts[0])
            parts.pop(0)
        if parts and written:
            parts[0] = parts[0][written:]


def read_header(fd: int, path: str) -> BlockHeader:
    """Read and check the header of an open block file."""
    return decode_header(os.pread(fd, HEADER_USED_BYTES, 0), path)


@dataclasses.dataclass(slots=True)
class OpenedBlock:
    """A block file opened for reading by :func:`open_block`; the caller owns ``fd``."""

    fd: int
    header: BlockHeader
    data: bytearray | None = None


def open_block(
    path: str,
    block_id: str,
    data_length: int,
    *,
    verify: bool,
    keep_data: bool = False,
    touch: bool = True,
) -> OpenedBlock:
    """Open a block file, check it is the block expected, optionally verify its data.

    With ``verify`` the data is read and its checksum recomputed; with
    ``keep_data`` the data read is returned as well (to copy it to another
    tier without reading it twice). ``touch`` sets the file's mtime to now, so
    a rescan after a restart rebuilds the recency order. Raises
    :class:`CorruptBlock` naming ``path`` for any mismatch and
    ``FileNotFoundError`` if the file is gone; the fd is closed on any error.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        header = read_header(fd, path)
        if header.block_id != block_id:
            raise CorruptBlock(f"block file {path}: holds block {header.block_id}")
        if header.data_length != data_length:
            raise CorruptBlock(
                f"block file {path}: holds {header.data_length} bytes, expected {data_length}"
            )
        data: bytearray | None = None
        if verify or keep_data:
            if keep_data:
                data = bytearray(data_length)
                view = memoryview(data)
            else:
                view = _scratch_buffer(data_length)
            got = _pread_into(fd, view, DATA_OFFSET)
            if got != data_length:
                raise CorruptBlock(
                    f"block file {path}: truncated, {got} of {data_length} data bytes"
                )
            if verify:
                computed = data_checksum(view)
                if computed != header.checksum:
                    raise CorruptBlock(
                        f"block file {path}: checksum mismatch "
                        f"(stored {header.checksum:016x}, computed {computed:016x})"
                    )
        if touch:
            os.utime(fd)
        return OpenedBlock(fd, header, data)
    except BaseException:
        os.close(fd)
        raise


def scan_block_file(path: str) -> tuple[BlockHeader, int, float]:
    """For a rescan: ``(header, file size, mtime)`` of a block file, data not read.

    Raises :class:`CorruptBlock` when the header is bad or the size does not
    match the header (a torn write).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stat = os.fstat(fd)
        header = read_header(fd, path)
    finally:
        os.close(fd)
    if stat.st_size != header.file_size:
        raise CorruptBlock(
            f"block file {path}: {stat.st_size} bytes on disk, header says {header.file_size}"
        )
    return header, stat.st_size, stat.st_mtime


def move_block_file(src: str, dst: str) -> None:
    """Move a block file to another tier: a rename on one filesystem, else copy and delete.

    The copy goes through a temp name and ``os.replace`` like every write. An
    open fd on ``src`` stays readable either way.
    """
    try:
        os.rename(src, dst)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    temp = f"{dst}{TEMP_MARKER}{os.getpid()}-{next(_temp_counter)}"
    try:
        shutil.copyfile(src, temp)
        os.replace(temp, dst)
    except BaseException:
        remove_file(temp)
        raise
    remove_file(src)


def remove_file(path: str) -> bool:
    """Unlink ``path``; ``False`` if it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _scratch_buffer(size: int) -> memoryview:
    """A per-thread reusable buffer (fresh pages are slow to touch on this VM)."""
    buffer: bytearray | None = getattr(_scratch, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(size)
        _scratch.buffer = buffer
    return memoryview(buffer)[:size]


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset``; fewer bytes only at end of file."""
    done = 0
    total = len(view)
    while done < total:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            break
        done += got
    return done


class BlockLease:
    """A reader's hold on one block's bytes: an open file, or a buffer in memory.

    A file lease keeps an fd on the block file, so its bytes stay readable
    even if the block is evicted, demoted or promoted meanwhile (the file is
    renamed or unlinked, never rewritten in place). ``offset`` is where the
    data starts in the file, so the data server sends
    ``(fileno(), offset, length)`` with ``sendfile``. A memory lease (a block
    that no tier could hold) has ``fd`` ``None``, ``medium`` ``None`` and its
    bytes in :attr:`buffer`.

    :meth:`readinto` and :meth:`read` are positional (``pread``): thread-safe
    and independent of each other. Close the lease when done (it is a context
    manager, sync and async); a lease that is garbage collected open closes
    its fd with a ``ResourceWarning``.
    """

    __slots__ = ("_buffer", "_fd", "block_id", "length", "medium", "offset")

    def __init__(
        self,
        block_id: str,
        *,
        length: int,
        medium: Medium | None,
        fd: int | None = None,
        offset: int = DATA_OFFSET,
        buffer: memoryview | None = None,
    ) -> None:
        if (fd is None) == (buffer is None):
            raise ValueError("a BlockLease holds exactly one of fd and buffer")
        self.block_id = block_id
        self.length = length
        self.medium = medium
        self._fd = fd
        self._buffer = buffer
        self.offset = offset if fd is not None else 0

    @classmethod
    def in_memory(cls, block_id: str, data: bytes | bytearray | memoryview) -> BlockLease:
        """A lease over bytes held in memory (no tier holds the block)."""
        view = memoryview(data).cast("B").toreadonly()
        return cls(block_id, length=len(view), medium=None, buffer=view)

    @property
    def fd(self) -> int | None:
        """The open block file, or ``None`` for a memory lease."""
        return self._fd

    @property
    def buffer(self) -> memoryview | None:
        """The bytes of a memory lease (read-only), or ``None`` for a file lease."""
        return self._buffer

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd is None and self._buffer is None

    def fileno(self) -> int:
        """The fd for ``sendfile``; ``io.UnsupportedOperation`` for a memory lease."""
        if self._fd is None:
            if self._buffer is None:
                raise ValueError("I/O on a closed BlockLease")
            raise io.UnsupportedOperation("memory lease has no fd; use .buffer")
        return self._fd

    def readinto(self, buf: memoryview | bytearray, position: int = 0) -> int:
        """Copy data from ``position`` into ``buf``; return the byte count.

        Short only when the block ends before ``buf`` does.
        """
        if position < 0:
            raise ValueError(f"position {position} is negative")
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        want = max(0, min(len(view), self.length - position))
        if self._buffer is not None:
            view[:want] = self._buffer[position : position + want]
            return want
        if self._fd is None:
            raise ValueError("I/O on a closed BlockLease")
        return _pread_into(self._fd, view[:want], self.offset + position)

    def read(self, position: int = 0, size: int = -1) -> bytes:
        """The data from ``position``: ``size`` bytes, or to the end when negative."""
        if position < 0:
            raise ValueError(f"position {position} is negative")
        end = self.length if size < 0 else min(self.length, position + size)
        if self._buffer is not None:
            return bytes(self._buffer[position:end])
        if self._fd is None:
            raise ValueError("I/O on a closed BlockLease")
        chunks: list[bytes] = []
        while position < end:
            chunk = os.pread(self._fd, end - position, self.offset + position)
            if not chunk:
                break
            chunks.append(chunk)
            position += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        """Release the fd or buffer; idempotent."""
        fd, self._fd, self._buffer = self._fd, None, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            warnings.warn(
                f"BlockLease for block {self.block_id} was not closed",
                ResourceWarning,
                stacklevel=1,
            )
            self.close()

    def __repr__(self) -> str:
        where = f"fd={self._fd}" if self._fd is not None else "memory"
        state = "closed" if self.closed else where
        return f"BlockLease({self.block_id}, {self.length} bytes, {self.medium}, {state})"
