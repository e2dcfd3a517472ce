"""The dataset registry of the master: specs, their mounts, and where they are kept.

A dataset is a Fluid ``Dataset`` ``spec`` (validated by
:class:`cachecluster.api.DatasetSpec`)::

    {"mounts": [{"mountPoint": "s3://bucket/dir", "name": "m0", "path": "/",
                 "options": {"fs.s3.endpoint": "http://..."},
                 "encryptOptions": [{"name": "fs.s3.accessKeySecret", "valueFrom":
                     {"secretKeyRef": {"name": "creds", "key": "secret"}}}]}],
     "sharedOptions": {...}, "sharedEncryptOptions": [...],
     "accessModes": ["ReadOnlyMany"], "runtimes": [{"name": "r", "namespace": "ns"}]}

Each mount gets a stable ``mount_id``: the first 16 hex chars of blake2b over
``namespace \\0 dataset \\0 mount name \\0 mountPoint``. Block ids include it,
so two datasets over one bucket never share blocks by accident, and blocks
stay valid across master restarts.

Inside a dataset, a mount with path ``/`` (or the only mount, when it has no
path) is the dataset root and must then be the only mount; every other mount
appears at ``/<path>`` (default ``/<name>``). Mount paths may not nest.

A mount's options are ``sharedOptions``, its ``options``, and its
``sharedEncryptOptions``/``encryptOptions`` resolved from the master's
:class:`~cachecluster.master.secrets.SecretStore` (the dataset's namespace).
Resolved options live in :class:`MountInfo` only (master backends and
``GetMount`` for workers); the spec keeps references, and
:meth:`DatasetRecord.public_spec` masks option keys that look like credentials.

A reference dataset (one ``dataset://<ns>/<name>[/subpath]`` mount) has no
mounts of its own; ``DatasetRecord.reference`` says what it points at (its
rules live in :mod:`cachecluster.master.references`). ``DatasetRecord.runtime``
is the runtime it binds to (:func:`cachecluster.master.runtimes.binding_of`).

Specs persist in ``<home>/datasets.json`` (mode 0600), written atomically
after each change and read back at start.
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

from cachecluster.api.models import MASK, DatasetSpec, is_secret_key, mask_options
from cachecluster.common.errors import ConfigError, InvalidArgument, NotFound
from cachecluster.common.private_file import write_private_json
from cachecluster.master.references import DatasetReference, check_deletable, check_reference
from cachecluster.master.runtimes import DEFAULT_RUNTIME, RuntimeRegistry, binding_of
from cachecluster.master.secrets import SecretStore

log = logging.getLogger(__name__)

DATASETS_FILE = "datasets.json"
FILE_FORMAT_VERSION = 1

_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


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
    options: Mapping[str, str] = dataclasses.field(repr=False)
    """May hold credentials: never in ``repr`` (log lines), only in ``GetMount``."""


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetRecord:
    """A registered dataset: its spec as applied and the mounts derived from it."""

    namespace: str
    name: str
    spec: Mapping[str, Any]
    mounts: tuple[MountInfo, ...]
    generation: int
    created_ms: int
    reference: tuple[str, str, str] | None = None
    """``(namespace, name, subpath)`` of the source, for a reference dataset."""
    runtime: tuple[str, str] = DEFAULT_RUNTIME
    """The runtime ``(namespace, name)`` serving it; ``("", "")``: the running cluster."""
    access_modes: tuple[str, ...] = ("ReadOnlyMany",)

    @property
    def ref(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def runtime_ref(self) -> str:
        """``namespace/name`` of the bound runtime, or ``default`` (the running cluster)."""
        return "/".join(self.runtime) if self.runtime != DEFAULT_RUNTIME else "default"

    def public_spec(self) -> dict[str, Any]:
        """The spec as clients may see it: encrypt options stay references (no values) and
        ``options``/``sharedOptions`` keys that look like credentials are masked."""
        spec: dict[str, Any] = json.loads(json.dumps(self.spec))
        if isinstance(spec.get("sharedOptions"), dict):
            spec["sharedOptions"] = mask_options(spec["sharedOptions"])
        for mount in spec.get("mounts") or []:
            if isinstance(mount, dict) and isinstance(mount.get("options"), dict):
                mount["options"] = mask_options(mount["options"])
        return spec

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


def parse_mounts(
    namespace: str, name: str, spec: Any, secrets: SecretStore | None = None
) -> tuple[MountInfo, ...]:
    """Validate a dataset ``spec`` and derive its mounts; one clear error for each mistake.

    Each mount's options are ``sharedOptions``, then its own ``options``, then
    its ``sharedEncryptOptions`` and ``encryptOptions`` resolved from
    ``secrets`` (of the dataset's namespace). A reference dataset has no mounts.
    """
    return _derive(namespace, name, _parse_spec(namespace, name, spec), secrets or SecretStore())


def _parse_spec(namespace: str, name: str, spec: Any) -> DatasetSpec:
    if not isinstance(spec, dict):
        raise InvalidArgument(f"dataset {namespace}/{name}: the spec must be a JSON object")
    return DatasetSpec.from_dict(spec, f"dataset {namespace}/{name}")


def _derive(
    namespace: str, name: str, parsed: DatasetSpec, secrets: SecretStore
) -> tuple[MountInfo, ...]:
    if parsed.reference is not None:
        return ()
    where = f"dataset {namespace}/{name}"
    shared_secret = {
        item.name: secrets.value(
            namespace,
            item.secret_name,
            item.secret_key,
            f"{where}: spec.sharedEncryptOptions[{i}].valueFrom.secretKeyRef",
        )
        for i, item in enumerate(parsed.shared_encrypt_options)
    }
    single = len(parsed.mounts) == 1
    mounts: list[MountInfo] = []
    for index, mount in enumerate(parsed.mounts):
        options = {**parsed.shared_options, **mount.options, **shared_secret}
        for i, item in enumerate(mount.encrypt_options):
            options[item.name] = secrets.value(
                namespace,
                item.secret_name,
                item.secret_key,
                f"{where}: spec.mounts[{index}].encryptOptions[{i}].valueFrom.secretKeyRef",
            )
        mount_name = mount.effective_name(index)
        mounts.append(
            MountInfo(
                mount_id=mount_id_of(namespace, name, mount_name, mount.mount_point),
                namespace=namespace,
                dataset=name,
                name=mount_name,
                uri=mount.mount_point,
                path=mount.effective_path(index, single),
                options=options,
            )
        )
    return tuple(mounts)


class _NoSecrets(SecretStore):
    """Resolves every encrypt option to nothing (a dataset whose secret is gone)."""

    def value(self, namespace: str, name: str, key: str, field: str = "") -> str:
        return ""


class DatasetRegistry:
    """Datasets by ``(namespace, name)`` and mounts by id, persisted in ``home``.

    ``home=None`` keeps everything in memory (tests). Methods that write the
    file block briefly: call them from a thread when on an event loop.
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        secrets: SecretStore | None = None,
        runtimes: RuntimeRegistry | None = None,
    ) -> None:
        self.home = home
        self.secrets = secrets if secrets is not None else SecretStore()
        self.runtimes = runtimes if runtimes is not None else RuntimeRegistry()
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
        """Check ``spec`` for ``namespace/name`` without applying it; return its mounts.

        Secrets must exist with the keys the spec names; the rules between
        datasets (references) are :mod:`cachecluster.master.references`'.
        """
        check_ref(namespace, name)
        return parse_mounts(namespace, name, self.unmask(namespace, name, spec), self.secrets)

    def unmask(self, namespace: str, name: str, spec: Any) -> Any:
        """``spec`` with each ``***`` option value (as answers mask them) put back from the
        applied spec, so that a client that read a spec and sends it back changes no secret."""
        old = self._datasets.get((namespace, name))
        if old is None or not isinstance(spec, dict):
            return spec
        spec = json.loads(json.dumps(spec))

        def restore(new: Any, previous: Any) -> None:
            if not isinstance(new, dict) or not isinstance(previous, dict):
                return
            for key, value in new.items():
                if value == MASK and key in previous and is_secret_key(key):
                    new[key] = previous[key]

        restore(spec.get("sharedOptions"), old.spec.get("sharedOptions"))
        old_mounts = {
            (m.get("name"), m.get("mountPoint")): m
            for m in old.spec.get("mounts") or []
            if isinstance(m, dict)
        }
        for mount in spec.get("mounts") or []:
            if isinstance(mount, dict):
                previous = old_mounts.get((mount.get("name"), mount.get("mountPoint")))
                restore(mount.get("options"), (previous or {}).get("options"))
        return spec

    def _record(
        self,
        namespace: str,
        name: str,
        spec: Any,
        generation: int,
        created_ms: int,
        mounts: tuple[MountInfo, ...] | None = None,
    ) -> DatasetRecord:
        parsed = _parse_spec(namespace, name, spec)
        if mounts is None:
            mounts = _derive(namespace, name, parsed, self.secrets)
        source = parsed.reference
        return DatasetRecord(
            namespace=namespace,
            name=name,
            spec=spec,
            mounts=mounts,
            generation=generation,
            created_ms=created_ms,
            reference=None if source is None else (source.namespace, source.name, source.subpath),
            runtime=binding_of(namespace, name, parsed, self.runtimes.keys()),
            access_modes=parsed.access_modes,
        )

    def apply(self, namespace: str, name: str, spec: Any) -> tuple[DatasetRecord, bool]:
        """Create or update a dataset; return it and whether it was created.

        The file is written before the change shows, so a failed write changes
        nothing. Applying the same spec again keeps the generation.
        """
        spec = self.unmask(namespace, name, spec)
        mounts = self.validate(namespace, name, spec)
        source = _parse_spec(namespace, name, spec).reference
        check_reference(
            self,
            namespace,
            name,
            None
            if source is None
            else DatasetReference(source.namespace, source.name, source.subpath),
        )
        old = self._datasets.get((namespace, name))
        if old is not None and old.spec == spec and old.mounts == mounts:
            return old, False
        record = self._record(
            namespace,
            name,
            json.loads(json.dumps(spec)),  # a private deep copy
            generation=1 if old is None else old.generation + (old.spec != spec),
            created_ms=int(time.time() * 1000) if old is None else old.created_ms,
            mounts=mounts,
        )
        datasets = dict(self._datasets)
        datasets[(namespace, name)] = record
        self._save(datasets)
        self._install(datasets)
        log.info(
            "dataset %s %s (generation %d, runtime %s)",
            record.ref,
            "created" if old is None else "updated",
            record.generation,
            record.runtime_ref,
        )
        return record, old is None

    def secret_users(self, namespace: str, name: str) -> list[str]:
        """``ns/name`` of the datasets whose encrypt options read secret ``namespace/name``."""
        users = []
        for record in self.datasets(namespace):
            parsed = _parse_spec(record.namespace, record.name, record.spec)
            if any(secret == name for _, secret, _key in parsed.secret_refs()):
                users.append(record.ref)
        return users

    def refresh(self) -> list[str]:
        """Resolve every dataset's secrets and runtime binding again (after a secret or a
        runtime changed); return the datasets whose secrets no longer resolve (kept as they were).
        """
        failed: list[str] = []
        datasets: dict[tuple[str, str], DatasetRecord] = {}
        for key, record in self._datasets.items():
            try:
                datasets[key] = self._record(
                    record.namespace, record.name, record.spec, record.generation, record.created_ms
                )
            except InvalidArgument as exc:
                log.warning("dataset %s: %s", record.ref, exc)
                failed.append(record.ref)
                datasets[key] = record
        self._install(datasets)
        return failed

    def delete(self, namespace: str, name: str) -> DatasetRecord | None:
        """Remove a dataset; return it, or ``None`` when there was none."""
        old = self._datasets.get((namespace, name))
        if old is None:
            return None
        check_deletable(self, namespace, name)  # not while references point at it
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
        write_private_json(path, document)

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
                check_ref(namespace, name)
                generation = int(entry.get("generation", 1))
                created_ms = int(entry.get("created_ms", 0))
                try:
                    record = self._record(namespace, name, spec, generation, created_ms)
                except ConfigError as exc:
                    if "secret" not in exc.reason:
                        raise
                    # A secret went missing: serve the dataset without it, say so.
                    log.warning("%s: %s", where, exc)
                    parsed = _parse_spec(namespace, name, spec)
                    mounts = _derive(namespace, name, parsed, _NoSecrets())
                    record = self._record(namespace, name, spec, generation, created_ms, mounts)
                datasets[(namespace, name)] = record
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(where, f"bad dataset entry {entry!r}: {exc}") from exc
        self._install(datasets)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return len(datasets)
