"""Block keys and tier configuration: ids, Fluid levels, CLI flags, one-line errors."""

from __future__ import annotations

from typing import Any

import pytest

from cachecluster.common.block_key import (
    DEFAULT_BLOCK_SIZE,
    BlockKey,
    block_count,
    block_span,
    check_block_id,
    is_block_id,
)
from cachecluster.common.errors import ConfigError, InvalidArgument
from cachecluster.worker.tiers import (
    Medium,
    TierConfig,
    parse_tier_flag,
    tiers_from_levels,
    validate_tiers,
)


def test_block_id_is_32_hex_and_stable() -> None:
    key = BlockKey("m1", "a/b.bin", "etag", 3)
    assert is_block_id(key.id)
    assert key.id == BlockKey("m1", "a/b.bin", "etag", 3).id
    assert DEFAULT_BLOCK_SIZE == 4 * 1024 * 1024


def test_block_id_encoding_is_unambiguous() -> None:
    ids = {
        BlockKey("m", "a/b", "c", 0).id,
        BlockKey("m", "a", "b/c", 0).id,
        BlockKey("ma", "", "bc", 0).id,
        BlockKey("m", "a/b", "c", 1).id,
        BlockKey("m", "a/b", "d", 0).id,
    }
    assert len(ids) == 5


def test_block_key_checks() -> None:
    with pytest.raises(InvalidArgument):
        BlockKey("m", "p", "v", -1)
    with pytest.raises(InvalidArgument, match="block id"):
        check_block_id("../../etc/passwd")
    with pytest.raises(InvalidArgument):
        check_block_id("A" * 32)
    assert block_count(0) == 0
    assert block_count(DEFAULT_BLOCK_SIZE + 1) == 2
    assert block_span(1, DEFAULT_BLOCK_SIZE + 10) == (DEFAULT_BLOCK_SIZE, 10)
    with pytest.raises(InvalidArgument):
        block_span(2, DEFAULT_BLOCK_SIZE + 10)


def test_tier_from_fluid_level() -> None:
    level = {"mediumtype": "MEM", "path": "/dev/shm", "quota": "4Gi", "high": "0.95", "low": "0.7"}
    tier = TierConfig.from_dict(level)
    assert tier == TierConfig(Medium.MEM, "/dev/shm", 4 << 30, 0.95, 0.7)
    assert tier.high_bytes == int(0.95 * (4 << 30))
    with_volume = TierConfig.from_dict({**level, "volumeType": "emptyDir", "high": 0.9, "low": 0})
    assert (with_volume.volume_type, with_volume.high, with_volume.low) == ("emptyDir", 0.9, 0.0)
    defaults = TierConfig.from_dict({"mediumtype": "ssd", "path": "/mnt/ssd", "quota": 1024})
    assert (defaults.medium, defaults.high, defaults.low) == (Medium.SSD, 0.95, 0.7)
    assert TierConfig.from_dict(tier.to_dict()) == tier


def _error(level: dict[str, Any], field: str = "tieredstore.levels[0]") -> str:
    with pytest.raises(ConfigError) as info:
        TierConfig.from_dict(level, field)
    message = str(info.value)
    assert "\n" not in message
    return message


BASE: dict[str, Any] = {"mediumtype": "MEM", "path": "/dev/shm", "quota": "4Gi"}


def test_bad_quota_names_the_field() -> None:
    assert _error({**BASE, "quota": "5Gix"}) == (
        "tieredstore.levels[0].quota: '5Gix' is not a size (e.g. 4Gi, 500Mi, 1048576)"
    )
    assert _error({**BASE, "quota": 0}).startswith("tieredstore.levels[0].quota:")


def test_high_below_low_names_both() -> None:
    message = _error({**BASE, "high": "0.5", "low": "0.7"})
    assert message.startswith("tieredstore.levels[0].high:")
    assert "tieredstore.levels[0].low" in message


@pytest.mark.parametrize(
    ("key", "value"), [("high", "1.5"), ("low", -0.1), ("high", "abc"), ("low", True)]
)
def test_watermark_outside_range_names_the_field(key: str, value: object) -> None:
    message = _error({**BASE, key: value}, "tieredstore.levels[2]")
    assert message.startswith(f"tieredstore.levels[2].{key}:")


def test_unknown_medium_and_fields() -> None:
    message = _error({**BASE, "mediumtype": "NVME"})
    assert message.startswith("tieredstore.levels[0].mediumtype: unknown medium 'NVME'")
    assert "MEM, SSD, HDD" in message
    assert _error({**BASE, "qouta": "1Gi"}).startswith("tieredstore.levels[0].qouta: unknown field")
    assert (
        _error({"mediumtype": "MEM", "quota": "1Gi"}) == "tieredstore.levels[0].path: is required"
    )
    assert "absolute" in _error({**BASE, "path": "relative/dir"})


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"^tier SSD\.high: "):
        TierConfig(Medium.SSD, "/x", 100, high=0.2, low=0.5)
    with pytest.raises(ConfigError, match=r"^tier.mediumtype: unknown medium"):
        TierConfig("TAPE", "/x", 100)  # type: ignore[arg-type]


def test_tier_flag() -> None:
    tier = parse_tier_flag("MEM:/dev/shm/cc:4Gi:0.95:0.7")
    assert tier == TierConfig(Medium.MEM, "/dev/shm/cc", 4 << 30, 0.95, 0.7)
    assert parse_tier_flag("HDD:/mnt/hdd:1Ti").quota == 1 << 40
    with pytest.raises(ConfigError, match=r"^--tier: 'MEM:/x' is not MEDIUM:PATH:QUOTA"):
        parse_tier_flag("MEM:/x")
    with pytest.raises(ConfigError, match=r"^--tier 'MEM:/x:5Gix'\.quota: '5Gix' is not a size"):
        parse_tier_flag("MEM:/x:5Gix")


def test_validate_tiers_sorts_and_refuses_duplicates() -> None:
    hdd = TierConfig(Medium.HDD, "/mnt/hdd", 100)
    mem = TierConfig(Medium.MEM, "/dev/shm/cc", 100)
    ssd = TierConfig(Medium.SSD, "/mnt/ssd", 100)
    assert validate_tiers([hdd, mem, ssd]) == [mem, ssd, hdd]
    with pytest.raises(ConfigError, match="at least one tier"):
        validate_tiers([])
    with pytest.raises(ConfigError, match=r"levels\[1\]\.path: /mnt/ssd/ is already used"):
        validate_tiers([ssd, TierConfig(Medium.HDD, "/mnt/ssd/", 100)])
    with pytest.raises(ConfigError, match="nested"):
        validate_tiers([ssd, TierConfig(Medium.HDD, "/mnt/ssd/hdd", 100)])
    with pytest.raises(ConfigError, match=r"levels\[1\]\.mediumtype: SSD is already used"):
        validate_tiers([ssd, TierConfig(Medium.SSD, "/mnt/ssd2", 100)])
    levels = [
        {"mediumtype": "SSD", "path": "/a", "quota": "1Gi"},
        {"mediumtype": "MEM", "path": "/b", "quota": "1Gi"},
    ]
    assert [t.medium for t in tiers_from_levels(levels)] == [Medium.MEM, Medium.SSD]
