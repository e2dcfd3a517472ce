"""Atomic writes of files only their owner may read (the master's state files)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_private_json(path: Path, document: Any) -> None:
    """Write ``document`` as JSON to ``path`` atomically, mode 0600 (also over a wider file).

    Each call writes its own temporary file beside ``path`` (mkstemp), so two
    writes never share one; the last ``os.replace`` wins.
    """
    data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, 0o600)
            file.write(data)
            file.flush()
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
