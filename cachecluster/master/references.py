"""Reference datasets: a dataset whose single mount is ``dataset://<ns>/<name>[/subpath]``.

A reference reads the *source* dataset's mounts (the same mount ids, so the
same block ids and the same cached blocks) restricted to ``subpath``; it has
no mount, no backend and no cache of its own. Rules:

* a reference must not point at another reference (no chains): the error
  names both datasets;
* a reference is read-only when its source is (:func:`effective_access_modes`);
* a source cannot be deleted while referenced (:func:`check_deletable` lists
  the referrers);
* ``subpath`` is normalised; ``..`` escaping the source is refused.

The registry keeps ``DatasetRecord.reference`` (``(namespace, name, subpath)``
or ``None``); this module only reads the registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.common.paths import normalize_path

if TYPE_CHECKING:
    from cachecluster.master.datasets import DatasetRecord

SCHEME = "dataset://"
DEFAULT_ACCESS_MODES = ("ReadOnlyMany",)


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetReference:
    """Where a reference dataset points: ``namespace/name`` and a subpath ("" = all)."""

    namespace: str
    name: str
    subpath: str = ""

    @property
    def ref(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def uri(self) -> str:
        """The ``dataset://`` form."""
        tail = f"/{self.subpath}" if self.subpath else ""
        return f"{SCHEME}{self.namespace}/{self.name}{tail}"


class _Registry(Protocol):
    def get(self, namespace: str, name: str) -> DatasetRecord: ...

    def datasets(self, namespace: str = "") -> list[DatasetRecord]: ...


def is_reference_uri(mount_point: str) -> bool:
    """Whether ``mount_point`` uses the ``dataset://`` scheme."""
    return mount_point.startswith(SCHEME)


def parse_reference(mount_point: str) -> DatasetReference:
    """``dataset://<ns>/<name>[/subpath]`` as a :class:`DatasetReference`.

    Anything else is an ``InvalidArgument`` saying the expected form; a subpath
    escaping the source (``..``) is refused.
    """
    form = "must be dataset://<namespace>/<name>[/subpath]"
    if not is_reference_uri(mount_point):
        raise InvalidArgument(f"{mount_point!r} {form}")
    rest = mount_point[len(SCHEME) :]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"{mount_point!r} {form}")
    namespace, name = parts[0], parts[1]
    try:
        subpath = normalize_path(parts[2]) if len(parts) == 3 else ""
    except InvalidArgument as exc:
        raise InvalidArgument(f"{mount_point!r}: subpath {exc}") from None
    return DatasetReference(namespace, name, subpath)


def reference_of(record: DatasetRecord) -> DatasetReference | None:
    """The reference of ``record``, or ``None`` for a dataset with mounts of its own.

    Reads ``record.reference`` (a :class:`DatasetReference` or an
    ``(ns, name, subpath)`` tuple) when the registry sets it, else the spec's
    single ``dataset://`` mount.
    """
    value: Any = getattr(record, "reference", None)
    if value is not None:
        if isinstance(value, DatasetReference):
            return value
        namespace, name, subpath = value
        return DatasetReference(str(namespace), str(name), normalize_path(str(subpath or "")))
    mounts = record.spec.get("mounts") if isinstance(record.spec, dict) else None
    if isinstance(mounts, list) and len(mounts) == 1 and isinstance(mounts[0], dict):
        point = mounts[0].get("mountPoint")
        if isinstance(point, str) and is_reference_uri(point):
            return parse_reference(point)
    return None


def resolve_source(registry: _Registry, record: DatasetRecord) -> tuple[DatasetRecord, str]:
    """``(dataset whose mounts serve record, subpath inside it)``.

    A dataset with mounts of its own is its own source (subpath ``""``). A
    missing source is ``NotFound``; a source that is itself a reference is an
    ``InvalidArgument`` naming both.
    """
    reference = reference_of(record)
    if reference is None:
        return record, ""
    try:
        source = registry.get(reference.namespace, reference.name)
    except NotFound:
        raise NotFound(
            f"dataset {record.ref} references {reference.ref}, which does not exist"
        ) from None
    if reference_of(source) is not None:
        raise InvalidArgument(_chain_message(record.ref, source))
    return source, reference.subpath


