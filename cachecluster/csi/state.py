"""The targets this node's plugin has published, kept in a small JSON file.

The file lives in the plugin's state folder (a hostPath in the chart), so a
restarted plugin still knows which targets to watch and repair. It is written
whole to a temporary file and renamed, so a crash never leaves half a file; an
unreadable file is logged and treated as empty (kubelet's unpublish calls
need no state, only the repairs do).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FILE = "published.json"


@dataclass(frozen=True, slots=True)
class Published:
    """One published target: what is bound there, from where, and how."""

    volume_id: str
    target: str
    source: str
    read_only: bool


class PublishedTargets:
    """The published targets by target path, saved to ``<state_dir>/published.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self._targets: dict[str, Published] = {}

    def load(self) -> int:
        """Read the file (missing: nothing published); the number of targets read."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            targets = {item["target"]: Published(**item) for item in raw["published"]}
        except FileNotFoundError:
            targets = {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s: unreadable (%s); starting with no published targets", self.path, exc)
            targets = {}
        self._targets = targets
        return len(targets)

    def get(self, target: str) -> Published | None:
        """The record of ``target``, if it is published."""
        return self._targets.get(target)

    def all(self) -> list[Published]:
        """Every published target, ordered by path."""
        return [self._targets[target] for target in sorted(self._targets)]

    def put(self, published: Published) -> None:
        """Record ``published`` and save."""
        self._targets[published.target] = published
        self._save()

    def remove(self, target: str) -> None:
        """Forget ``target`` (no error when unknown) and save."""
        if self._targets.pop(target, None) is not None:
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        document = {"published": [asdict(item) for item in self.all()]}
        scratch.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        os.replace(scratch, self.path)
