"""Block identity: which bytes of which version of which UFS file a block holds.

A block is a fixed-size slice (default :data:`DEFAULT_BLOCK_SIZE`) of one
version of one UFS file. Its id is a hash of ``(mount id, path, version,
index)``, so a changed UFS object gets new block ids and a reader never mixes
bytes of two versions; the old blocks simply age out of the cache.

Ids are 32 lowercase hex characters (blake2b, 128 bits). They become file
names in the worker's tiers, so every id that comes from outside is checked
with :func:`check_block_id` before it touches a path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import struct

from cachecluster.common.errors import InvalidArgument

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
"""4 MiB: the default unit of caching and placement."""

BLOCK_ID_HEX_CHARS = 32

_BLOCK_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_ID_DOMAIN = b"cachecluster.block.v1"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


@dataclasses.dataclass(frozen=True, slots=True)
class BlockKey:
    """The four facts that name a block.

    ``mount_id`` identifies the dataset mount (so two datasets over the same
    bucket with different credentials never share blocks by accident),
    ``path`` is the file path relative to the mount root, ``version`` the
    ETag or ``"<size>-<mtime_ns>"`` of the file, ``index`` the block number
    (``offset // block_size``).
    """

    mount_id: str
    path: str
    version: str
    index: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise InvalidArgument(f"block index {self.index!r}: must be an integer >= 0")

    @property
    def id(self) -> str:
        """32 hex chars: blake2b-128 over a length-prefixed encoding of the fields.

        Each string is UTF-8 encoded and prefixed with its byte length, so
        ``("a/b", "c")`` and ``("a", "b/c")`` can never hash alike.
        """
        digest = hashlib.blake2b(digest_size=16, person=b"ccblock")
        digest.update(_ID_DOMAIN)
        for text in (self.mount_id, self.path, self.version):
            encoded = text.encode("utf-8", "surrogatepass")
            digest.update(_U32.pack(len(encoded)))
            digest.update(encoded)
        digest.update(_U64.pack(self.index))
        return digest.hexdigest()


def is_block_id(value: str) -> bool:
    """Whether ``value`` has the form of a block id (32 lowercase hex chars)."""
    return bool(_BLOCK_ID_RE.match(value))


def check_block_id(value: str) -> str:
    """Return ``value`` if it is a well-formed block id, else raise ``InvalidArgument``."""
    if not isinstance(value, str) or not _BLOCK_ID_RE.match(value):
        raise InvalidArgument(
            f"block id {value!r}: expected {BLOCK_ID_HEX_CHARS} lowercase hex chars"
        )
    return value


def block_count(file_size: int, block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """How many blocks a file of ``file_size`` bytes has (0 for an empty file)."""
    if block_size <= 0:
        raise InvalidArgument(f"block size {block_size}: must be > 0")
    return (file_size + block_size - 1) // block_size


def block_span(index: int, file_size: int, block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[int, int]:
    """``(offset, length)`` in the file of block ``index``; the last block may be short."""
    if index < 0 or index >= block_count(file_size, block_size):
        raise InvalidArgument(
            f"block index {index}: out of range for a {file_size}-byte file "
            f"with {block_size}-byte blocks"
        )
    offset = index * block_size
    return offset, min(block_size, file_size - offset)
