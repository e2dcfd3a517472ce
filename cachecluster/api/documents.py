"""Multi-document YAML to :class:`Document` objects, all validated before any is used.

``parse_documents(text, source)`` reads every document of a file (``---``
separated; empty documents are skipped) and returns them in order, or raises
the first mistake as one :class:`~cachecluster.common.errors.ConfigError`
line naming the document, the field and the reason::

    shared-dataset.yaml doc 2 (Dataset ref/ref-dataset): spec.mounts[0].mountPoint:
    'dataset://share' must be dataset://<namespace>/<name>[/subpath]

Kinds: ``Secret`` (``v1``); ``Dataset``, ``CacheRuntime``, ``DataLoad`` under
``cachecluster.io/v1alpha1`` or Fluid's ``data.fluid.io/v1alpha1``; Fluid's
``JindoRuntime``, ``AlluxioRuntime``, ``JuiceFSRuntime``, ``ThinRuntime``
(``data.fluid.io/v1alpha1`` only) read as a CacheRuntime.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from cachecluster.api.models import (
    DEFAULT_NAMESPACE,
    CacheRuntimeSpec,
    DataLoadSpec,
    DatasetSpec,
    SecretDoc,
    check_name,
)
from cachecluster.common.errors import ConfigError

OUR_GROUP = "cachecluster.io"
FLUID_GROUP = "data.fluid.io"
VERSION = "v1alpha1"
API_VERSIONS = (f"{OUR_GROUP}/{VERSION}", f"{FLUID_GROUP}/{VERSION}")

FLUID_RUNTIME_KINDS = ("JindoRuntime", "AlluxioRuntime", "JuiceFSRuntime", "ThinRuntime")
RESOURCE_KINDS = ("Dataset", "CacheRuntime", "DataLoad")
KINDS = ("Secret", *RESOURCE_KINDS, *FLUID_RUNTIME_KINDS)

Spec = DatasetSpec | CacheRuntimeSpec | DataLoadSpec | SecretDoc


@dataclasses.dataclass(frozen=True, slots=True)
class Document:
    """One validated document of a file.

    ``kind`` is as written (``JindoRuntime``); :attr:`category` is what it is
    read as (``Secret``, ``Dataset``, ``CacheRuntime``, ``DataLoad``).
    """

    kind: str
    api_version: str
    namespace: str
    name: str
    spec: Spec
    source: str = "-"
    index: int = 1
    """1-based position among the file's non-empty documents."""

    @property
    def category(self) -> str:
        return "CacheRuntime" if self.kind in FLUID_RUNTIME_KINDS else self.kind

    @property
    def group(self) -> str:
        """``data.fluid.io``, ``cachecluster.io``, or ``""`` for a Secret (core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self) -> str:
        """kubectl's name of the resource: ``dataset.data.fluid.io/shared-dataset``."""
        if not self.group:
            return f"{self.kind.lower()}/{self.name}"
        return f"{self.kind.lower()}.{self.group}/{self.name}"

    @property
    def where(self) -> str:
        """How errors name this document: ``f.yaml doc 2 (Dataset ref/ref-dataset)``."""
        return document_where(self.source, self.index, self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def document_where(source: str, index: int, kind: str, namespace: str, name: str) -> str:
    return f"{source} doc {index} ({kind} {namespace}/{name})"


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    if mark is not None:
        where = f"{source} line {mark.line + 1} column {mark.column + 1}"
    else:
        where = source
    return ConfigError(where, f"not valid YAML: {problem}")


def parse_documents(text: str, source: str = "file.yaml") -> list[Document]:
    """Parse and validate every document of ``text``; see the module docstring."""
    try:
        raw_documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    if not raw_documents:
        raise ConfigError(source, "no documents")
    documents: list[Document] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, raw in enumerate(raw_documents, start=1):
        document = parse_document(raw, source, index)
        key = (document.category, document.namespace, document.name)
        if key in seen:
            raise ConfigError(
                f"{document.where}: metadata.name",
                f"{document.ref} is also defined by doc {seen[key]}",
            )
        seen[key] = index
        documents.append(document)
    return documents


def parse_document(raw: Any, source: str = "-", index: int = 1) -> Document:
    """Validate one already-loaded document (a mapping)."""
    here = f"{source} doc {index}"
    if not isinstance(raw, Mapping):
        raise ConfigError(here, f"expected a mapping (a Kubernetes object), got {_type(raw)}")
    kind = raw.get("kind")
    if not kind:
        raise ConfigError(f"{here}: kind", f"is required (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise ConfigError(f"{here}: kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    api_version = raw.get("apiVersion")
    if kind == "Secret":
        allowed: tuple[str, ...] = ("v1",)
    elif kind in FLUID_RUNTIME_KINDS:
        allowed = (f"{FLUID_GROUP}/{VERSION}",)
    else:
        allowed = API_VERSIONS
    if api_version not in allowed:
        what = "is required" if api_version is None else f"{api_version!r} is not valid"
        raise ConfigError(
            f"{here} ({kind}): apiVersion",
            f"{what} for kind {kind} (expected {' or '.join(allowed)})",
        )
    metadata = raw.get("metadata")
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"{here} ({kind}): metadata.name", "is required")
    name = check_name(f"{here} ({kind}): metadata.name", metadata.get("name"))
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    check_name(f"{here} ({kind} {name}): metadata.namespace", namespace, label=True)
    where = document_where(source, index, kind, namespace, name)
    known_top = {"apiVersion", "kind", "metadata", "spec", "status"}
    if kind == "Secret":
        known_top |= {"data", "stringData", "type", "immutable"}
    extra = sorted(str(key) for key in raw if key not in known_top)
    if extra:
        raise ConfigError(f"{where}: {extra[0]}", "unknown field")
    spec: Spec
    if kind == "Secret":
        spec = _secret(raw, where, namespace, name)
    elif kind == "Dataset":
        spec = DatasetSpec.from_dict(raw.get("spec"), where)
    elif kind == "DataLoad":
        spec = DataLoadSpec.from_dict(raw.get("spec"), where)
    else:
        spec = CacheRuntimeSpec.from_dict(raw.get("spec"), where, strict=kind == "CacheRuntime")
    return Document(kind, api_version, namespace, name, spec, source, index)


def _secret(raw: Mapping[str, Any], where: str, namespace: str, name: str) -> SecretDoc:
    values: dict[str, str] = {}
    data = raw.get("data")
    if data is not None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: data", f"expected a mapping, got {_type(data)}")
        for key, value in data.items():
            try:
                values[str(key)] = base64.b64decode(str(value), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise ConfigError(
                    f"{where}: data.{key}", "is not base64 of UTF-8 text (use stringData)"
                ) from None
    string_data = raw.get("stringData")
    if string_data is not None:
        if not isinstance(string_data, Mapping):
            raise ConfigError(
                f"{where}: stringData", f"expected a mapping, got {_type(string_data)}"
            )
        for key, value in string_data.items():
            if not isinstance(value, str):
                raise ConfigError(
                    f"{where}: stringData.{key}",
                    f"expected a string, got {_type(value)} (quote numbers and booleans)",
                )
            values[str(key)] = value  # stringData wins, as in Kubernetes
    if not values:
        raise ConfigError(f"{where}: stringData", "the secret has no data or stringData")
    return SecretDoc(namespace, name, values)


def _type(value: Any) -> str:
    return type(value).__name__
