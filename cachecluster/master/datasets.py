"""The dataset registry of the master: specs, their mounts, and where they are kept.

A dataset is a Fluid ``Dataset`` ``spec`` (its ``mounts`` for now)::

    {"mounts": [{"mountPoint": "s3://bucket/dir", "name": "m0", "path": "/",
                 "options": {"fs.s3.endpoint": "http://..."}}]}

Each mount gets a stable ``mount_id``: the first 16 hex chars of blake2b over
``namespace \\0 dataset \\0 mount name \\0 mountPoint``. Block ids include it,
so two datasets over one bucket never share blocks by accident, and blocks
stay valid across master restarts.

Inside a dataset, a mount with path ``/`` (or the only mount, when it has no
path) is the dataset root and must then be the only mount; every other mount
appears at ``/<path>`` (default ``/<name>``). Mount paths may not nest.

Specs persist in ``<home>/datasets.json`` (mode 0600: options may hold
credentials), written atomically after each change and read back at start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cachecluster.common.errors import ConfigError, InvalidArgument, NotFound
from cachecluster.common.paths import normalize_path
from cachecluster.ufs.registry import split_uri

log = logging.getLogger(__name__)

DATASETS_FILE = "datasets.json"
FILE_FORMAT_VERSION = 1

_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_MOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
_KNOWN_MOUNT_FIELDS = frozenset({"mountPoint", "name", "path", "options", "encryptOptions"})


def check_ref(namespace: str, name: str) -> None:
    """Refuse a namespace or dataset name Kubernetes would refuse."""
    if not _NAMESPACE_RE.match(namespace or ""):
        raise InvalidArgument(
            f"namespace {namespace!r}: expected a DNS label (lowercase letters, digits, '-')"
        )
    if not _NAME_RE.match(name or ""):
        raise InvalidArgument(
            f"dataset name {name!r}: expected lowercase letters, digits, '-' and '.'"
        )


def mount_id_of(namespace: str, dataset: str, mount_name: str, mount_point: str) -> str:
    """The stable id of a mount (see the module docstring)."""
    text = "\0".join((namespace, dataset, mount_name, mount_point))
    return hashlib.blake2b(text.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True, slots=True)
class MountInfo:
    """One mount of one dataset: its UFS root, its place in the dataset, its options.

    ``path`` is where the mount appears in the dataset, normalised (``""`` is
    the dataset root). ``options`` may hold credentials.
    """

    mount_id: str
    namespace: str
    dataset: str
    name: str
    uri: str
    path: str
    options: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetRecord:
    """A registered dataset: its spec as applied and the mounts derived from it."""

    namespace: str
    name: str
    spec: Mapping[str, Any]
    mounts: tuple[MountInfo, ...]
    generation: int
    created_ms: int

    @property
    def ref(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def status(self) -> dict[str, Any]:
        """The status document (JSON-compatible) reported with the dataset."""
        return {
            "mounts": [
                {
                    "name": mount.name,
                    "mountPoint": mount.uri,
                    "path": "/" + mount.path,
                    "mountId": mount.mount_id,
                }
                for mount in self.mounts
            ]
        }


def _default_mount_name(mount_point: str, index: int) -> str:
    """The last path element of the mount point (Fluid's default), else ``m<index>``."""
    tail = mount_point.partition("://")[2].rstrip("/").rsplit("/", 1)[-1]
    return tail if _MOUNT_NAME_RE.match(tail) else f"m{index}"


def _parse_options(where: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}.options: expected a map of strings")
    options: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise InvalidArgument(
                f"{where}.options.{key}: expected a string, got {type(value).__name__} "
                "(quote numbers and booleans)"
            )
        options[str(key)] = value
    return options


def parse_mounts(namespace: str, name: str, spec: Any) -> tuple[MountInfo, ...]:
    """Validate a dataset ``spec`` and derive its mounts; one clear error for each mistake."""
    if not isinstance(spec, dict):
        raise InvalidArgument(f"dataset {namespace}/{name}: the spec must be a JSON object")
    raw_mounts = spec.get("mounts")
    if not isinstance(raw_mounts, list) or not raw_mounts:
        raise InvalidArgument(f"dataset {namespace}/{name}: spec.mounts must be a non-empty list")
    mounts: list[MountInfo] = []
    for index, raw in enumerate(raw_mounts):
        where = f"dataset {namespace}/{name}: spec.mounts[{index}]"
        if not isinstance(raw, dict):
            raise InvalidArgument(f"{where}: expected an object")
        unknown = sorted(set(raw) - _KNOWN_MOUNT_FIELDS)
        if unknown:
            raise InvalidArgument(f"{where}: unknown field(s) {', '.join(unknown)}")
        if raw.get("encryptOptions"):
            raise InvalidArgument(f"{where}.encryptOptions: not supported yet (use options)")
        mount_point = raw.get("mountPoint")
        if not isinstance(mount_point, str) or not mount_point:
            raise InvalidArgument(f"{where}.mountPoint: required, e.g. s3://bucket/dir")
        try:
            split_uri(mount_point)  # an unknown scheme or a malformed URI: one clear error
        except InvalidArgument as exc:
            raise type(exc)(f"{where}.mountPoint: {exc}") from None
        mount_name = raw.get("name") or _default_mount_name(mount_point, index)
        if not isinstance(mount_name, str) or not _MOUNT_NAME_RE.match(mount_name):
            raise InvalidArgument(
                f"{where}.name: {mount_name!r} must be letters, digits, '.', '_', '-'"
            )
        raw_path = raw.get("path")
        if raw_path is not None and not isinstance(raw_path, str):
            raise InvalidArgument(f"{where}.path: expected a string such as '/' or '/train'")
        if raw_path is None:
            raw_path = "/" if len(raw_mounts) == 1 else mount_name
        try:
            path = normalize_path(raw_path)
        except InvalidArgument as exc:
            raise type(exc)(f"{where}.path: {exc}") from None
        options = _parse_options(where, raw.get("options"))
        mounts.append(
            MountInfo(
                mount_id=mount_id_of(namespace, name, mount_name, mount_point),
                namespace=namespace,
                dataset=name,
                name=mount_name,
                uri=mount_point,
                path=path,
                options=options,
            )
        )
    _check_mount_layout(f"dataset {namespace}/{name}", mounts)
    return tuple(mounts)


def _check_mount_layout(where: str, mounts: list[MountInfo]) -> None:
    names: set[str] = set()
    for mount in mounts:
        if mount.name in names:
            raise InvalidArgument(f"{where}: two mounts are named {mount.name!r}")
        names.add(mount.name)
    if len(mounts) > 1 and any(mount.path == "" for mount in mounts):
        raise InvalidArgument(
            f"{where}: a mount at path '/' is the dataset root and must be the only mount"
        )
    for outer in mounts:
        for inner in mounts:
            if inner is outer:
                continue
            if inner.path == outer.path:
                raise InvalidArgument(
                    f"{where}: mounts {outer.name!r} and {inner.name!r} share path /{inner.path}"
                )
            if inner.path.startswith(outer.path + "/"):
                raise InvalidArgument(
                    f"{where}: mount {inner.name!r} at /{inner.path} is inside "
                    f"mount {outer.name!r} at /{outer.path}"
                )


class DatasetRegistry:
    """Datasets by ``(namespace, name)`` and mounts by id, persisted in ``home``.

    ``home=None`` keeps everything in memory (tests). Methods that write the
    file block briefly: call them from a thread when on an event loop.
    """

    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self._datasets: dict[tuple[str, str], DatasetRecord] = {}
        self._mounts: dict[str, MountInfo] = {}

    @property
    def path(self) -> Path | None:
        """The ``datasets.json`` file, or ``None`` in memory."""
        return None if self.home is None else self.home / DATASETS_FILE

    # -- reading ---------------------------------------------------------------

    def get(self, namespace: str, name: str) -> DatasetRecord:
        """The dataset ``namespace/name``; ``NotFound`` if there is none."""
        record = self._datasets.get((namespace, name))
        if record is None:
            raise NotFound(f"no dataset {namespace}/{name}")
        return record

    def datasets(self, namespace: str = "") -> list[DatasetRecord]:
        """Datasets of ``namespace`` (every namespace for ``""``), by namespace then name."""
        return [
            self._datasets[key]
            for key in sorted(self._datasets)
            if not namespace or key[0] == namespace
        ]

    def mount(self, mount_id: str) -> MountInfo:
        """The mount with ``mount_id``; ``NotFound`` if no dataset has it."""
        mount = self._mounts.get(mount_id)
        if mount is None:
            raise NotFound(f"no mount with id {mount_id!r}")
        return mount

    def mounts(self) -> list[MountInfo]:
        """Every mount of every dataset."""
        return list(self._mounts.values())

    # -- changes ---------------------------------------------------------------

    def validate(self, namespace: str, name: str, spec: Any) -> tuple[MountInfo, ...]:
        """Check ``spec`` for ``namespace/name`` without applying it; return its mounts."""
        check_ref(namespace, name)
        return parse_mounts(namespace, name, spec)

    def apply(self, namespace: str, name: str, spec: Any) -> tuple[DatasetRecord, bool]:
        """Create or update a dataset; return it and whether it was created.

        The file is written before the change shows, so a failed write changes
        nothing. Applying the same spec again keeps the generation.
        """
        mounts = self.validate(namespace, name, spec)
        old = self._datasets.get((namespace, name))
        if old is not None and old.spec == spec:
            return old, False
        record = DatasetRecord(
            namespace=namespace,
            name=name,
            spec=json.loads(json.dumps(spec)),  # a private deep copy
            mounts=mounts,
            generation=1 if old is None else old.generation + 1,
            created_ms=int(time.time() * 1000) if old is None else old.created_ms,
        )
        datasets = dict(self._datasets)
        datasets[(namespace, name)] = record
        self._save(datasets)
        self._install(datasets)
        log.info(
            "dataset %s %s (generation %d)",
            record.ref,
            "created" if old is None else "updated",
            record.generation,
        )
        return record, old is None

    def delete(self, namespace: str, name: str) -> DatasetRecord | None:
        """Remove a dataset; return it, or ``None`` when there was none."""
        old = self._datasets.get((namespace, name))
        if old is None:
            return None
        datasets = dict(self._datasets)
        del datasets[(namespace, name)]
        self._save(datasets)
        self._install(datasets)
        log.info("dataset %s deleted", old.ref)
        return old

    def _install(self, datasets: dict[tuple[str, str], DatasetRecord]) -> None:
        self._datasets = datasets
        self._mounts = {
            mount.mount_id: mount for record in datasets.values() for mount in record.mounts
        }

    # -- persistence -----------------------------------------------------------

    def _save(self, datasets: Mapping[tuple[str, str], DatasetRecord]) -> None:
        path = self.path
        if path is None:
            return
        document = {
            "version": FILE_FORMAT_VERSION,
            "datasets": [
                {
                    "namespace": record.namespace,
                    "name": record.name,
                    "generation": record.generation,
                    "created_ms": record.created_ms,
                    "spec": record.spec,
                }
                for _, record in sorted(datasets.items())
            ],
        }
        data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file:
                os.fchmod(fd, 0o600)  # also when the file existed with wider bits
                file.write(data)
                file.flush()
                os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def load(self) -> int:
        """Read ``datasets.json`` if it exists; return how many datasets it held.

        A file that cannot be read back (bad JSON, an invalid spec) is a
        ``ConfigError`` naming the file: starting without its datasets would
        lose them at the next write.
        """
        path = self.path
        if path is None or not path.exists():
            return 0
        where = str(path)
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(where, f"cannot be read: {exc}") from exc
        if not isinstance(document, dict) or document.get("version") != FILE_FORMAT_VERSION:
            raise ConfigError(where, f"expected format version {FILE_FORMAT_VERSION}")
        datasets: dict[tuple[str, str], DatasetRecord] = {}
        for entry in document.get("datasets", []):
            try:
                namespace, name = str(entry["namespace"]), str(entry["name"])
                spec = entry["spec"]
                mounts = self.validate(namespace, name, spec)
                datasets[(namespace, name)] = DatasetRecord(
                    namespace=namespace,
                    name=name,
                    spec=spec,
                    mounts=mounts,
                    generation=int(entry.get("generation", 1)),
                    created_ms=int(entry.get("created_ms", 0)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(where, f"bad dataset entry {entry!r}: {exc}") from exc
        self._install(datasets)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return len(datasets)
