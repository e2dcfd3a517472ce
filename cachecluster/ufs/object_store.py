"""What the object-store backends (S3, OSS) share: paths, listing, parallel ranged reads.

A subclass supplies four blocking primitives (head, list, ranged get into a
buffer, close) and an error mapper; this module turns them into the async
:class:`~cachecluster.ufs.base.UfsBackend` contract:

- every blocking call runs in the backend's own ``ThreadPoolExecutor``, sized
  like the SDK's connection pool, never on the event loop;
- a range up to ``part_size`` is one GET (with ``If-Match`` when a version is
  given); a larger one is a HEAD (size and ETag) followed by parallel ranged
  GETs, each filling its slice of the caller's buffer, all pinned to the ETag
  with ``If-Match`` so that a buffer never mixes two versions of an object;
- a scatter read (``read_blocks_into``: consecutive blocks, each into a
  buffer of its own) is one ranged GET whose body goes from the socket into
  each buffer in turn, pinned to the version the same way;
- the caller's buffer is never written after ``read_into`` returns or raises
  (also on cancellation: in-flight part reads are stopped and awaited).

Directories are key prefixes ending in ``/``; an empty directory exists only
as a zero-byte marker object ``dir/``.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from cachecluster.common.errors import (
    CacheClusterError,
    ConfigError,
    InvalidArgument,
    NotFound,
    UfsError,
    Unavailable,
    VersionChanged,
)
from cachecluster.common.paths import normalize_path
from cachecluster.common.units import parse_size
from cachecluster.ufs.base import FileStatus, Filled, UfsBackend
from cachecluster.ufs.threads import (
    BlockingCalls,
    BufferLease,
    forget_locals,
    wait_threads,
    writable_bytes,
)

_T = TypeVar("_T")

DEFAULT_PART_SIZE = 8 << 20
DEFAULT_READ_PARALLELISM = 8
DEFAULT_MAX_CONNECTIONS = 32
_COPY_CHUNK = 1 << 20  # bytes per readinto call: also how often an abort is noticed


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as a listing or a HEAD reports it (ETag without quotes)."""

    key: str
    size: int
    etag: str
    mtime: float


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """All objects and common prefixes under one prefix (every page merged)."""

    objects: list[ObjectInfo]
    prefixes: list[str]


class ReadAborted(Exception):
    """A part read stopped because a sibling part failed or the read was cancelled."""


