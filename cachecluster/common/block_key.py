"""Block identity: which bytes of which version of which UFS file a block holds.

A block is a fixed-size slice (default :data:`DEFAULT_BLOCK_SIZE`) of one
version of one UFS file. Its id is a hash of ``(mount id, path, version,
index)``, so a changed UFS object gets new block ids and a reader never mixes
bytes of two versions; the old blocks simply age out of the cache.

Ids are 32 lowercase hex characters (blake2b, 128 bits). They become file
names in the worker's tiers, so every id that comes from outside is checked
with :func:`check_block_id` before it touches a path.

Placement is by group, not by block: the ring places the key
:meth:`BlockKey.placement_key`, the same for the :func:`group_blocks`
consecutive blocks (:data:`PLACEMENT_GROUP_BYTES` worth) of one file version,
so a sequential reader draws a group from one worker, which can fetch it from
the UFS with one ranged GET instead of one request a block. Small files (one
block) are spread exactly as before: one group each. Every caller of the ring
(client, worker, master) places blocks with this one function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import struct

from cachecluster.common.errors import InvalidArgument

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
"""4 MiB: the default unit of caching."""

PLACEMENT_GROUP_BYTES = 64 * 1024 * 1024
"""Bytes of a file placed on one worker together: 16 blocks of 4 MiB."""

BLOCK_ID_HEX_CHARS = 32

_BLOCK_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_ID_DOMAIN = b"cachecluster.block.v1"
_GROUP_DOMAIN = b"cachecluster.group.v1"
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
        return _digest(_ID_DOMAIN, (self.mount_id, self.path, self.version), self.index).hex()

    def placement_key(self, block_size: int) -> bytes:
        """The ring key of this block: its file version and group (see the module doc).

        ``block_size`` is the cluster's; blocks ``n * G .. n * G + G - 1`` of
        one file version share it (``G`` = :func:`group_blocks`).
        """
        return _digest(
            _GROUP_DOMAIN,
            (self.mount_id, self.path, self.version),
            self.index // group_blocks(block_size),
        )


def _digest(domain: bytes, texts: tuple[str, str, str], number: int) -> bytes:
    """blake2b-128 over ``domain``, the length-prefixed ``texts`` and ``number``."""
    digest = hashlib.blake2b(digest_size=16, person=b"ccblock")
    digest.update(domain)
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(_U32.pack(len(encoded)))
        digest.update(encoded)
    digest.update(_U64.pack(number))
    return digest.digest()


def group_blocks(block_size: int) -> int:
    """Consecutive blocks of a file that share a placement: :data:`PLACEMENT_GROUP_BYTES` worth."""
    if block_size <= 0:
        raise InvalidArgument(f"block size {block_size}: must be > 0")
    return max(1, PLACEMENT_GROUP_BYTES // block_size)


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
