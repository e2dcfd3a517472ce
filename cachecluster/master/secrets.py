"""Secrets on the master: ``kind: Secret`` values, kept on disk for the master's owner only.

Values are stored in ``<home>/secrets.json`` (mode 0600, written atomically,
read back at start) and are used for one thing: resolving a dataset's
``encryptOptions[].valueFrom.secretKeyRef`` into mount options, which only
the master's own UFS backends and the workers (``GetMount``) see. No other
answer carries a value: listings give names and keys only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cachecluster.common.errors import ConfigError, NotFound
from cachecluster.common.private_file import write_private_json

log = logging.getLogger(__name__)

SECRETS_FILE = "secrets.json"
FILE_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, slots=True)
class SecretRecord:
    """A stored secret; ``repr`` shows keys, never values."""

    namespace: str
    name: str
    data: Mapping[str, str] = dataclasses.field(repr=False)
    created_ms: int = 0

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def keys(self) -> list[str]:
        return sorted(self.data)

    @property
    def digest(self) -> str:
        """A short hash of the values, to tell ``unchanged`` from ``configured`` in answers."""
        text = json.dumps(dict(self.data), sort_keys=True).encode("utf-8")
        return hashlib.blake2b(text, digest_size=8).hexdigest()


def read_private_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (None when absent); tightens its mode to 0600."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot be read: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != FILE_FORMAT_VERSION:
        raise ConfigError(str(path), f"expected format version {FILE_FORMAT_VERSION}")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return document


class SecretStore:
    """Secrets by ``(namespace, name)``; ``home=None`` keeps them in memory (tests)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self._secrets: dict[tuple[str, str], SecretRecord] = {}

    @property
    def path(self) -> Path | None:
        return None if self.home is None else self.home / SECRETS_FILE

    def get(self, namespace: str, name: str) -> SecretRecord:
        record = self._secrets.get((namespace, name))
        if record is None:
            raise NotFound(f"no secret {namespace}/{name}")
        return record

    def secrets(self, namespace: str = "") -> list[SecretRecord]:
        """Secrets of ``namespace`` (all for ``""``), sorted."""
        return [
            self._secrets[key]
            for key in sorted(self._secrets)
            if not namespace or key[0] == namespace
        ]

    def value(self, namespace: str, name: str, key: str, field: str = "secretKeyRef") -> str:
        """One value, for resolving an encrypt option; a ``ConfigError`` naming ``field`` else."""
        record = self._secrets.get((namespace, name))
        if record is None:
            raise ConfigError(field, f"secret {namespace}/{name} does not exist (apply it first)")
        if key not in record.data:
            known = ", ".join(record.keys) or "none"
            raise ConfigError(
                field, f"secret {namespace}/{name} has no key {key!r} (keys: {known})"
            )
        return record.data[key]

    def put(self, namespace: str, name: str, data: Mapping[str, str]) -> str:
        """Store a secret; return ``created``, ``configured`` or ``unchanged``."""
        old = self._secrets.get((namespace, name))
        if old is not None and dict(old.data) == dict(data):
            return "unchanged"
        record = SecretRecord(
            namespace,
            name,
            dict(data),
            created_ms=int(time.time() * 1000) if old is None else old.created_ms,
        )
        secrets = dict(self._secrets)
        secrets[(namespace, name)] = record
        self._save(secrets)
        self._secrets = secrets
        log.info(
            "secret %s %s (keys: %s)",
            record.ref,
            "created" if old is None else "updated",
            ", ".join(record.keys),
        )
        return "created" if old is None else "configured"

    def delete(self, namespace: str, name: str) -> bool:
        if (namespace, name) not in self._secrets:
            return False
        secrets = dict(self._secrets)
        del secrets[(namespace, name)]
        self._save(secrets)
        self._secrets = secrets
        log.info("secret %s/%s deleted", namespace, name)
        return True

    def _save(self, secrets: Mapping[tuple[str, str], SecretRecord]) -> None:
        if self.path is None:
            return
        write_private_json(
            self.path,
            {
                "version": FILE_FORMAT_VERSION,
                "secrets": [
                    {
                        "namespace": record.namespace,
                        "name": record.name,
                        "created_ms": record.created_ms,
                        "data": dict(record.data),
                    }
                    for _, record in sorted(secrets.items())
                ],
            },
        )

    def load(self) -> int:
        """Read ``secrets.json`` if it exists; return how many secrets it held."""
        if self.path is None:
            return 0
        document = read_private_json(self.path)
        if document is None:
            return 0
        secrets: dict[tuple[str, str], SecretRecord] = {}
        for entry in document.get("secrets", []):
            try:
                data = {str(k): str(v) for k, v in dict(entry["data"]).items()}
                record = SecretRecord(
                    str(entry["namespace"]),
                    str(entry["name"]),
                    data,
                    int(entry.get("created_ms", 0)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(str(self.path), f"bad secret entry: {exc}") from None
            secrets[(record.namespace, record.name)] = record
        self._secrets = secrets
        return len(secrets)
