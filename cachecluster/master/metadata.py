"""File status and listings of datasets, from the UFS, cached for a sync interval.

A dataset path (``"train/part-0.bin"``) resolves to a mount and a path inside
that mount (``mount_path``), or to a *virtual directory*: the dataset root, or
a folder above mounts placed at sub-paths (``/train``, ``/eval/a``), which
lists those mounts as directories.

Directory listings are cached per ``(mount, directory)`` for
``sync_interval`` seconds, and so are single stats (a FUSE lookup must not list
a directory of a million files). A stat first looks in a fresh listing of the
parent, then in the stat cache, then asks the UFS. Concurrent misses of the
same listing make one UFS call (single flight). One backend serves each mount;
it is created at apply, at master start (:meth:`MetadataCache.open_backends`, in the
background) or on first use, and closed when the mount goes away or changes.

Every returned entry carries ``mount_id`` and ``mount_path`` so that readers
compute block ids themselves: ``BlockKey(mount_id, mount_path, version, index)``.

A reference dataset (``dataset://<ns>/<name>[/subpath]``) resolves into its
source's mounts below ``subpath`` (:mod:`cachecluster.master.references`):
entries carry the source's mount ids, so readers of either dataset share the
same cached blocks, and their paths are rebased onto the reference.

Workers follow the set of mounts (:meth:`MetadataCache.watch_mounts`, the
``WatchMounts`` stream) to open their backends before a first read needs them.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import dataclasses
import logging
import posixpath
import time
from collections.abc import AsyncIterator, Callable, Mapping

from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.common.paths import normalize_path
from cachecluster.master.datasets import DatasetRegistry, MountInfo
from cachecluster.master.references import resolve_source
from cachecluster.ufs.base import FileStatus, UfsBackend
from cachecluster.ufs.registry import create_backend

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
MAX_CACHED_LISTINGS = 10_000
MAX_CACHED_STATS = 200_000

BackendFactory = Callable[[str, Mapping[str, str]], UfsBackend]


@dataclasses.dataclass(frozen=True, slots=True)
class EntryStatus:
    """One file or directory of a dataset (``FileStatus`` in master.proto).

    ``path`` is the dataset path; ``mount_id`` and ``mount_path`` say where
    its bytes live (both empty for a virtual directory).
    """

    path: str
    size: int
    version: str
    mtime: float
    is_dir: bool
    mount_id: str
    mount_path: str


@dataclasses.dataclass(slots=True)
class MetadataCounters:
    """Cache effectiveness since start (exported as Prometheus counters)."""

    listing_hits: int = 0
    listing_misses: int = 0
    stat_hits: int = 0
    stat_misses: int = 0
    ufs_errors: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Listing:
    entries: list[FileStatus]  # sorted by path
    paths: list[str]  # the entries' paths, for bisect
    expires_at: float


@dataclasses.dataclass(slots=True)
class _MountBackend:
    mount: MountInfo
    backend: UfsBackend


def _to_entry(mount: MountInfo, status: FileStatus) -> EntryStatus:
    if not mount.path:
        path = status.path
    elif not status.path:
        path = mount.path
    else:
        path = f"{mount.path}/{status.path}"
    return EntryStatus(
        path=path,
        size=status.size,
        version=status.version,
        mtime=status.mtime,
        is_dir=status.is_dir,
        mount_id=mount.mount_id,
        mount_path=status.path,
    )


def _rebase(entry: EntryStatus, subpath: str) -> EntryStatus:
    """``entry`` (a path of a source dataset) as seen by a reference to ``subpath``."""
    if not subpath:
        return entry
    path = "" if entry.path == subpath else entry.path[len(subpath) + 1 :]
    return dataclasses.replace(entry, path=path)


def _virtual_dir(path: str) -> EntryStatus:
    return EntryStatus(
        path=path, size=0, version="", mtime=0.0, is_dir=True, mount_id="", mount_path=""
    )


_TOKEN_PREFIX = "p1."


def encode_page_token(last_path: str) -> str:
    """The opaque token that resumes a listing after ``last_path``."""
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(last_path.encode("utf-8")).decode("ascii")


def decode_page_token(token: str) -> str:
    """Inverse of :func:`encode_page_token`; anything else is an ``InvalidArgument``."""
    try:
        if not token.startswith(_TOKEN_PREFIX):
            raise ValueError(token)
        raw = token[len(_TOKEN_PREFIX) :].encode("ascii")
        return base64.b64decode(raw, altchars=b"-_", validate=True).decode("utf-8")
    except (ValueError, UnicodeError):
        raise InvalidArgument(f"page token {token!r}: not a token this master issued") from None


class MetadataCache:
    """Answers GetStatus / ListStatus / GetMount for the datasets of ``registry``."""

    def __init__(
        self,
        registry: DatasetRegistry,
        *,
        sync_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        backend_factory: BackendFactory = create_backend,
    ) -> None:
        self.registry = registry
        self.sync_interval = sync_interval
        self.counters = MetadataCounters()
        self._clock = clock
        self._backend_factory = backend_factory
        self._backends: dict[str, _MountBackend] = {}
        self._backend_lock = asyncio.Lock()
        # (mount_id, dir, recursive) -> listing, least recently used first
        self._listings: collections.OrderedDict[tuple[str, str, bool], _Listing] = (
            collections.OrderedDict()
        )
        # (mount_id, mount_path) -> (status or None for "does not exist", expires_at)
        self._stats: collections.OrderedDict[tuple[str, str], tuple[FileStatus | None, float]] = (
            collections.OrderedDict()
        )
        self._pending: dict[tuple[str, str, bool], asyncio.Task[_Listing]] = {}
        # The mount set as watchers last saw it, and a version bumped when it changes.
        self._watched_mounts: dict[str, MountInfo] | None = None
        self._mounts_version = 0
        self._mounts_changed = asyncio.Condition()
        self._watching = True

    # -- mounts and backends ---------------------------------------------------

    def get_mount(self, mount_id: str) -> MountInfo:
        """The mount with ``mount_id`` (for workers and the client's UFS fallback)."""
        return self.registry.mount(mount_id)

    async def sync_mounts(self) -> None:
        """Close backends and drop caches of mounts that went away or changed."""
        current = {mount.mount_id: mount for mount in self.registry.mounts()}
        stale = [
            mount_id
            for mount_id, entry in self._backends.items()
            if current.get(mount_id) != entry.mount
        ]
        for mount_id in stale:
            entry = self._backends.pop(mount_id)
            self._forget(mount_id)
            await entry.backend.close()
        for mount_id in {key[0] for key in self._listings} - set(current):
            self._forget(mount_id)
        if current != self._watched_mounts:
            self._watched_mounts = current
            self._mounts_version += 1
            async with self._mounts_changed:
                self._mounts_changed.notify_all()

    async def watch_mounts(self) -> AsyncIterator[list[MountInfo]]:
        """Every mount (by id), then the whole set again after each change.

        A change is what :meth:`sync_mounts` sees (every apply, delete, secret
        or runtime change calls it). Ends when :meth:`end_watches` is called.
        """
        sent: int | None = None

        def moved() -> bool:
            return not self._watching or sent != self._mounts_version

        while self._watching:
            if sent != self._mounts_version:
                sent = self._mounts_version
                yield sorted(self.registry.mounts(), key=lambda mount: mount.mount_id)
                continue
            async with self._mounts_changed:
                await self._mounts_changed.wait_for(moved)

    async def end_watches(self) -> None:
        """End every :meth:`watch_mounts` (the master is stopping)."""
        self._watching = False
        async with self._mounts_changed:
            self._mounts_changed.notify_all()

    def refresh(self, namespace: str, name: str) -> None:
        """Drop the cached listings and stats of a dataset (``loadMetadata``).

        The next call for any of its paths asks the UFS again, so changed
        files get their new version (and new block ids) at once.
        """
        source, _ = resolve_source(self.registry, self.registry.get(namespace, name))
        for mount in source.mounts:  # a reference refreshes its source
            self._forget(mount.mount_id)

    def _forget(self, mount_id: str) -> None:
        for key in [key for key in self._listings if key[0] == mount_id]:
            del self._listings[key]
        for stat_key in [key for key in self._stats if key[0] == mount_id]:
            del self._stats[stat_key]

    async def backend(self, mount: MountInfo) -> UfsBackend:
        """The backend of ``mount``, created (in a thread: SDK clients block) on first use."""
        entry = self._backends.get(mount.mount_id)
        if entry is not None and entry.mount == mount:
            return entry.backend
        async with self._backend_lock:
            entry = self._backends.get(mount.mount_id)
            if entry is not None and entry.mount == mount:
                return entry.backend
            backend = await asyncio.to_thread(self._backend_factory, mount.uri, mount.options)
            if entry is not None:
                self._forget(mount.mount_id)
                await entry.backend.close()
            self._backends[mount.mount_id] = _MountBackend(mount, backend)
            return backend

    async def open_backends(self) -> None:
        """Create the backend of every registered mount (at start, in the background),
        so that a first stat does not wait for it; a mount that fails is logged and
        left to fail again, with its reason, when it is used."""
        for mount in self.registry.mounts():
            try:
                await self.backend(mount)
            except Exception as error:
                log.warning(
                    "mount %s (%s): backend not opened: %s", mount.mount_id, mount.uri, error
                )

    async def check_mounts(self, mounts: tuple[MountInfo, ...]) -> None:
        """Create the backends of ``mounts`` now, so that a bad option fails an apply."""
        for mount in mounts:
            await self.backend(mount)

    async def close(self) -> None:
        """End the watches, cancel listings in flight and close every backend."""
        await self.end_watches()
        for task in list(self._pending.values()):
            task.cancel()
        self._pending.clear()
        entries = list(self._backends.values())
        self._backends.clear()
        self._listings.clear()
        self._stats.clear()
        for entry in entries:
            await entry.backend.close()

    # -- resolution ------------------------------------------------------------

    def _resolve(
        self, namespace: str, name: str, path: str
    ) -> tuple[str, MountInfo | None, str, list[MountInfo]]:
        """``(dataset path, mount, mount_path, mounts below)`` for ``path``.

        For a path inside a mount, ``mount`` is set and the list is empty; for
        a virtual directory, ``mount`` is ``None`` and the list holds the
        mounts below it. Anything else is ``NotFound``.
        """
        record = self.registry.get(namespace, name)
        rel = normalize_path(path)
        below: list[MountInfo] = []
        for mount in record.mounts:
            if not mount.path:
                return rel, mount, rel, []
            if rel == mount.path:
                return rel, mount, "", []
            if rel.startswith(mount.path + "/"):
                return rel, mount, rel[len(mount.path) + 1 :], []
            if not rel or mount.path.startswith(rel + "/"):
                below.append(mount)
        if not below:
            raise NotFound(f"no such file or directory: {record.ref}/{rel}")
        return rel, None, "", below

    @staticmethod
    def _virtual_children(rel: str, below: list[MountInfo]) -> list[EntryStatus]:
        children: dict[str, EntryStatus] = {}
        for mount in below:
            rest = mount.path[len(rel) + 1 :] if rel else mount.path
            head = rest.split("/", 1)[0]
            child = posixpath.join(rel, head) if rel else head
            if child == mount.path:
                children[child] = EntryStatus(
                    path=child,
                    size=0,
                    version="",
                    mtime=0.0,
                    is_dir=True,
                    mount_id=mount.mount_id,
                    mount_path="",
                )
            else:
                children.setdefault(child, _virtual_dir(child))
        return [children[key] for key in sorted(children)]

    # -- listings --------------------------------------------------------------

    async def _listing(self, mount: MountInfo, directory: str, recursive: bool) -> _Listing:
        key = (mount.mount_id, directory, recursive)
        cached = self._listings.get(key)
        if cached is not None and cached.expires_at > self._clock():
            self._listings.move_to_end(key)
            self.counters.listing_hits += 1
            return cached
        task = self._pending.get(key)
        if task is None:
            self.counters.listing_misses += 1
            task = asyncio.ensure_future(self._fetch_listing(mount, directory, recursive))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._done_fetch(key, done))
        return await asyncio.shield(task)

    def _done_fetch(self, key: tuple[str, str, bool], task: asyncio.Task[_Listing]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]
        if not task.cancelled() and task.exception() is not None:
            self.counters.ufs_errors += 1

    async def _fetch_listing(self, mount: MountInfo, directory: str, recursive: bool) -> _Listing:
        backend = await self.backend(mount)
        entries = sorted(
            await backend.list(directory, recursive=recursive), key=lambda status: status.path
        )
        listing = _Listing(
            entries=entries,
            paths=[status.path for status in entries],
            expires_at=self._clock() + self.sync_interval,
        )
        current = self._backends.get(mount.mount_id)
        if self.sync_interval > 0 and current is not None and current.backend is backend:
            key = (mount.mount_id, directory, recursive)
            self._listings[key] = listing
            self._listings.move_to_end(key)
            while len(self._listings) > MAX_CACHED_LISTINGS:
                self._listings.popitem(last=False)
        return listing

    async def _ufs_stat(self, mount: MountInfo, mount_path: str) -> FileStatus:
        """The status of ``mount_path``: from its folder's listing, a cached stat, or the UFS.

        A folder listed after the path's cached stat was taken, without the
        path in it, outdates that stat: the path was removed (or renamed)
        since. Then the UFS is asked again, so that a removed file is not
        found in one call and served from the older stat in the next.
        """
        now = self._clock()
        parent = posixpath.dirname(mount_path)
        listing = self._listings.get((mount.mount_id, parent, False))
        listed_since = 0.0  # a fresh listing of the folder without the path: when it expires
        if listing is not None and listing.expires_at > now and mount_path:
            index = bisect.bisect_left(listing.paths, mount_path)
            if index < len(listing.paths) and listing.paths[index] == mount_path:
                self.counters.stat_hits += 1
                return listing.entries[index]
            listed_since = listing.expires_at
        key = (mount.mount_id, mount_path)
        cached = self._stats.get(key)
        # Entries expire a sync interval after they were taken: the later expiry is the newer.
        outdated = cached is not None and cached[0] is not None and listed_since > cached[1]
        if cached is not None and cached[1] > now and not outdated:
            self.counters.stat_hits += 1
            self._stats.move_to_end(key)
            if cached[0] is None:
                raise NotFound(f"no such file or directory: {mount.uri.rstrip('/')}/{mount_path}")
            return cached[0]
        self.counters.stat_misses += 1
        backend = await self.backend(mount)
        try:
            status = await backend.stat(mount_path)
        except NotFound:
            self._remember_stat(key, None)
            raise
        except Exception:
            self.counters.ufs_errors += 1
            raise
        self._remember_stat(key, status)
        return status

    def _remember_stat(self, key: tuple[str, str], status: FileStatus | None) -> None:
        if self.sync_interval <= 0:
            return
        self._stats[key] = (status, self._clock() + self.sync_interval)
        self._stats.move_to_end(key)
        while len(self._stats) > MAX_CACHED_STATS:
            self._stats.popitem(last=False)

    # -- the RPCs --------------------------------------------------------------

    def _follow_reference(self, namespace: str, name: str, path: str) -> tuple[str, str, str, str]:
        """``(namespace, name, path, subpath)`` in the dataset whose mounts serve ``path``.

        For a reference dataset that is its source, with ``path`` below
        ``subpath``; for any other dataset, the arguments and ``""``.
        """
        record = self.registry.get(namespace, name)
        source, subpath = resolve_source(self.registry, record)
        if source is record:
            return namespace, name, path, ""
        rel = normalize_path(path)
        inner = f"{subpath}/{rel}" if subpath and rel else (subpath or rel)
        return source.namespace, source.name, inner, subpath

    async def get_status(self, namespace: str, name: str, path: str) -> EntryStatus:
        """Status of one dataset path; ``NotFound`` when it does not exist."""
        namespace, name, path, subpath = self._follow_reference(namespace, name, path)
        return _rebase(await self._get_status(namespace, name, path), subpath)

    async def _get_status(self, namespace: str, name: str, path: str) -> EntryStatus:
        rel, mount, mount_path, _ = self._resolve(namespace, name, path)
        if mount is None:
            return _virtual_dir(rel)
        status = await self._ufs_stat(mount, mount_path)
        return _to_entry(mount, status)

    async def list_status(
        self,
        namespace: str,
        name: str,
        path: str,
        *,
        recursive: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[EntryStatus], str]:
        """One page of the entries under ``path``, sorted by path, and the next token.

        With ``recursive`` every file below ``path`` is listed (directories are
        not). Listing a file gives that file. The token is ``""`` on the last page.
        """
        namespace, name, path, subpath = self._follow_reference(namespace, name, path)
        entries, token = await self._list_status(
            namespace,
            name,
            path,
            recursive=recursive,
            page_size=page_size,
            page_token=page_token,
        )
        return [_rebase(entry, subpath) for entry in entries], token

    async def _list_status(
        self,
        namespace: str,
        name: str,
        path: str,
        *,
        recursive: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[EntryStatus], str]:
        if page_size < 0:
            raise InvalidArgument(f"page size {page_size}: must be >= 0")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(page_token) if page_token else None
        rel, mount, mount_path, below = self._resolve(namespace, name, path)
        if mount is not None:
            try:
                listing = await self._listing(mount, mount_path, recursive)
            except NotFound:
                # Listing a file lists that file, as ``ls FILE`` does.
                status = await self._ufs_stat(mount, mount_path) if mount_path else None
                if status is None or status.is_dir:
                    raise
                return ([_to_entry(mount, status)] if after is None else []), ""
            prefix = mount.path
            start = 0
            if after is not None:
                if prefix and not (after == prefix or after.startswith(prefix + "/")):
                    raise InvalidArgument(f"page token: not a token of a listing of /{rel}")
                inner = after[len(prefix) + 1 :] if prefix else after
                start = bisect.bisect_right(listing.paths, inner)
            chosen = listing.entries[start : start + size + 1]
            entries = [_to_entry(mount, status) for status in chosen]
        else:
            if recursive:
                combined: list[EntryStatus] = []
                for child in sorted(below, key=lambda item: item.path):
                    child_listing = await self._listing(child, "", True)
                    combined.extend(_to_entry(child, status) for status in child_listing.entries)
                combined.sort(key=lambda entry: entry.path)
            else:
                combined = self._virtual_children(rel, below)
            paths = [entry.path for entry in combined]
            start = bisect.bisect_right(paths, after) if after is not None else 0
            entries = combined[start : start + size + 1]
        if len(entries) > size:
            entries = entries[:size]
            return entries, encode_page_token(entries[-1].path)
        return entries, ""
