"""Tier configuration: Fluid's ``tieredstore.levels[]`` as validated dataclasses.

A worker caches blocks on one to three tiers, fastest first: ``MEM`` (a tmpfs
path such as ``/dev/shm``), ``SSD``, ``HDD``. Each tier has a path, a quota and
two watermarks: when a write takes usage past ``high`` x quota, blocks are
evicted (demoted to the next tier where there is one) down to ``low`` x quota.

The same levels come from three places, all validated here with one-line
:class:`~cachecluster.common.errors.ConfigError` messages that name the field:

* a CacheRuntime's YAML: :meth:`TierConfig.from_dict` (``mediumtype``,
  ``path``, ``quota``, ``high``, ``low``, ``volumeType``);
* the worker CLI: :func:`parse_tier_flag` for ``--tier MEM:/dev/shm/cc:4Gi:0.95:0.7``;
* code: :class:`TierConfig` directly.

:func:`validate_tiers` checks a whole list (at least one tier, one tier per
medium, no shared or nested paths) and returns it sorted fastest first.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cachecluster.common.errors import ConfigError
from cachecluster.common.units import parse_size

DEFAULT_HIGH_WATERMARK = 0.95
DEFAULT_LOW_WATERMARK = 0.7

_LEVEL_KEYS = ("mediumtype", "path", "quota", "high", "low", "volumeType")
_UNSUPPORTED_LEVEL_KEYS = ("quotaList", "volumeSource")


class Medium(enum.Enum):
    """A storage medium; members are declared fastest first."""

    MEM = "MEM"
    SSD = "SSD"
    HDD = "HDD"

    @property
    def rank(self) -> int:
        """0 for the fastest medium (MEM), growing with slowness."""
        return _MEDIUM_RANK[self]

    @classmethod
    def parse(cls, value: object, field: str = "mediumtype") -> Medium:
        """``"MEM"``, ``"ssd"``... as a :class:`Medium`; anything else is a ``ConfigError``."""
        if isinstance(value, Medium):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        known = ", ".join(m.value for m in cls)
        raise ConfigError(field, f"unknown medium {value!r} (expected one of {known})")

    def __str__(self) -> str:
        return self.value


_MEDIUM_RANK = {medium: rank for rank, medium in enumerate(Medium)}


@dataclasses.dataclass(frozen=True, slots=True)
class TierConfig:
    """One cache tier: where blocks live, how many bytes, when to evict.

    ``quota`` is in bytes and counts whole block files (a small header plus
    the data). ``high`` and ``low`` are fractions of the quota with
    ``0 < high <= 1`` and ``0 <= low <= high``. ``volume_type`` is carried
    for the operator (``emptyDir``, ``hostPath``) and ignored by the worker.
    """

    medium: Medium
    path: str
    quota: int
    high: float = DEFAULT_HIGH_WATERMARK
    low: float = DEFAULT_LOW_WATERMARK
    volume_type: str | None = None

    def __post_init__(self) -> None:
        medium = Medium.parse(self.medium, "tier.mediumtype")
        field = f"tier {medium.value}"
        quota = parse_size(self.quota, f"{field}.quota")
        high = parse_watermark(self.high, f"{field}.high")
        low = parse_watermark(self.low, f"{field}.low")
        _check_values(self.path, quota, high, low, field)
        # Accept "SSD", "4Gi" and "0.95" from callers that build tiers by hand.
        object.__setattr__(self, "medium", medium)
        object.__setattr__(self, "quota", quota)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "low", low)

    @property
    def high_bytes(self) -> int:
        """Usage above which a write first evicts: ``floor(high x quota)``."""
        return math.floor(self.high * self.quota)

    @property
    def low_bytes(self) -> int:
        """Usage that eviction brings a tier down to: ``floor(low x quota)``."""
        return math.floor(self.low * self.quota)

    @classmethod
    def from_dict(
        cls, level: Mapping[str, Any], field: str = "tieredstore.levels[0]"
    ) -> TierConfig:
        """Build a tier from one Fluid ``tieredstore.levels[]`` entry.

        ``high``/``low`` may be strings (``"0.95"``, as Fluid's YAML writes
        them) or numbers; ``quota`` a size such as ``4Gi`` or a byte count.
        Errors name the field, e.g. ``tieredstore.levels[0].quota: '5Gix' is
        not a size (e.g. 4Gi, 500Mi, 1048576)``.
        """
        if not isinstance(level, Mapping):
            raise ConfigError(field, f"expected a mapping, got {type(level).__name__}")
        for key in level:
            if key in _UNSUPPORTED_LEVEL_KEYS:
                raise ConfigError(f"{field}.{key}", "is not supported; use one level per path")
            if key not in _LEVEL_KEYS:
                known = ", ".join(_LEVEL_KEYS)
                raise ConfigError(f"{field}.{key}", f"unknown field (known: {known})")
        for key in ("mediumtype", "path", "quota"):
            if level.get(key) in (None, ""):
                raise ConfigError(f"{field}.{key}", "is required")
        medium = Medium.parse(level["mediumtype"], f"{field}.mediumtype")
        path = level["path"]
        if not isinstance(path, str):
            raise ConfigError(f"{field}.path", f"expected a string, got {path!r}")
        quota = parse_size(level["quota"], f"{field}.quota")
        high = parse_watermark(level.get("high", DEFAULT_HIGH_WATERMARK), f"{field}.high")
        low = parse_watermark(level.get("low", DEFAULT_LOW_WATERMARK), f"{field}.low")
        volume_type = level.get("volumeType")
        if volume_type is not None and not isinstance(volume_type, str):
            raise ConfigError(f"{field}.volumeType", f"expected a string, got {volume_type!r}")
        _check_values(path, quota, high, low, field)
        return cls(medium, path, quota, high, low, volume_type)

    def to_dict(self) -> dict[str, Any]:
        """The Fluid form of this tier (watermarks as strings, as Fluid writes them)."""
        level: dict[str, Any] = {
            "mediumtype": self.medium.value,
            "path": self.path,
            "quota": self.quota,
            "high": str(self.high),
            "low": str(self.low),
        }
        if self.volume_type is not None:
            level["volumeType"] = self.volume_type
        return level


@dataclasses.dataclass(frozen=True, slots=True)
class TierUsage:
    """A tier's state at one moment, as :meth:`BlockStore.usage` reports it.

    ``used`` counts block files on the tier plus bytes reserved for writes in
    progress; it never exceeds ``quota``.
    """

    medium: Medium
    path: str
    quota: int
    used: int
    blocks: int
    high: float
    low: float

    @property
    def used_fraction(self) -> float:
        """``used / quota`` (0.0 for an empty quota)."""
        return self.used / self.quota if self.quota else 0.0


def parse_watermark(value: object, field: str) -> float:
    """A watermark given as ``"0.95"`` or ``0.95``; must lie within 0..1."""
    if isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not a number between 0 and 1")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(field, f"{value!r} is not a number between 0 and 1") from None
    else:
        raise ConfigError(field, f"{value!r} is not a number between 0 and 1")
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ConfigError(field, f"{value!r} is outside 0..1")
    return number


def parse_tier_flag(flag: str, field: str = "--tier") -> TierConfig:
    """Parse the worker CLI form ``MEDIUM:PATH:QUOTA[:HIGH:LOW]``.

    ``MEM:/dev/shm/cc:4Gi`` or ``SSD:/mnt/ssd/cc:100Gi:0.9:0.6``. The path may
    not contain ``:``.
    """
    parts = flag.split(":")
    if len(parts) not in (3, 5):
        raise ConfigError(
            field, f"{flag!r} is not MEDIUM:PATH:QUOTA[:HIGH:LOW] (e.g. MEM:/dev/shm/cc:4Gi)"
        )
    level: dict[str, str] = {"mediumtype": parts[0], "path": parts[1], "quota": parts[2]}
    if len(parts) == 5:
        level["high"], level["low"] = parts[3], parts[4]
    return TierConfig.from_dict(level, f"{field} {flag!r}")


def tiers_from_levels(levels: Iterable[Mapping[str, Any]]) -> list[TierConfig]:
    """Every entry of ``tieredstore.levels``, validated together and sorted fastest first."""
    tiers = [
        TierConfig.from_dict(level, f"tieredstore.levels[{i}]") for i, level in enumerate(levels)
    ]
    return validate_tiers(tiers, field="tieredstore.levels")


def validate_tiers(
    tiers: Sequence[TierConfig], field: str = "tieredstore.levels"
) -> list[TierConfig]:
    """Check a set of tiers and return them sorted fastest first (MEM, SSD, HDD).

    At least one tier; one tier per medium; no two tiers on the same path or
    with one path inside another (each tier owns its directory).
    """
    if not tiers:
        raise ConfigError(field, "at least one tier is required")
    seen_medium: dict[Medium, int] = {}
    seen_path: list[tuple[str, int]] = []
    for i, tier in enumerate(tiers):
        if tier.medium in seen_medium:
            raise ConfigError(
                f"{field}[{i}].mediumtype",
                f"{tier.medium.value} is already used by {field}[{seen_medium[tier.medium]}]; "
                "one tier per medium",
            )
        seen_medium[tier.medium] = i
        real = os.path.normpath(os.path.abspath(tier.path))
        for other, j in seen_path:
            if real == other:
                raise ConfigError(
                    f"{field}[{i}].path", f"{tier.path} is already used by {field}[{j}]"
                )
            if real.startswith(other.rstrip("/") + "/") or other.startswith(real.rstrip("/") + "/"):
                raise ConfigError(
                    f"{field}[{i}].path",
                    f"{tier.path} and {field}[{j}].path {tiers[j].path} are nested; "
                    "each tier needs a directory of its own",
                )
        seen_path.append((real, i))
    return sorted(tiers, key=lambda tier: tier.medium.rank)


def _check_values(path: object, quota: int, high: float, low: float, field: str) -> None:
    """Cross-field checks of one tier's parsed values; ``field`` prefixes every message."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{field}.path", "is required")
    if "\x00" in path:
        raise ConfigError(f"{field}.path", "contains a NUL byte")
    if not os.path.isabs(path):
        raise ConfigError(f"{field}.path", f"{path!r} is not an absolute path")
    if quota <= 0:
        raise ConfigError(f"{field}.quota", f"{quota!r} must be a size > 0")
    if high == 0.0:
        raise ConfigError(f"{field}.high", "0 leaves no room for any block; use a value in (0, 1]")
    if high < low:
        raise ConfigError(f"{field}.high", f"{high} is below {field}.low {low}; need low <= high")
