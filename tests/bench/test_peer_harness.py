"""The peer benchmark harness, run tiny: every system, every workload, one round.

It checks the harness, not the speeds: each (system, workload) cell holds a
figure or a stated reason, no cell holds an error, the JSON, Markdown and
PNGs are written, and nothing the suite started is still mounted or running.
With ``CACHECLUSTER_REQUIRE_FUSE=1`` (CI) no system may be missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.peers.suite import SYSTEMS
from bench.peers.suite import main as run_suite
from bench.peers.workloads import WORKLOADS
from cachecluster.common.mountinfo import read_mounts


def mounts_under(root: Path) -> list[str]:
    """Mount points below ``root``."""
    return [m.mount_point for m in read_mounts() if m.mount_point.startswith(str(root))]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (not this one) that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(f"{entry.name}: {command[:200]}")
    return found


def test_tiny_suite_fills_every_cell_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out, scratch, s3_dir = tmp_path / "out", tmp_path / "scratch", tmp_path / "s3"
    code = run_suite(
        [
            "--size-mib", "4", "--small-files", "20", "--model-mib", "8", "--runs", "1",
            "--random-reads", "4", "--timeout", "60", "--no-drop-caches",
            "--out", str(out), "--stamp", "tiny",
            "--scratch", str(scratch), "--s3-dir", str(s3_dir),
        ]
    )  # fmt: skip
    assert code == 0

    assert mounts_under(tmp_path) == []
    assert processes_mentioning(str(tmp_path)) == []
    assert sorted(p.name for p in out.iterdir()) == [
        "tiny-figures.png",
        "tiny-latency.png",
        "tiny.json",
        "tiny.md",
    ]
    for png in ("tiny-figures.png", "tiny-latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    document = json.loads((out / "tiny.json").read_text())
    assert list(document["systems"]) == [cls.name for cls in SYSTEMS]
    summary = document["summary"]
    require_all = os.environ.get("CACHECLUSTER_REQUIRE_FUSE") == "1"
    for system, record in document["systems"].items():
        assert record["status"] in ("ok", "missing"), (system, record["reason"])
        if record["status"] == "missing":
            assert record["reason"], system
            assert not require_all, f"{system} missing in CI: {record['reason']}"
        for workload in WORKLOADS:
            cell = summary[system][workload.id]
            assert ("median" in cell) != ("why" in cell), (system, workload.id, cell)
            if "why" in cell:
                assert not cell["why"].startswith("error"), (system, workload.id, cell["why"])
            if record["status"] == "ok" and workload.id not in SYSTEMS_SKIPS[system]:
                assert cell["median"] > 0, (system, workload.id)
    assert "p50_ms" in summary["boto3-get"]["random_1m"]
    assert summary["boto3-get"]["seq_cold"]["ratio"] == 1.0

    page = (out / "tiny.md").read_text()
    for system in document["systems"]:
        assert system in page
    for workload in WORKLOADS:
        assert workload.title in page


SYSTEMS_SKIPS = {cls.name: set(cls.skips) for cls in SYSTEMS}
