"""Sizes as Kubernetes and Fluid write them (``4Gi``, ``500Mi``, ``1G``) and back."""

from __future__ import annotations

import re

from cachecluster.common.errors import ConfigError

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i|[kKMGTP])?\s*[Bb]?\s*$")


def parse_size(value: str | int, field: str = "size") -> int:
    """Parse ``4Gi``, ``500Mi``, ``1.5G``, ``1024`` into bytes.

    Raises :class:`ConfigError` naming ``field`` for anything else.
    """
    if isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not a size (e.g. 4Gi, 500Mi, 1048576)")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(field, f"{value} is negative")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ConfigError(field, f"{value!r} is not a size (e.g. 4Gi, 500Mi, 1048576)")
    number, unit = m.group(1), m.group(2)
    factor = 1
    if unit:
        factor = _BINARY.get(unit) or _DECIMAL[unit]
    return int(float(number) * factor)


def format_size(n: float) -> str:
    """Bytes as Fluid prints them: ``0.00B``, ``210.00MiB``, ``1.16GiB``."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{value:.2f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")
