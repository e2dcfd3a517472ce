"""The user's documents as dataclasses: Dataset, CacheRuntime, DataLoad, Secret.

Field names follow Fluid (``mountPoint``, ``encryptOptions``,
``tieredstore.levels``...). Each ``from_dict(d, where)`` validates a ``spec``
and raises one :class:`~cachecluster.common.errors.ConfigError` whose field
starts with ``where`` (e.g. ``ds.yaml doc 2 (Dataset ref/ref-dataset)``) and
goes on with the field path (``spec.mounts[0].mountPoint``). ``to_dict()``
gives back the spec in Fluid's form; ``from_dict(x.to_dict())`` equals ``x``.

Checks that need other objects (a secret exists, a reference does not point
to a reference) belong to the master; everything else is checked here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from croniter import croniter

from cachecluster.common.errors import ConfigError, InvalidArgument
from cachecluster.common.paths import normalize_path
from cachecluster.ufs.registry import split_uri
from cachecluster.worker.tiers import TierConfig, tiers_from_levels

DEFAULT_NAMESPACE = "default"
REFERENCE_SCHEME = "dataset://"
ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
DEFAULT_ACCESS_MODES = ("ReadOnlyMany",)
POLICIES = ("Once", "Cron")

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_MOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
_SECRET_WORDS = ("secret", "key", "token", "password")

_MOUNT_FIELDS = frozenset({"mountPoint", "name", "path", "options", "encryptOptions", "readOnly"})
_DATASET_FIELDS = frozenset(
    {"mounts", "sharedOptions", "sharedEncryptOptions", "accessModes", "runtimes"}
)
# Fluid fields that mean nothing in a cache cluster: accepted, kept, not used.
_DATASET_IGNORED = frozenset(
    {"owner", "nodeAffinity", "tolerations", "placement", "dataRestoreLocation"}
)
_RUNTIME_REF_FIELDS = frozenset({"name", "namespace", "category", "type", "masterReplicas"})
_RUNTIME_FIELDS = frozenset({"replicas", "tieredstore", "master", "worker", "fuse"})
_COMPONENTS = ("master", "worker", "fuse")
_COMPONENT_FIELDS = frozenset({"resources", "nodeSelector", "env", "tolerations", "podMetadata"})
_POD_METADATA_FIELDS = frozenset({"labels", "annotations"})
_RESOURCE_KEYS = ("requests", "limits")
_TOLERATION_FIELDS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_QUANTITY_RE = re.compile(
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
)
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DATALOAD_FIELDS = frozenset(
    {"dataset", "target", "loadMetadata", "policy", "schedule", "ttlSecondsAfterFinished"}
)


def is_secret_key(key: str) -> bool:
    """True when an option key looks like it holds a credential (masked in answers and logs)."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


MASK = "***"


def mask_options(options: Mapping[str, str]) -> dict[str, str]:
    """``options`` with the values of credential-looking keys replaced by ``***``."""
    return {key: MASK if is_secret_key(key) else value for key, value in options.items()}


def check_name(field: str, value: Any, *, label: bool = False) -> str:
    """A Kubernetes name (DNS-1123 subdomain, or label when ``label``); else ``ConfigError``."""
    pattern = _DNS_LABEL_RE if label else _DNS_SUBDOMAIN_RE
    if not isinstance(value, str) or not value:
        raise ConfigError(field, "is required")
    if not pattern.match(value):
        what = "a DNS-1123 label" if label else "a DNS-1123 subdomain"
        raise ConfigError(
            field, f"{value!r} is not {what} (lowercase letters, digits, '-'; at most 63)"
        )
    return value