def _chain_message(referrer: str, source: DatasetRecord) -> str:
    inner = reference_of(source)
    target = inner.uri if inner is not None else "?"
    return (
        f"dataset {referrer} references {source.ref}, which is itself a reference "
        f"(to {target}): references cannot chain; reference the source dataset directly"
    )


def check_reference(
    registry: _Registry, namespace: str, name: str, reference: DatasetReference | None
) -> None:
    """Refuse applying ``namespace/name`` with ``reference`` when it would break a rule.

    * a reference to itself, to a missing dataset or to another reference;
    * turning a dataset that others reference into a reference (a chain).
    """
    ref = f"{namespace}/{name}"
    if reference is not None:
        if (reference.namespace, reference.name) == (namespace, name):
            raise InvalidArgument(f"dataset {ref} cannot reference itself")
        try:
            source = registry.get(reference.namespace, reference.name)
        except NotFound:
            raise NotFound(
                f"dataset {ref} references {reference.ref}, which does not exist "
                "(apply the source dataset first)"
            ) from None
        if reference_of(source) is not None:
            raise InvalidArgument(_chain_message(ref, source))
        users = referrers(registry, namespace, name)
        if users:
            raise InvalidArgument(
                f"dataset {ref} is referenced by {', '.join(users)}: it cannot become a "
                "reference itself (references cannot chain)"
            )


def referrers(registry: _Registry, namespace: str, name: str) -> list[str]:
    """``ns/name`` of every dataset referencing ``namespace/name``, sorted."""
    found: list[str] = []
    for record in registry.datasets():
        try:
            reference = reference_of(record)
        except InvalidArgument:
            continue
        if reference is not None and (reference.namespace, reference.name) == (namespace, name):
            found.append(record.ref)
    return sorted(found)


def check_deletable(registry: _Registry, namespace: str, name: str) -> None:
    """Refuse deleting ``namespace/name`` while other datasets reference it."""
    users = referrers(registry, namespace, name)
    if users:
        raise InvalidArgument(
            f"dataset {namespace}/{name} cannot be deleted: referenced by "
            f"{', '.join(users)} (delete those first)"
        )


def access_modes_of(spec: Any) -> tuple[str, ...]:
    """``spec.accessModes``, default ``ReadOnlyMany``."""
    modes = spec.get("accessModes") if isinstance(spec, dict) else None
    if isinstance(modes, list) and modes:
        return tuple(str(mode) for mode in modes)
    return DEFAULT_ACCESS_MODES


def is_read_only(modes: Iterable[str]) -> bool:
    """Whether access modes allow no writes."""
    return all(mode.startswith("ReadOnly") for mode in modes)


def effective_access_modes(registry: _Registry, record: DatasetRecord) -> tuple[str, ...]:
    """The access modes that apply to ``record``: a reference is read-only when its source is."""
    own = access_modes_of(record.spec)
    reference = reference_of(record)
    if reference is None:
        return own
    try:
        source, _ = resolve_source(registry, record)
    except (NotFound, InvalidArgument):
        return DEFAULT_ACCESS_MODES
    source_modes = access_modes_of(source.spec)
    if is_read_only(source_modes):
        return tuple(sorted({m for m in own if m.startswith("ReadOnly")} or DEFAULT_ACCESS_MODES))
    return own


def restrict(paths: Sequence[str], subpath: str) -> list[str]:
    """The paths at or below ``subpath`` ("" keeps all)."""
    if not subpath:
        return list(paths)
    return [path for path in paths if path == subpath or path.startswith(subpath + "/")]
