"""The data protocol's wire format: frames between client and worker.

A frame is a fixed 8-byte prefix (``>II``: header length, payload length), a
msgpack header (always a map) and ``payload length`` raw bytes. Only responses
carry a payload; it holds the block bytes and goes through ``sendfile`` on the
worker and ``recv_into`` a caller's buffer on the client, never through msgpack.

Requests::

    {"op": "read", "id": 7, "block": "<32 hex>",
     "key": {"mount": str, "path": str, "version": str, "index": int},
     "off": int, "len": int, "cap": bytes | None, "ahead": int}
    {"op": "ping", "id": 8}            # "id" optional, 0 when absent
    {"op": "open", "id": 9, "block": "<32 hex>", "key": {...}, "cap": bytes | None,
     "cached": bool, "ahead": int}     # "cached", "ahead" optional: false, 0 when absent

Responses, written in request order::

    {"id": 7, "ok": True, "len": n}    + n payload bytes
    {"id": 7, "ok": False, "kind": "<ErrorKind value>", "msg": "..."}
    {"id": 9, "ok": True, "len": 0, "fd": 1, "off": o, "size": n, "mem": bool}
    {"id": 9, "ok": True, "len": 0, "fd": 0, "size": n}
    {"id": 9, "ok": True, "len": 0, "fd": 0, "size": 0, "miss": True}

An ``open`` (short-circuit read, only over the worker's Unix socket) asks for
the block file itself: the worker checks it exactly as for a ``read``, then
passes a read-only descriptor of the block file as ``SCM_RIGHTS`` ancillary
data on the response frame's first byte (``"fd": 1``); the block's ``size``
bytes start at ``off`` in that file, and ``mem`` says it lies on a memory
tier (tmpfs). A block held only in memory has no file: ``"fd": 0`` and the
reader asks for its bytes with ``read``. An ``open`` with ``"cached": true``
asks only for a block the worker holds already: a block it would have to
fetch is answered ``"miss": true`` at once, and nothing is fetched (a reader
asking ahead for a warm file's blocks must not make the worker fetch a cold
file whole before answering). Old workers answer ``open`` with an
``invalid`` error ("unknown op") and keep the connection; workers before
``cached`` ignore it and fetch.

``ahead`` (``read`` and ``open``) is a sequential reader's hint: it will read
this many blocks of the file right after this one. A worker that misses the
block fetches it together with the blocks after it in its placement group
(up to ``ahead`` of them) as one UFS request, at once; without a hint it
does so only from the second miss in a row.

A ``read`` asks for ``len`` bytes at ``off`` within one block; the worker
answers with fewer when the block ends earlier (the last block of a file) and
``len`` in the response says how many. Unknown header keys are ignored so that
either side may add fields later. Everything else that is not as described
raises :class:`FrameError`.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from cachecluster.common.errors import (
    CacheClusterError,
    CorruptBlock,
    ErrorKind,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ReadOnly,
    Unavailable,
    VersionChanged,
)

PREFIX: Final = struct.Struct(">II")
"""Header length, payload length; both unsigned 32-bit big-endian."""
PREFIX_SIZE: Final = PREFIX.size
MAX_HEADER: Final = 64 * 1024
"""The largest msgpack header either side accepts."""
DEFAULT_MAX_PAYLOAD: Final = 64 * 1024 * 1024
"""The largest payload (and so the largest ``len`` of one read) by default."""
MAX_MESSAGE: Final = 1024
"""Error messages longer than this are cut, so a response header stays small."""

_BLOCK_ID_RE: Final = re.compile(r"[0-9a-f]{32}")
_INT64_MAX: Final = (1 << 63) - 1


class FrameError(InvalidArgument):
    """A frame or header does not follow the data protocol; the message says why."""


# One table from wire kind to error class; ``error_map.kind_of`` goes the other way.
ERROR_CLASSES: Final[dict[ErrorKind, type[CacheClusterError]]] = {
    ErrorKind.INVALID: InvalidArgument,
    ErrorKind.NOT_FOUND: NotFound,
    ErrorKind.PERMISSION: PermissionDenied,
    ErrorKind.UNAVAILABLE: Unavailable,
    ErrorKind.CONFLICT: VersionChanged,
    ErrorKind.CORRUPT: CorruptBlock,
    ErrorKind.READ_ONLY: ReadOnly,
    ErrorKind.INTERNAL: CacheClusterError,
}


@dataclass(frozen=True, slots=True)
class BlockRef:
    """What a worker needs to find or fetch a block: the fields of a ``BlockKey``."""

    mount: str
    path: str
    version: str
    index: int


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read ``length`` bytes at ``offset`` of block ``block_id``.

    ``cap`` is the read capability the master issued; the worker's opener checks it.
    """

    request_id: int
    block_id: str
    key: BlockRef
    offset: int
    length: int
    cap: bytes | None = None
    cached_only: bool = False
    """Only a block held already (never sent: set by the worker for an ``open`` with ``cached``)."""
    ahead: int = 0
    """Blocks of the file the reader will read right after this one (0: no hint)."""