def _mapping(field: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(field, f"expected a mapping, got {type(value).__name__}")
    return value


def _list(field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(field, f"expected a list, got {type(value).__name__}")
    return value


def _unknown(field: str, raw: Mapping[str, Any], known: frozenset[str]) -> None:
    extra = sorted(str(key) for key in raw if key not in known)
    if extra:
        raise ConfigError(
            f"{field}.{extra[0]}", f"unknown field (known: {', '.join(sorted(known))})"
        )


def _string_map(field: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    options: dict[str, str] = {}
    for key, value in _mapping(field, raw).items():
        if not isinstance(value, str):
            raise ConfigError(
                f"{field}.{key}",
                f"expected a string, got {type(value).__name__} (quote numbers and booleans)",
            )
        options[str(key)] = value
    return options


def _clean_path(field: str, value: str) -> str:
    """``value`` normalised; any ``..`` element is refused (not only escaping ones)."""
    if ".." in value.split("/"):
        raise ConfigError(field, f"{value!r} may not contain '..'")
    try:
        return normalize_path(value)
    except InvalidArgument as exc:
        raise ConfigError(field, str(exc)) from None


# ------------------------------------------------------------------ Dataset


@dataclasses.dataclass(frozen=True, slots=True)
class EncryptOption:
    """An option whose value comes from a secret: ``valueFrom.secretKeyRef``."""

    name: str
    secret_name: str
    secret_key: str

    @classmethod
    def from_dict(cls, raw: Any, field: str) -> EncryptOption:
        raw = _mapping(field, raw)
        _unknown(field, raw, frozenset({"name", "valueFrom"}))
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{field}.name", "is required (the option it sets)")
        ref = raw.get("valueFrom")
        ref = ref.get("secretKeyRef") if isinstance(ref, Mapping) else None
        if not isinstance(ref, Mapping):
            raise ConfigError(f"{field}.valueFrom.secretKeyRef", "is required (name and key)")
        for part in ("name", "key"):
            if not isinstance(ref.get(part), str) or not ref.get(part):
                raise ConfigError(f"{field}.valueFrom.secretKeyRef.{part}", "is required")
        check_name(f"{field}.valueFrom.secretKeyRef.name", ref["name"])
        return cls(name, ref["name"], ref["key"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": self.secret_key}},
        }


def _encrypt_options(field: str, raw: Any) -> tuple[EncryptOption, ...]:
    if raw is None:
        return ()
    items = tuple(
        EncryptOption.from_dict(item, f"{field}[{i}]") for i, item in enumerate(_list(field, raw))
    )
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.name in seen:
            raise ConfigError(f"{field}[{i}].name", f"{item.name!r} is set twice")
        seen.add(item.name)
    return items


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    """What a ``dataset://<namespace>/<name>[/subpath]`` mount points at."""

    namespace: str
    name: str
    subpath: str = ""
    """Normalised, without a leading slash; ``""`` is the whole source dataset."""


def parse_reference(mount_point: str, field: str) -> Reference:
    """Split a ``dataset://`` mount point; one ``ConfigError`` when it is malformed."""
    form = "must be dataset://<namespace>/<name>[/subpath]"
    rest = mount_point[len(REFERENCE_SCHEME) :]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(field, f"{mount_point!r} {form}")
    namespace, name = parts[0], parts[1]
    if not _DNS_LABEL_RE.match(namespace) or not _DNS_SUBDOMAIN_RE.match(name):
        raise ConfigError(field, f"{mount_point!r} {form} (Kubernetes names)")
    subpath = _clean_path(field, parts[2]) if len(parts) == 3 else ""
    return Reference(namespace, name, subpath)


@dataclasses.dataclass(frozen=True, slots=True)
class Mount:
    """One ``spec.mounts[]`` entry as written (``name``/``path`` None when absent)."""

    mount_point: str
    name: str | None = None
    path: str | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    encrypt_options: tuple[EncryptOption, ...] = ()
    read_only: bool | None = None

    @property
    def is_reference(self) -> bool:
        return self.mount_point.startswith(REFERENCE_SCHEME)

    @property
    def reference(self) -> Reference | None:
        """The referenced dataset, for a ``dataset://`` mount (already validated)."""
        if not self.is_reference:
            return None
        return parse_reference(self.mount_point, "mountPoint")

    def effective_name(self, index: int) -> str:
        """``name``, else the last element of the mount point (Fluid's default), else ``m<i>``."""
        if self.name:
            return self.name
        tail = self.mount_point.partition("://")[2].rstrip("/").rsplit("/", 1)[-1]
        return tail if _MOUNT_NAME_RE.match(tail) else f"m{index}"

    def effective_path(self, index: int, single: bool) -> str:
        """Where the mount appears in the dataset, normalised (``""`` is the root)."""
        if self.path is not None:
            return normalize_path(self.path)
        return "" if single else normalize_path(self.effective_name(index))

    @classmethod
    def from_dict(cls, raw: Any, field: str) -> Mount:
        raw = _mapping(field, raw)
        _unknown(field, raw, _MOUNT_FIELDS)
        mount_point = raw.get("mountPoint")
        if not isinstance(mount_point, str) or not mount_point:
            raise ConfigError(f"{field}.mountPoint", "is required, e.g. s3://bucket/dir")
        if mount_point.startswith(REFERENCE_SCHEME):
            parse_reference(mount_point, f"{field}.mountPoint")
        else:
            try:
                split_uri(mount_point)
            except InvalidArgument as exc:
                raise ConfigError(f"{field}.mountPoint", str(exc)) from None
        name = raw.get("name")
        if name is not None and (not isinstance(name, str) or not _MOUNT_NAME_RE.match(name)):
            raise ConfigError(f"{field}.name", f"{name!r} must be letters, digits, '.', '_', '-'")
        path = raw.get("path")
        if path is not None:
            if not isinstance(path, str):
                raise ConfigError(f"{field}.path", "expected a string such as '/' or '/train'")
            _clean_path(f"{field}.path", path)
        read_only = raw.get("readOnly")
        if read_only is not None and not isinstance(read_only, bool):
            raise ConfigError(f"{field}.readOnly", f"expected true or false, got {read_only!r}")
        return cls(
            mount_point=mount_point,
            name=name or None,
            path=path,
            options=_string_map(f"{field}.options", raw.get("options")),
            encrypt_options=_encrypt_options(f"{field}.encryptOptions", raw.get("encryptOptions")),
            read_only=read_only,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mountPoint": self.mount_point}
        if self.name is not None:
            out["name"] = self.name
        if self.path is not None:
            out["path"] = self.path
        if self.options:
            out["options"] = dict(self.options)
        if self.encrypt_options:
            out["encryptOptions"] = [item.to_dict() for item in self.encrypt_options]
        if self.read_only is not None:
            out["readOnly"] = self.read_only
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeRef:
    """A ``spec.runtimes[]`` entry: the runtime a dataset asks to be served by."""

    name: str
    namespace: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name}
        if self.namespace is not None:
            out["namespace"] = self.namespace
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A Dataset ``spec``: its mounts and the options every mount shares."""

    mounts: tuple[Mount, ...]
    shared_options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    shared_encrypt_options: tuple[EncryptOption, ...] = ()
    access_modes: tuple[str, ...] = DEFAULT_ACCESS_MODES
    runtimes: tuple[RuntimeRef, ...] = ()
    ignored: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Fluid fields with no meaning here (``nodeAffinity``...), kept for ``to_dict``."""

    @property
    def reference(self) -> Reference | None:
        """The source of a reference dataset (a single ``dataset://`` mount), else None."""
        return self.mounts[0].reference if self.mounts[0].is_reference else None

    @property
    def read_only(self) -> bool:
        """True unless an access mode allows writes."""
        return not any(mode.startswith("ReadWrite") for mode in self.access_modes)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "dataset") -> DatasetSpec:
        """Validate a Dataset ``spec``; errors read ``<where>: spec.<field>: <reason>``."""
        if raw is None:
            raw = {}
        raw = _mapping(f"{where}: spec", raw)
        _unknown(f"{where}: spec", raw, _DATASET_FIELDS | _DATASET_IGNORED)
        raw_mounts = raw.get("mounts")
        if not isinstance(raw_mounts, list) or not raw_mounts:
            raise ConfigError(f"{where}: spec.mounts", "must be a non-empty list")
        mounts = tuple(
            Mount.from_dict(item, f"{where}: spec.mounts[{i}]") for i, item in enumerate(raw_mounts)
        )
        if any(mount.is_reference for mount in mounts) and len(mounts) > 1:
            index = next(i for i, mount in enumerate(mounts) if mount.is_reference)
            raise ConfigError(
                f"{where}: spec.mounts[{index}].mountPoint",
                "a dataset:// reference must be the only mount of its dataset",
            )
        _check_layout(where, mounts)
        access = raw.get("accessModes")
        if access is None:
            access_modes = DEFAULT_ACCESS_MODES
        else:
            access_modes = tuple(_list(f"{where}: spec.accessModes", access))
            for i, mode in enumerate(access_modes):
                if mode not in ACCESS_MODES:
                    raise ConfigError(
                        f"{where}: spec.accessModes[{i}]",
                        f"unknown access mode {mode!r} (expected one of {', '.join(ACCESS_MODES)})",
                    )
            if not access_modes:
                raise ConfigError(f"{where}: spec.accessModes", "may not be empty")
        runtimes: list[RuntimeRef] = []
        for i, item in enumerate(_list(f"{where}: spec.runtimes", raw.get("runtimes") or [])):
            field = f"{where}: spec.runtimes[{i}]"
            item = _mapping(field, item)
            _unknown(field, item, _RUNTIME_REF_FIELDS)
            name = check_name(f"{field}.name", item.get("name"))
            namespace = item.get("namespace")
            if namespace is not None:
                check_name(f"{field}.namespace", namespace, label=True)
            runtimes.append(RuntimeRef(name, namespace))
        return cls(
            mounts=mounts,
            shared_options=_string_map(f"{where}: spec.sharedOptions", raw.get("sharedOptions")),
            shared_encrypt_options=_encrypt_options(
                f"{where}: spec.sharedEncryptOptions", raw.get("sharedEncryptOptions")
            ),
            access_modes=access_modes,
            runtimes=tuple(runtimes),
            ignored={key: raw[key] for key in sorted(_DATASET_IGNORED) if key in raw},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mounts": [mount.to_dict() for mount in self.mounts]}
        if self.shared_options:
            out["sharedOptions"] = dict(self.shared_options)
        if self.shared_encrypt_options:
            out["sharedEncryptOptions"] = [item.to_dict() for item in self.shared_encrypt_options]
        if self.access_modes != DEFAULT_ACCESS_MODES:
            out["accessModes"] = list(self.access_modes)
        if self.runtimes:
            out["runtimes"] = [item.to_dict() for item in self.runtimes]
        out.update(self.ignored)
        return out

    def secret_refs(self) -> list[tuple[str, str, str]]:
        """``(field, secret name, key)`` for every encrypt option, shared ones first."""
        refs = [
            (f"spec.sharedEncryptOptions[{i}]", item.secret_name, item.secret_key)
            for i, item in enumerate(self.shared_encrypt_options)
        ]
        for m, mount in enumerate(self.mounts):
            refs.extend(
                (f"spec.mounts[{m}].encryptOptions[{i}]", item.secret_name, item.secret_key)
                for i, item in enumerate(mount.encrypt_options)
            )
        return refs


def _check_layout(where: str, mounts: tuple[Mount, ...]) -> None:
    names: dict[str, int] = {}
    paths: list[tuple[str, int]] = []
    single = len(mounts) == 1
    for i, mount in enumerate(mounts):
        field = f"{where}: spec.mounts[{i}]"
        name = mount.effective_name(i)
        if name in names:
            raise ConfigError(
                f"{field}.name", f"{name!r} is already the name of spec.mounts[{names[name]}]"
            )
        names[name] = i
        path = mount.effective_path(i, single)
        if path == "" and not single:
            raise ConfigError(f"{field}.path", "'/' is the dataset root: it must be the only mount")
        for other, j in paths:
            if path == other:
                raise ConfigError(f"{field}.path", f"/{path} is also the path of spec.mounts[{j}]")
            if path.startswith(other + "/") or other.startswith(path + "/"):
                raise ConfigError(
                    f"{field}.path", f"/{path} and spec.mounts[{j}] at /{other} are nested"
                )
        paths.append((path, i))


# ------------------------------------------------------------------ CacheRuntime


@dataclasses.dataclass(frozen=True, slots=True)
class EnvVar:
    """One ``env`` entry of a component: a literal ``value`` or a Kubernetes ``valueFrom``."""

    name: str
    value: str | None = None
    value_from: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.value_from is not None:
            out["valueFrom"] = dict(self.value_from)
        else:
            out["value"] = self.value or ""
        return out


def _resources(field: str, raw: Any) -> dict[str, dict[str, str]]:
    """``resources``: ``requests``/``limits`` of quantities (numbers become strings)."""
    if raw is None:
        return {}
    resources: dict[str, dict[str, str]] = {}
    for key, amounts in _mapping(field, raw).items():
        if key not in _RESOURCE_KEYS:
            raise ConfigError(f"{field}.{key}", "unknown field (known: limits, requests)")
        checked: dict[str, str] = {}
        for resource, amount in _mapping(f"{field}.{key}", amounts).items():
            number = isinstance(amount, int | float) and not isinstance(amount, bool)
            text = str(amount) if number else amount
            if not isinstance(text, str) or not _QUANTITY_RE.match(text):
                raise ConfigError(
                    f"{field}.{key}.{resource}", f"{amount!r} is not a quantity (e.g. 500m, 4Gi)"
                )
            checked[str(resource)] = text
        resources[str(key)] = checked
    return resources


def _env(field: str, raw: Any) -> tuple[EnvVar, ...]:
    """``env`` as Fluid writes it: a name -> value mapping (Jindo, Alluxio) or a list of
    Kubernetes EnvVars (JuiceFS: ``name`` with ``value`` or ``valueFrom``)."""
    if raw is None:
        return ()
    items: list[EnvVar] = []
    if isinstance(raw, Mapping):
        for key, text in _string_map(field, raw).items():
            items.append(EnvVar(key, text))
    else:
        for i, entry in enumerate(_list(field, raw)):
            where = f"{field}[{i}]"
            item = _mapping(where, entry)
            _unknown(where, item, frozenset({"name", "value", "valueFrom"}))
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.name", "is required")
            value, value_from = item.get("value"), item.get("valueFrom")
            if value is not None and value_from is not None:
                raise ConfigError(where, "has both value and valueFrom (give one)")
            if value_from is not None:
                items.append(EnvVar(name, None, dict(_mapping(f"{where}.valueFrom", value_from))))
                continue
            if value is not None and not isinstance(value, str):
                raise ConfigError(
                    f"{where}.value",
                    f"expected a string, got {type(value).__name__} (quote numbers and booleans)",
                )
            items.append(EnvVar(name, value or ""))
    seen: set[str] = set()
    for env in items:
        if not _ENV_NAME_RE.match(env.name):
            raise ConfigError(f"{field}.{env.name}", "is not a valid environment variable name")
        if env.name in seen:
            raise ConfigError(f"{field}.{env.name}", "is set twice")
        seen.add(env.name)
    return tuple(items)


def _tolerations(field: str, raw: Any) -> tuple[Mapping[str, Any], ...]:
    """``tolerations``: Kubernetes tolerations, checked field by field."""
    if raw is None:
        return ()
    found: list[Mapping[str, Any]] = []
    for i, item in enumerate(_list(field, raw)):
        where = f"{field}[{i}]"
        item = _mapping(where, item)
        _unknown(where, item, _TOLERATION_FIELDS)
        operator = item.get("operator", "Equal")
        if operator not in _TOLERATION_OPERATORS:
            raise ConfigError(
                f"{where}.operator",
                f"{operator!r} is not one of {', '.join(_TOLERATION_OPERATORS)}",
            )
        effect = item.get("effect")
        if effect not in (None, "", *_TOLERATION_EFFECTS):
            raise ConfigError(
                f"{where}.effect", f"{effect!r} is not one of {', '.join(_TOLERATION_EFFECTS)}"
            )
        for key in ("key", "value"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ConfigError(f"{where}.{key}", f"expected a string, got {item[key]!r}")
        if operator == "Exists" and item.get("value"):
            raise ConfigError(f"{where}.value", "must be empty with operator Exists")
        seconds = item.get("tolerationSeconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
            raise ConfigError(f"{where}.tolerationSeconds", f"{seconds!r} is not an integer")
        found.append(dict(item))
    return tuple(found)


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentSpec:
    """``spec.master``, ``spec.worker`` or ``spec.fuse`` of a runtime: how its pods run
    (Fluid's fields of the same names; all optional)."""

    resources: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    """``requests``/``limits`` -> resource -> quantity text."""
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    env: tuple[EnvVar, ...] = ()
    tolerations: tuple[Mapping[str, Any], ...] = ()
    pod_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """``podMetadata.labels``: added to the pods' labels."""
    pod_annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """``podMetadata.annotations`` (e.g. ``sidecar.istio.io/inject: "false"``)."""

    @classmethod
    def from_dict(cls, raw: Any, field: str, *, strict: bool = True) -> ComponentSpec:
        """Validate one component; ``strict`` refuses fields other than Fluid's above."""
        if raw is None:
            return cls()
        raw = _mapping(field, raw)
        if strict:
            _unknown(field, raw, _COMPONENT_FIELDS)
        metadata = raw.get("podMetadata")
        if metadata is not None:
            metadata = _mapping(f"{field}.podMetadata", metadata)
            if strict:
                _unknown(f"{field}.podMetadata", metadata, _POD_METADATA_FIELDS)
        metadata = metadata or {}
        return cls(
            resources=_resources(f"{field}.resources", raw.get("resources")),
            node_selector=_string_map(f"{field}.nodeSelector", raw.get("nodeSelector")),
            env=_env(f"{field}.env", raw.get("env")),
            tolerations=_tolerations(f"{field}.tolerations", raw.get("tolerations")),
            pod_labels=_string_map(f"{field}.podMetadata.labels", metadata.get("labels")),
            pod_annotations=_string_map(
                f"{field}.podMetadata.annotations", metadata.get("annotations")
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.resources:
            out["resources"] = {key: dict(value) for key, value in self.resources.items()}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        if self.env:
            out["env"] = [item.to_dict() for item in self.env]
        if self.tolerations:
            out["tolerations"] = [dict(item) for item in self.tolerations]
        metadata: dict[str, Any] = {}
        if self.pod_labels:
            metadata["labels"] = dict(self.pod_labels)
        if self.pod_annotations:
            metadata["annotations"] = dict(self.pod_annotations)
        if metadata:
            out["podMetadata"] = metadata
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class CacheRuntimeSpec:
    """A runtime ``spec``: how many workers, their tiers (``tieredstore.levels``) and
    how the master, worker and FUSE pods run (``master``, ``worker``, ``fuse``)."""

    replicas: int = 1
    tiers: tuple[TierConfig, ...] = ()
    """Fastest first; empty when the document has no ``tieredstore``."""
    master: ComponentSpec = ComponentSpec()
    worker: ComponentSpec = ComponentSpec()
    fuse: ComponentSpec = ComponentSpec()

    @classmethod
    def from_dict(
        cls, raw: Any, where: str = "runtime", *, strict: bool = True
    ) -> CacheRuntimeSpec:
        """Validate a runtime ``spec``. ``strict`` refuses unknown fields (our own kind);
        Fluid's runtime kinds carry many fields (``master.properties``, ``jvmOptions``...)
        that are ignored, while the fields we know are checked in both."""
        if raw is None:
            raw = {}
        raw = _mapping(f"{where}: spec", raw)
        if strict:
            _unknown(f"{where}: spec", raw, _RUNTIME_FIELDS)
        replicas = raw.get("replicas", 1)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ConfigError(f"{where}: spec.replicas", f"{replicas!r} is not an integer >= 1")
        tiers: tuple[TierConfig, ...] = ()
        tieredstore = raw.get("tieredstore")
        if tieredstore is not None:
            tieredstore = _mapping(f"{where}: spec.tieredstore", tieredstore)
            levels = tieredstore.get("levels")
            if not isinstance(levels, list) or not levels:
                raise ConfigError(f"{where}: spec.tieredstore.levels", "expected a non-empty list")
            try:
                tiers = tuple(tiers_from_levels(levels))
            except ConfigError as exc:
                raise ConfigError(f"{where}: spec.{exc.field}", exc.reason) from None
        components = {
            name: ComponentSpec.from_dict(raw.get(name), f"{where}: spec.{name}", strict=strict)
            for name in _COMPONENTS
        }
        return cls(replicas=replicas, tiers=tiers, **components)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"replicas": self.replicas}
        if self.tiers:
            out["tieredstore"] = {"levels": [tier.to_dict() for tier in self.tiers]}
        for name in _COMPONENTS:
            component = getattr(self, name).to_dict()
            if component:
                out[name] = component
        return out

    def describe_tiers(self) -> str:
        """``MEM /dev/shm 4Gi, SSD /mnt/ssd 100Gi`` (or ``default tiers``)."""
        if not self.tiers:
            return "default tiers"
        return ", ".join(
            f"{tier.medium.value} {tier.path} {_short_size(tier.quota)}" for tier in self.tiers
        )


def _short_size(n: int) -> str:
    for unit, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


# ------------------------------------------------------------------ DataLoad


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A ``spec.target[]`` entry: a path of the dataset to load."""

    path: str
    replicas: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.replicas is not None:
            out["replicas"] = self.replicas
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetRef:
    """``spec.dataset`` of a DataLoad (``namespace`` None: the DataLoad's own)."""

    name: str
    namespace: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DataLoadSpec:
    """A DataLoad ``spec``: which dataset, which paths, once or on a schedule."""

    dataset: DatasetRef
    targets: tuple[Target, ...] = ()
    """Empty: the whole dataset."""
    load_metadata: bool = False
    policy: str = "Once"
    schedule: str | None = None
    ttl_seconds_after_finished: int | None = None

    @classmethod
    def from_dict(cls, raw: Any, where: str = "dataload") -> DataLoadSpec:
        if raw is None:
            raw = {}
        raw = _mapping(f"{where}: spec", raw)
        _unknown(f"{where}: spec", raw, _DATALOAD_FIELDS)
        dataset = raw.get("dataset")
        if not isinstance(dataset, Mapping) or not dataset.get("name"):
            raise ConfigError(f"{where}: spec.dataset.name", "is required (the dataset to load)")
        _unknown(f"{where}: spec.dataset", dataset, frozenset({"name", "namespace"}))
        name = check_name(f"{where}: spec.dataset.name", dataset["name"])
        namespace = dataset.get("namespace")
        if namespace is not None:
            check_name(f"{where}: spec.dataset.namespace", namespace, label=True)
        targets: list[Target] = []
        for i, item in enumerate(_list(f"{where}: spec.target", raw.get("target") or [])):
            field = f"{where}: spec.target[{i}]"
            item = _mapping(field, item)
            _unknown(field, item, frozenset({"path", "replicas"}))
            path = item.get("path", "/")
            if not isinstance(path, str):
                raise ConfigError(f"{field}.path", f"expected a string, got {path!r}")
            _clean_path(f"{field}.path", path)
            replicas = item.get("replicas")
            if replicas is not None and (
                isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1
            ):
                raise ConfigError(f"{field}.replicas", f"{replicas!r} is not an integer >= 1")
            targets.append(Target(path, replicas))
        load_metadata = raw.get("loadMetadata", False)
        if not isinstance(load_metadata, bool):
            raise ConfigError(
                f"{where}: spec.loadMetadata", f"expected true or false, got {load_metadata!r}"
            )
        policy = raw.get("policy", "Once")
        if policy not in POLICIES:
            raise ConfigError(
                f"{where}: spec.policy", f"{policy!r} is not one of {', '.join(POLICIES)}"
            )
        schedule = raw.get("schedule")
        if schedule is not None and (not isinstance(schedule, str) or not schedule.strip()):
            raise ConfigError(f"{where}: spec.schedule", f"{schedule!r} is not a cron schedule")
        if policy == "Cron":
            if schedule is None:
                raise ConfigError(f"{where}: spec.schedule", "is required with policy Cron")
            if not croniter.is_valid(schedule):
                raise ConfigError(
                    f"{where}: spec.schedule",
                    f"{schedule!r} is not a cron schedule (five fields, e.g. '0 * * * *')",
                )
        elif schedule is not None:
            raise ConfigError(f"{where}: spec.schedule", "is only allowed with policy Cron")
        ttl = raw.get("ttlSecondsAfterFinished")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
            raise ConfigError(
                f"{where}: spec.ttlSecondsAfterFinished", f"{ttl!r} is not an integer >= 0"
            )
        return cls(
            dataset=DatasetRef(name, namespace),
            targets=tuple(targets),
            load_metadata=load_metadata,
            policy=policy,
            schedule=schedule,
            ttl_seconds_after_finished=ttl,
        )

    def to_dict(self) -> dict[str, Any]:
        dataset = {"name": self.dataset.name}
        if self.dataset.namespace is not None:
            dataset["namespace"] = self.dataset.namespace
        out: dict[str, Any] = {"dataset": dataset}
        if self.targets:
            out["target"] = [item.to_dict() for item in self.targets]
        if self.load_metadata:
            out["loadMetadata"] = True
        if self.policy != "Once":
            out["policy"] = self.policy
        if self.schedule is not None:
            out["schedule"] = self.schedule
        if self.ttl_seconds_after_finished is not None:
            out["ttlSecondsAfterFinished"] = self.ttl_seconds_after_finished
        return out


# ------------------------------------------------------------------ Secret


@dataclasses.dataclass(frozen=True, slots=True)
class SecretDoc:
    """A ``kind: Secret``: its values (``stringData`` and decoded ``data``) never printed."""

    namespace: str
    name: str
    data: Mapping[str, str] = dataclasses.field(repr=False, default_factory=dict)

    def __repr__(self) -> str:
        return f"SecretDoc({self.namespace}/{self.name}, keys={sorted(self.data)})"
