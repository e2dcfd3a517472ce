"""Where a running process listens, written to a small JSON file once it is ready.

Services bind to port 0 by default, so the kernel picks free ports; a process
writes its endpoint file (atomically) only after every listener is up. The
local cluster (``cachecluster up``) and tests wait for these files to learn the
addresses, so nothing depends on fixed ports.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cachecluster.common.errors import Unavailable

ENDPOINT_FILE = "endpoint.json"


def write_endpoint_file(home: Path, fields: dict[str, Any]) -> Path:
    """Write ``fields`` plus ``pid`` to ``home/endpoint.json`` atomically."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / ENDPOINT_FILE
    tmp = path.with_name(f".{ENDPOINT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **fields}, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_endpoint_file(home: Path) -> dict[str, Any] | None:
    """The endpoint file in ``home``, or ``None`` if there is none yet."""
    try:
        data: dict[str, Any] = json.loads((home / ENDPOINT_FILE).read_text())
    except FileNotFoundError:
        return None
    return data


def remove_endpoint_file(home: Path) -> None:
    """Remove ``home/endpoint.json`` if it is there (on clean shutdown)."""
    (home / ENDPOINT_FILE).unlink(missing_ok=True)


def wait_endpoint_file(
    home: Path, *, pid: int | None = None, timeout: float = 30.0, alive: Any = None
) -> dict[str, Any]:
    """Wait until ``home/endpoint.json`` exists (and names ``pid`` if given).

    ``alive`` is an optional callable returning False when the process died, so
    that a crash is reported at once instead of after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        data = read_endpoint_file(home)
        if data is not None and (pid is None or data.get("pid") == pid):
            return data
        if alive is not None and not alive():
            raise Unavailable(f"process for {home} exited before it was ready (see its log)")
        if time.monotonic() > deadline:
            raise Unavailable(f"process for {home} was not ready after {timeout:.0f}s")
        time.sleep(0.05)