@dataclass(frozen=True, slots=True)
class PingRequest:
    """A no-op request; its response proves the connection is alive and in order."""

    request_id: int = 0


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """Ask for the descriptor of block ``block_id``'s file (same host only, see the module doc)."""

    request_id: int
    block_id: str
    key: BlockRef
    cap: bytes | None = None
    cached_only: bool = False
    """Only if the worker holds the block: else a ``miss`` answer, and nothing is fetched."""
    ahead: int = 0
    """Blocks of the file the reader will read right after this one (0: no hint)."""


Request = ReadRequest | PingRequest | OpenRequest


@dataclass(frozen=True, slots=True)
class Response:
    """A decoded response header; ``length`` payload bytes follow when ``ok``."""

    request_id: int
    ok: bool
    length: int = 0
    kind: ErrorKind | None = None
    message: str = ""

    def error(self, where: str = "") -> CacheClusterError:
        """The cachecluster error an error response stands for."""
        cls = ERROR_CLASSES.get(self.kind or ErrorKind.INTERNAL, CacheClusterError)
        text = f"{where}: {self.message}" if where else self.message
        return cls(text)


@dataclass(frozen=True, slots=True)
class FdGrant:
    """A successful ``open`` response: ``length`` block bytes at ``offset`` of the passed fd.

    ``passed`` is False for a block held only in memory (no descriptor came:
    read it with ``read``); ``memory`` is True for a block on a memory tier;
    ``missing`` answers an ``open`` asked with ``cached``: the worker does not
    hold the block (nothing passed, nothing fetched).
    """

    request_id: int
    passed: bool
    offset: int
    length: int
    memory: bool = False
    missing: bool = False


# ---------------------------------------------------------------- encoding


def _frame(header: dict[str, Any], payload_length: int = 0) -> bytes:
    body: bytes = msgpack.packb(header, use_bin_type=True)
    if len(body) > MAX_HEADER:
        raise FrameError(f"header of {len(body)} bytes exceeds {MAX_HEADER}")
    return PREFIX.pack(len(body), payload_length) + body


def encode_request(request: Request) -> bytes:
    """The bytes of a request frame (requests carry no payload)."""
    if isinstance(request, PingRequest):
        return _frame({"op": "ping", "id": request.request_id})
    key = request.key
    header: dict[str, Any] = {
        "id": request.request_id,
        "block": request.block_id,
        "key": {
            "mount": key.mount,
            "path": key.path,
            "version": key.version,
            "index": key.index,
        },
        "cap": request.cap,
    }
    if request.ahead:
        header["ahead"] = request.ahead
    if isinstance(request, OpenRequest):
        if request.cached_only:
            header["cached"] = True
        return _frame({"op": "open", **header})
    return _frame({"op": "read", **header, "off": request.offset, "len": request.length})


def encode_grant(
    request_id: int, length: int, *, offset: int | None = None, memory: bool = False
) -> bytes:
    """An ``open`` response frame: with ``offset``, its fd must go along (see the module doc)."""
    if offset is None:
        return _frame({"id": request_id, "ok": True, "len": 0, "fd": 0, "size": length})
    return _frame(
        {
            "id": request_id,
            "ok": True,
            "len": 0,
            "fd": 1,
            "off": offset,
            "size": length,
            "mem": memory,
        }
    )


def encode_miss(request_id: int) -> bytes:
    """The answer to an ``open`` with ``cached`` for a block the worker does not hold."""
    return _frame({"id": request_id, "ok": True, "len": 0, "fd": 0, "size": 0, "miss": True})


def encode_ok(request_id: int, length: int) -> bytes:
    """Prefix and header of a successful response; ``length`` payload bytes must follow."""
    return _frame({"id": request_id, "ok": True, "len": length}, length)


def encode_error(request_id: int, kind: ErrorKind, message: str) -> bytes:
    """A whole error response frame (no payload). The message is cut to one short line."""
    line = " ".join(message.split())
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 3] + "..."
    return _frame({"id": request_id, "ok": False, "kind": kind.value, "msg": line})


# ---------------------------------------------------------------- decoding


def decode_prefix(prefix: bytes | bytearray | memoryview, max_payload: int) -> tuple[int, int]:
    """Header and payload lengths from a prefix, checked against the limits."""
    header_length, payload_length = PREFIX.unpack(prefix)
    if header_length == 0 or header_length > MAX_HEADER:
        raise FrameError(f"header length {header_length} not in 1..{MAX_HEADER}")
    if payload_length > max_payload:
        raise FrameError(f"payload length {payload_length} exceeds {max_payload}")
    return header_length, payload_length


