"""The local cluster's layout, runtime YAML and process records (no processes started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cachecluster.cli import context
from cachecluster.common.errors import ConfigError
from cachecluster.local import layout
from cachecluster.local.layout import (
    ClusterLayout,
    live_processes,
    load_runtime_file,
    process_alive,
    process_start_ticks,
    tier_flag,
)
from cachecluster.worker.tiers import Medium, TierConfig, parse_tier_flag

RUNTIME_YAML = """\
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: shared-dataset, namespace: share}
spec:
  mounts:
  - mountPoint: oss://bucket/dir
    name: hadoop
    path: "/"
---
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata: {name: shared-dataset, namespace: share}
spec:
  replicas: 3
  tieredstore:
    levels:
    - mediumtype: SSD
      path: /mnt/ssd
      quota: 10Gi
    - mediumtype: MEM
      path: /dev/shm
      quota: 4Gi
      high: "0.95"
      low: "0.7"
"""


def test_cluster_file_name_matches_the_cli() -> None:
    assert layout.CLUSTER_FILE == context.CLUSTER_FILE


def test_default_tiers_are_per_worker_and_per_home(tmp_path: Path) -> None:
    one = ClusterLayout(tmp_path / "a")
    other = ClusterLayout(tmp_path / "b")
    assert one.shm_root != other.shm_root
    tiers = one.default_tiers(1)
    assert [t.medium for t in tiers] == [Medium.MEM, Medium.SSD]
    assert tiers[0].path == str(one.shm_root / "w1")
    assert tiers[1].path == str(tmp_path / "a" / "tiers" / "w1" / "ssd")
    assert one.default_tiers(0)[0].path != tiers[0].path


def test_tier_templates_get_a_subfolder_per_worker(tmp_path: Path) -> None:
    templates = [parse_tier_flag(f"MEM:{tmp_path}/mem:1Gi:0.9:0.5")]
    tiers = ClusterLayout(tmp_path).worker_tiers(templates, 2)
    assert tiers[0].path == f"{tmp_path}/mem/w2"
    assert tiers[0].quota == 1 << 30 and tiers[0].high == 0.9 and tiers[0].low == 0.5
    assert parse_tier_flag(tier_flag(tiers[0])) == tiers[0]


def test_runtime_yaml_gives_replicas_and_tiers(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(RUNTIME_YAML)
    runtime = load_runtime_file(path)
    assert runtime.kind == "JindoRuntime" and runtime.name == "shared-dataset"
    assert runtime.workers == 3
    assert runtime.tiers is not None
    assert [(t.medium, t.path, t.quota) for t in runtime.tiers] == [
        (Medium.MEM, "/dev/shm", 4 << 30),
        (Medium.SSD, "/mnt/ssd", 10 << 30),
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("kind: Dataset\nspec: {}\n", "kind"),
        ("kind: CacheRuntime\nspec: {replicas: zero}\n", "spec.replicas"),
        ("kind: CacheRuntime\nspec: {replicas: 0}\n", "spec.replicas"),
        ("kind: CacheRuntime\nspec: {tieredstore: {levels: []}}\n", "spec.tieredstore.levels"),
        (
            "kind: CacheRuntime\nspec:\n  tieredstore:\n    levels:\n"
            "    - {mediumtype: MEM, path: /dev/shm, quota: 5Gix}\n",
            "spec.tieredstore.levels[0].quota",
        ),
        ("kind: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_runtime_yaml_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_runtime_file(path)
    assert field in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_recorded_process_is_told_from_a_reused_pid() -> None:
    me = os.getpid()
    ticks = process_start_ticks(me)
    assert ticks is not None
    assert process_alive(me, ticks)
    assert not process_alive(me, ticks + 1)  # same pid, another start time: not ours
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid, None)
    record = {
        "master_pid": me,
        "master_start_ticks": ticks,
        "workers": [{"id": "w0", "pid": child.pid, "start_ticks": 1}],
    }
    assert live_processes(record) == [("master", me)]


def test_tier_flag_refuses_a_colon_in_the_path() -> None:
    tier = TierConfig(Medium.SSD, "/tmp/a:b", 1 << 20)
    with pytest.raises(ConfigError):
        tier_flag(tier)