def strip_etag(etag: str | None) -> str:
    """An ETag without its surrounding quotes (and without a weak ``W/`` marker)."""
    value = (etag or "").strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def parse_content_range(header: str | None) -> tuple[int, int, int | None] | None:
    """``"bytes 0-9/100"`` -> ``(0, 9, 100)`` (total ``None`` for ``*``); ``None`` if absent."""
    if not header:
        return None
    unit, _, spec = header.strip().partition(" ")
    if unit.lower() != "bytes":
        return None
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    try:
        return int(first), int(last), (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def read_response_into(raw: Any, view: memoryview, abort: threading.Event | None = None) -> int:
    """Read an HTTP response body into ``view`` until it is full or the body ends.

    ``raw`` is a urllib3 response (what botocore's and requests' bodies wrap).
    When it exposes the ``http.client`` response underneath, bytes go from the
    socket straight into ``view`` with ``readinto`` (no intermediate ``bytes``)
    and the connection returns to the pool once the body is consumed;
    otherwise the body is read in chunks and copied. Raises :class:`ReadAborted`
    when ``abort`` is set between chunks.
    """
    return read_response_into_views(raw, [view], abort)


def read_response_into_views(
    raw: Any,
    views: list[memoryview],
    abort: threading.Event | None = None,
    filled: Filled | None = None,
) -> int:
    """:func:`read_response_into` over several buffers: each filled in turn, then the next.

    Returns the bytes read in all; the body ended early when that is less
    than the buffers' total length (later buffers then hold fewer or none).
    ``filled(index, count)`` is called (in this thread) as soon as buffer
    ``index`` is full, before the next one is read; a buffer the body ends in
    early is not reported.
    """
    inner = getattr(raw, "_fp", None)
    readinto = getattr(inner, "readinto", None) if inner is not None else None
    total = 0
    try:
        for index, view in enumerate(views):
            got = 0
            length = len(view)
            while got < length:
                if abort is not None and abort.is_set():
                    raise ReadAborted()
                chunk = view[got : got + _COPY_CHUNK]
                if readinto is not None:
                    n = readinto(chunk)
                else:
                    data = raw.read(len(chunk))
                    n = len(data)
                    chunk[:n] = data
                del chunk
                if not n:
                    break
                got += n
            total += got
            if got < length:
                break
            if filled is not None:
                filled(index, got)
    except BaseException:
        close = getattr(raw, "close", None)
        if close is not None:
            close()
        raise
    finish_response(raw)
    return total


def _first_bytes(views: list[memoryview], length: int) -> list[memoryview]:
    """The leading ``length`` bytes of ``views`` taken in turn (the last one cut short)."""
    taken: list[memoryview] = []
    for view in views:
        if length <= 0:
            break
        taken.append(view[:length] if len(view) > length else view)
        length -= len(view)
    return taken


def finish_response(raw: Any) -> None:
    """Give the connection back to the pool if the body was consumed, else drop it."""
    inner = getattr(raw, "_fp", None)
    consumed = inner is None or bool(getattr(inner, "isclosed", lambda: False)())
    if consumed and callable(getattr(raw, "release_conn", None)):
        raw.release_conn()
    elif callable(getattr(raw, "close", None)):
        raw.close()


class OptionReader:
    """Reads one backend's options: canonical keys, aliases, strict namespace.

    ``known`` maps each canonical key (``fs.s3.endpoint``) to its aliases. Any
    other key in ``namespace`` (``fs.s3.``) is a :class:`ConfigError`; keys of
    other namespaces are left alone (a mount's options also carry other settings).
    """

    def __init__(
        self,
        options: Mapping[str, str],
        namespace: str,
        known: Mapping[str, tuple[str, ...]],
        what: str,
    ) -> None:
        alias_of = {alias: key for key, aliases in known.items() for alias in aliases}
        self.values: dict[str, str] = {}
        self._given_as: dict[str, str] = {}
        for given, value in options.items():
            key = given if given in known else alias_of.get(given)
            if key is None:
                if given.startswith(namespace):
                    raise ConfigError(
                        given, f"unknown option for {what} (known: {', '.join(sorted(known))})"
                    )
                continue
            value = str(value).strip()
            if key in self.values and self.values[key] != value:
                raise ConfigError(
                    given, f"conflicts with {self._given_as[key]}, which sets a different value"
                )
            self.values[key] = value
            self._given_as[key] = given

    def field(self, key: str) -> str:
        """The key the user wrote for canonical ``key`` (for error messages)."""
        return self._given_as.get(key, key)

    def text(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` (or an alias), or ``default``; empty counts as unset."""
        value = self.values.get(key)
        return value if value else default

    def flag(self, key: str, default: bool) -> bool:
        """A ``true``/``false`` option."""
        value = self.text(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise ConfigError(self.field(key), f"{value!r} is not true or false")

    def size(self, key: str, default: int, minimum: int = 1) -> int:
        """A size such as ``8Mi`` or ``8388608``, at least ``minimum``."""
        value = self.text(key)
        if value is None:
            return default
        parsed = parse_size(value, self.field(key))
        if parsed < minimum:
            raise ConfigError(self.field(key), f"{value!r} is below the minimum of {minimum} bytes")
        return parsed

    def count(self, key: str, default: int, minimum: int = 1, maximum: int = 1024) -> int:
        """A whole number between ``minimum`` and ``maximum``."""
        value = self.text(key)
        if value is None:
            return default
        try:
            parsed = int(value)
        except ValueError:
            raise ConfigError(self.field(key), f"{value!r} is not a whole number") from None
        if not minimum <= parsed <= maximum:
            raise ConfigError(self.field(key), f"{parsed} is not between {minimum} and {maximum}")
        return parsed


def with_scheme(endpoint: str) -> str:
    """An endpoint URL: ``https://`` is added when no scheme is given."""
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"https://{endpoint}"


class ObjectStoreBackend(UfsBackend):
    """Base of the S3 and OSS backends; subclasses supply the blocking primitives."""

    def __init__(
        self,
        uri: str,
        options: Mapping[str, str] | None,
        *,
        part_size: int,
        read_parallelism: int,
        max_connections: int,
    ) -> None:
        from cachecluster.ufs.registry import split_uri

        super().__init__(uri, options)
        location = split_uri(uri)
        if location.scheme not in self.schemes:
            raise ConfigError("uri", f"{uri!r} is not a {'/'.join(self.schemes)}:// URI")
        self.scheme = location.scheme
        self.bucket = location.root
        self.prefix = location.prefix
        self.part_size = part_size
        self.read_parallelism = read_parallelism
        self.max_connections = max_connections
        self._calls = BlockingCalls(
            max_connections,
            f"ufs-{self.scheme}",
            f"{self.display(self.prefix)}: the UFS backend is closed",
        )

    # -- what a subclass provides (all blocking, run in the executor) -----------

    @abc.abstractmethod
    def _head_blocking(self, key: str) -> ObjectInfo | None:
        """The object at ``key``, or ``None`` when there is none."""

    @abc.abstractmethod
    def _list_blocking(self, prefix: str, delimiter: str, limit: int | None) -> Listing:
        """Objects and common prefixes under ``prefix`` (all pages, or about ``limit`` items)."""

    @abc.abstractmethod
    def _get_into_blocking(
        self,
        key: str,
        start: int,
        views: list[memoryview],
        etag: str | None,
        abort: threading.Event | None,
        filled: Filled | None = None,
    ) -> int:
        """One GET of the bytes at ``start`` into ``views``, filled in turn (``If-Match: etag``).

        The range asked is ``start`` .. ``start + total length of views - 1``;
        ``filled`` as for :func:`read_response_into_views`.
        Returns the count, short at end of object, 0 when ``start`` is at or past it.
        """

    def _receive_range(
        self,
        key: str,
        start: int,
        views: list[memoryview],
        raw: Any,
        *,
        partial: bool,
        length: int,
        content_range: str | None,
        abort: threading.Event | None,
        filled: Filled | None = None,
    ) -> int:
        """Check a ranged GET's answer and read its body into ``views``; return the count.

        ``partial`` is a 206 answer. A 200 carries the whole object although a
        range was asked (a server without range support, or OSS's answer to a
        range it finds invalid): usable only when it is exactly what was asked.
        """
        wanted = sum(len(view) for view in views)
        if partial:
            span = parse_content_range(content_range)
            if span is None or span[0] != start or length > wanted:
                finish_response(raw)
                raise UfsError(
                    f"{self.display(key)}: the server answered range {start}+{wanted} "
                    f"with {content_range!r}"
                )
        elif start != 0 or length > wanted:
            finish_response(raw)
            if start >= length:
                return 0
            raise UfsError(f"{self.display(key)}: the server ignored the Range header")
        n = read_response_into_views(raw, _first_bytes(views, length), abort, filled)
        if n != length:
            raise Unavailable(
                f"{self.display(key)}: the connection ended after {n} of {length} bytes"
            )
        return n

    def _past_end(self, key: str, start: int, etag: str | None) -> int:
        """A 416: ``start`` is at or past the end. Still honour the version asked for."""
        if etag is not None:
            info = self._head_blocking(key)
            if info is None:
                raise NotFound(f"no such file: {self.display(key)}")
            if info.etag != etag:
                raise VersionChanged(
                    f"{self.display(key)} changed: version {info.etag}, expected {etag}"
                )
        return 0

    @abc.abstractmethod
    def _close_blocking(self) -> None:
        """Release the SDK client and its connections."""

    @abc.abstractmethod
    def _map_error(self, exc: Exception, key: str) -> CacheClusterError:
        """Our error for an SDK exception about ``key``; the message never holds a secret."""

    # -- helpers -----------------------------------------------------------------

    def _key(self, rel: str) -> str:
        if not self.prefix:
            return rel
        return f"{self.prefix}/{rel}" if rel else self.prefix

    def _rel(self, key: str) -> str | None:
        """The mount-relative path of ``key``, or ``None`` if it cannot be addressed."""
        key = key.rstrip("/")
        if self.prefix:
            if not key.startswith(self.prefix + "/"):
                return None
            key = key[len(self.prefix) + 1 :]
        try:
            return key if key and normalize_path(key) == key else None
        except CacheClusterError:
            return None

    def display(self, key: str) -> str:
        """``scheme://bucket/key`` for messages."""
        return f"{self.scheme}://{self.bucket}/{key}" if key else f"{self.scheme}://{self.bucket}"

    def _mapped(self, func: Callable[..., _T], key: str, *args: Any) -> _T:
        """Run ``func`` (in a pool thread), turning SDK errors into ours."""
        try:
            return func(*args)
        except (CacheClusterError, ReadAborted):
            raise
        except Exception as exc:
            raise self._map_error(exc, key) from exc

    def _submit(
        self, func: Callable[..., _T], key: str, *args: Any
    ) -> concurrent.futures.Future[_T]:
        return self._calls.submit(self._mapped, func, key, *args)

    async def _call(self, func: Callable[..., _T], key: str, *args: Any) -> _T:
        return await self._calls.call(self._mapped, func, key, *args)

    def _file_status(self, info: ObjectInfo, rel: str) -> FileStatus:
        return FileStatus(path=rel, size=info.size, version=info.etag, mtime=info.mtime)

    # -- UfsBackend ----------------------------------------------------------------

    async def stat(self, path: str) -> FileStatus:
        """A HEAD of the object; if there is none, a directory when keys exist below it."""
        rel = normalize_path(path)
        key = self._key(rel)
        if key:
            info = await self._call(self._head_blocking, key, key)
            if info is not None:
                return self._file_status(info, rel)
        # The mount root is a directory even with nothing below it yet; the
        # listing still fails if the bucket does not exist.
        below = await self._call(self._list_blocking, key, f"{key}/" if key else "", "/", 1)
        if rel and not below.objects and not below.prefixes:
            raise NotFound(f"no such file or directory: {self.display(key)}")
        return FileStatus(path=rel, size=0, version="", mtime=0.0, is_dir=True)

    async def list(self, path: str = "", *, recursive: bool = False) -> list[FileStatus]:
        """Entries under ``path``: one listing (with delimiter ``/`` unless recursive)."""
        rel = normalize_path(path)
        key = self._key(rel)
        dir_prefix = f"{key}/" if key else ""
        listing = await self._call(
            self._list_blocking, key, dir_prefix, "" if recursive else "/", None
        )
        entries: dict[str, FileStatus] = {}
        marker_found = False
        for info in listing.objects:
            if info.key == dir_prefix:
                marker_found = True
                continue
            if info.key.endswith("/"):
                continue  # a marker of a nested directory
            child = self._rel(info.key)
            if child is not None:
                entries[child] = self._file_status(info, child)
        for prefix in listing.prefixes:
            child = self._rel(prefix)
            if child is not None and child not in entries:
                entries[child] = FileStatus(path=child, size=0, version="", mtime=0.0, is_dir=True)
        if rel and not entries and not marker_found and not listing.prefixes:
            if listing.objects:  # only unaddressable keys below: still a directory
                return []
            raise NotFound(f"no such directory: {self.display(key)}")
        return [entries[name] for name in sorted(entries)]

    def _file_key(self, path: str, offset: int) -> str:
        """The object key a read of ``path`` from ``offset`` asks for, the arguments checked."""
        key = self._key(normalize_path(path))
        if offset < 0:
            raise InvalidArgument(f"negative offset {offset} for {self.display(key)}")
        if not key:
            raise NotFound(f"is a directory, not a file: {self.display(key)}")
        return key

    async def read_into(
        self, path: str, offset: int, buf: memoryview, *, version: str | None = None
    ) -> int:
        """Fill ``buf`` from ``offset``; parallel ranged GETs above ``part_size``."""
        key = self._file_key(path, offset)
        view = writable_bytes(buf)
        del buf  # only ``view`` (dropped below) refers to the caller's buffer
        try:
            return await self._read_into(key, offset, view, version)
        except BaseException as exc:
            forget_locals(exc)  # the finished frames below hold slices of the buffer
            raise
        finally:
            del view

    async def _read_into(self, key: str, offset: int, view: memoryview, version: str | None) -> int:
        if len(view) == 0:
            return 0
        if len(view) <= self.part_size:
            return await self._call(
                self._get_into_blocking, key, key, offset, BufferLease([view]), version, None
            )
        info = await self._call(self._head_blocking, key, key)
        if info is None:
            raise NotFound(f"no such file: {self.display(key)}")
        if version is not None and info.etag != version:
            raise VersionChanged(
                f"{self.display(key)} changed: version {info.etag}, expected {version}"
            )
        end = min(offset + len(view), info.size)
        if offset >= end:
            return 0
        await self._read_parts(key, offset, view[: end - offset], info.etag)
        return end - offset

    async def _read_parts(self, key: str, offset: int, view: memoryview, etag: str) -> None:
        """Fill ``view`` (bytes ``offset..``) with parallel GETs pinned to ``etag``."""
        parts = [
            (offset + start, view[start : start + self.part_size])
            for start in range(0, len(view), self.part_size)
        ]
        abort = threading.Event()
        submitted: list[concurrent.futures.Future[int]] = []
        queue = iter(parts)

        async def lane() -> None:
            for start, part in queue:
                wanted = len(part)
                future = self._submit(
                    self._get_into_blocking, key, key, start, BufferLease([part]), etag, abort
                )
                del part
                submitted.append(future)
                n = await asyncio.wrap_future(future)
                if n != wanted:
                    raise UfsError(
                        f"{self.display(key)}: short read at offset {start} "
                        f"({n} of {wanted} bytes) although the version did not change"
                    )

        lanes = [
            asyncio.ensure_future(lane()) for _ in range(min(self.read_parallelism, len(parts)))
        ]
        try:
            await asyncio.gather(*lanes)
        except BaseException as exc:
            abort.set()
            for task in lanes:
                task.cancel()
            outcomes = await asyncio.gather(*lanes, return_exceptions=True)
            await wait_threads(submitted)
            parts.clear()  # the lanes' frames share ``queue``: let go of the slices
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and outcome is not exc:
                    forget_locals(outcome)
            if isinstance(exc, ReadAborted):  # cannot happen first, but never leak it
                raise UfsError(f"{self.display(key)}: read aborted") from exc
            raise

    async def read_blocks_into(
        self,
        path: str,
        offset: int,
        buffers: Sequence[memoryview],
        *,
        version: str | None = None,
        filled: Filled | None = None,
    ) -> int:
        """One ranged GET from ``offset``, its body received into each buffer in turn.

        Pinned with ``If-Match`` to ``version`` when given (``VersionChanged``
        otherwise). No HEAD first: a range past the end of the object answers
        with fewer bytes, or 0 when ``offset`` is at or past it. ``filled``
        hears of each buffer as it is full (from a pool thread).
        """
        key = self._file_key(path, offset)
        views = [writable_bytes(buffer) for buffer in buffers]
        del buffers
        views = [view for view in views if len(view)]
        if not views:
            return 0
        try:
            return await self._call(
                self._get_into_blocking, key, key, offset, BufferLease(views), version, None, filled
            )
        except BaseException as exc:
            forget_locals(exc)
            raise
        finally:
            views.clear()

    async def close(self) -> None:
        """Shut the thread pool down and release the SDK client. Safe to call twice."""
        if self._calls.closed:
            return
        await self._calls.close()
        await asyncio.to_thread(self._close_blocking)