def _unpack_map(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types for bad input
        raise FrameError(f"header is not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(header, dict):
        raise FrameError(f"header is a {type(header).__name__}, not a map")
    if not all(isinstance(k, str) for k in header):
        raise FrameError("header has a key that is not a string")
    return header


def _int(header: dict[str, Any], field: str, low: int = 0, high: int = _INT64_MAX) -> int:
    value = header.get(field)
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise FrameError(f"{field!r} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise FrameError(f"{field!r} = {value} not in {low}..{high}")
    return value


def _str(header: dict[str, Any], field: str, *, max_length: int = 4096) -> str:
    value = header.get(field)
    if not isinstance(value, str):
        raise FrameError(f"{field!r} must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise FrameError(f"{field!r} is longer than {max_length} characters")
    return value


def request_id_of(header: dict[str, Any]) -> int | None:
    """The request id of a header if it has a usable one, else None."""
    value = header.get("id", 0)
    if type(value) is int and 0 <= value <= _INT64_MAX:
        return value
    return None


def decode_request_header(header: dict[str, Any], max_payload: int) -> Request:
    """A request from an already unpacked header map."""
    op = header.get("op")
    if op == "ping":
        return PingRequest(_int(header, "id") if "id" in header else 0)
    if op != "read" and op != "open":
        raise FrameError(f"unknown op {op!r}")
    request_id = _int(header, "id")
    block_id = _str(header, "block", max_length=32)
    if not _BLOCK_ID_RE.fullmatch(block_id):
        raise FrameError(f"'block' must be 32 lowercase hex characters, got {block_id!r}")
    raw_key = header.get("key")
    if not isinstance(raw_key, dict):
        raise FrameError(f"'key' must be a map, got {type(raw_key).__name__}")
    key = BlockRef(
        mount=_str(raw_key, "mount"),
        path=_str(raw_key, "path"),
        version=_str(raw_key, "version"),
        index=_int(raw_key, "index"),
    )
    cap = header.get("cap")
    if cap is not None and not isinstance(cap, bytes):
        raise FrameError(f"'cap' must be bytes or nil, got {type(cap).__name__}")
    ahead = _int(header, "ahead") if "ahead" in header else 0
    if op == "open":
        cached = header.get("cached", False)
        if type(cached) is not bool:
            raise FrameError(f"'cached' must be true or false, got {cached!r}")
        return OpenRequest(request_id, block_id, key, cap, cached, ahead)
    offset = _int(header, "off")
    length = _int(header, "len", 0, max_payload)
    return ReadRequest(request_id, block_id, key, offset, length, cap, ahead=ahead)


def decode_request(
    header_bytes: bytes | bytearray | memoryview,
    payload_length: int,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Request:
    """A request from the bytes of its header; requests must have no payload."""
    if payload_length:
        raise FrameError(f"a request carries no payload, got {payload_length} bytes")
    return decode_request_header(_unpack_map(header_bytes), max_payload)


def unpack_header(header_bytes: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The header map of a frame; :class:`FrameError` when it is not msgpack or not a map."""
    return _unpack_map(header_bytes)


def decode_response(
    header_bytes: bytes | bytearray | memoryview,
    payload_length: int,
) -> Response:
    """A response from the bytes of its header, checked against the prefix's payload length."""
    header = _unpack_map(header_bytes)
    request_id = _int(header, "id")
    ok = header.get("ok")
    if ok is True:
        length = _int(header, "len")
        if length != payload_length:
            raise FrameError(f"'len' = {length} but the prefix announces {payload_length}")
        return Response(request_id, True, length)
    if ok is not False:
        raise FrameError(f"'ok' must be true or false, got {ok!r}")
    if payload_length:
        raise FrameError(f"an error response carries no payload, got {payload_length} bytes")
    raw_kind = _str(header, "kind", max_length=64)
    try:
        kind = ErrorKind(raw_kind)
    except ValueError:
        kind = ErrorKind.INTERNAL  # a newer worker's kind: still an error
    return Response(request_id, False, 0, kind, _str(header, "msg", max_length=64 * 1024))


def decode_grant(
    header_bytes: bytes | bytearray | memoryview, payload_length: int
) -> FdGrant | Response:
    """The answer to an ``open``: an :class:`FdGrant`, or the error :class:`Response`."""
    response = decode_response(header_bytes, payload_length)
    if not response.ok:
        return response
    if payload_length:
        raise FrameError(f"an 'open' response carries no payload, got {payload_length} bytes")
    header = _unpack_map(header_bytes)
    passed = _int(header, "fd", 0, 1) == 1
    length = _int(header, "size")
    if not passed:
        missing = header.get("miss", False)
        if type(missing) is not bool:
            raise FrameError(f"'miss' must be true or false, got {missing!r}")
        return FdGrant(response.request_id, False, 0, length, missing=missing)
    memory = header.get("mem", False)
    if type(memory) is not bool:
        raise FrameError(f"'mem' must be true or false, got {memory!r}")
    return FdGrant(response.request_id, True, _int(header, "off"), length, memory)
