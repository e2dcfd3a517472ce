"""Runtimes on the master: CacheRuntime documents (JindoRuntime... as written), persisted.

A runtime says how many workers serve its datasets and on which tiers. The
master keeps what was applied in ``<home>/runtimes.json`` (mode 0600, atomic,
read back at start); in local mode ``cachecluster apply`` then makes the
running cluster match it (see :mod:`cachecluster.cli.apply_cmds`).

A Dataset binds to the runtime named in ``spec.runtimes``, else to the
runtime with its own namespace and name (Fluid's rule), else to the running
cluster itself, :data:`DEFAULT_RUNTIME`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from cachecluster.api.models import CacheRuntimeSpec, DatasetSpec
from cachecluster.common.errors import ConfigError, NotFound
from cachecluster.common.private_file import write_private_json
from cachecluster.master.secrets import FILE_FORMAT_VERSION, read_private_json

log = logging.getLogger(__name__)

RUNTIMES_FILE = "runtimes.json"
DEFAULT_RUNTIME = ("", "")
"""The binding of a dataset with no runtime of its own: the running cluster."""


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeRecord:
    """An applied runtime document."""

    namespace: str
    name: str
    kind: str
    """As written: ``JindoRuntime``, ``CacheRuntime``..."""
    api_version: str
    spec: CacheRuntimeSpec
    generation: int = 1
    created_ms: int = 0

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def binding_of(
    namespace: str, name: str, spec: DatasetSpec, exists: set[tuple[str, str]]
) -> tuple[str, str]:
    """The runtime ``(namespace, name)`` a dataset binds to (see the module docstring).

    A runtime named in ``spec.runtimes`` binds even before it is applied, as in Fluid.
    """
    if spec.runtimes:
        first = spec.runtimes[0]
        return (first.namespace or namespace, first.name)
    if (namespace, name) in exists:
        return (namespace, name)
    return DEFAULT_RUNTIME


class RuntimeRegistry:
    """Runtimes by ``(namespace, name)``; ``home=None`` keeps them in memory (tests)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self._runtimes: dict[tuple[str, str], RuntimeRecord] = {}

    @property
    def path(self) -> Path | None:
        return None if self.home is None else self.home / RUNTIMES_FILE

    def keys(self) -> set[tuple[str, str]]:
        return set(self._runtimes)

    def get(self, namespace: str, name: str) -> RuntimeRecord:
        record = self._runtimes.get((namespace, name))
        if record is None:
            raise NotFound(f"no runtime {namespace}/{name}")
        return record

    def runtimes(self, namespace: str = "") -> list[RuntimeRecord]:
        """Runtimes of ``namespace`` (all for ``""``), sorted."""
        return [
            self._runtimes[key]
            for key in sorted(self._runtimes)
            if not namespace or key[0] == namespace
        ]

    def apply(
        self, namespace: str, name: str, kind: str, api_version: str, spec: CacheRuntimeSpec
    ) -> tuple[RuntimeRecord, str]:
        """Create or update; return the record and ``created``/``configured``/``unchanged``."""
        old = self._runtimes.get((namespace, name))
        if old is not None and (old.kind, old.api_version, old.spec) == (kind, api_version, spec):
            return old, "unchanged"
        record = RuntimeRecord(
            namespace,
            name,
            kind,
            api_version,
            spec,
            generation=1 if old is None else old.generation + 1,
            created_ms=int(time.time() * 1000) if old is None else old.created_ms,
        )
        runtimes = dict(self._runtimes)
        runtimes[(namespace, name)] = record
        self._save(runtimes)
        self._runtimes = runtimes
        log.info(
            "runtime %s (%s) %s: %d worker(s), %s",
            record.ref,
            kind,
            "created" if old is None else "updated",
            spec.replicas,
            spec.describe_tiers(),
        )
        return record, "created" if old is None else "configured"

    def delete(self, namespace: str, name: str) -> RuntimeRecord | None:
        old = self._runtimes.get((namespace, name))
        if old is None:
            return None
        runtimes = dict(self._runtimes)
        del runtimes[(namespace, name)]
        self._save(runtimes)
        self._runtimes = runtimes
        log.info("runtime %s deleted", old.ref)
        return old

    def _save(self, runtimes: Mapping[tuple[str, str], RuntimeRecord]) -> None:
        if self.path is None:
            return
        write_private_json(
            self.path,
            {
                "version": FILE_FORMAT_VERSION,
                "runtimes": [
                    {
                        "namespace": r.namespace,
                        "name": r.name,
                        "kind": r.kind,
                        "apiVersion": r.api_version,
                        "generation": r.generation,
                        "created_ms": r.created_ms,
                        "spec": r.spec.to_dict(),
                    }
                    for _, r in sorted(runtimes.items())
                ],
            },
        )

    def load(self) -> int:
        """Read ``runtimes.json`` if it exists; return how many runtimes it held."""
        if self.path is None:
            return 0
        document = read_private_json(self.path)
        if document is None:
            return 0
        runtimes: dict[tuple[str, str], RuntimeRecord] = {}
        for entry in document.get("runtimes", []):
            try:
                namespace, name = str(entry["namespace"]), str(entry["name"])
                spec = CacheRuntimeSpec.from_dict(
                    entry["spec"], f"{self.path} runtime {namespace}/{name}", strict=False
                )
                runtimes[(namespace, name)] = RuntimeRecord(
                    namespace,
                    name,
                    str(entry["kind"]),
                    str(entry["apiVersion"]),
                    spec,
                    int(entry.get("generation", 1)),
                    int(entry.get("created_ms", 0)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(str(self.path), f"bad runtime entry: {exc}") from None
        self._runtimes = runtimes
        return len(runtimes)
