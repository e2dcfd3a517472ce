"""The peer benchmark harness, run tiny: every system, every workload, one round.

It checks the harness, not the speeds: each (system, workload) cell holds a
figure or a stated reason, no cell holds an error, the JSON, Markdown and
PNGs are written, each system's cache is on the medium ``--peer-cache``
claims, and nothing the suite started is still mounted, running or on disk.
With ``CACHECLUSTER_REQUIRE_FUSE=1`` (CI) no system may be missing. The
tmpfs mode runs one system of each kind; the medium check is also compared
with the kernel's mount table, and a wrong medium is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.peers import suite
from bench.peers.cache_medium import medium_of
from bench.peers.suite import SYSTEMS
from bench.peers.suite import main as run_suite
from bench.peers.workloads import WORKLOADS
from cachecluster.common.mountinfo import mount_holding, read_mounts

PEERS = {"fsspec-blockcache", "fsspec-simplecache", "rclone", "s3fs-fuse"}
OURS = {"cachecluster-client", "cachecluster-fuse"}
NO_CACHE = {"boto3-get", "boto3-ranged"}
REFERENCES = {"tmpfs-copy", "pyfuse3-minimal", "get-store"}
TMPFS_SYSTEMS = ["boto3-get", "fsspec-simplecache", "rclone", "cachecluster-fuse"]
TINY = [
    "--size-mib", "4", "--small-files", "20", "--model-mib", "8", "--runs", "1",
    "--random-reads", "4", "--timeout", "60", "--no-drop-caches", "--stamp", "tiny",
]  # fmt: skip


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


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a disk: ``tmp_path``, or one beside the repository when /tmp is tmpfs."""
    if medium_of(tmp_path).kind == "disk":
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix=".bench-test-", dir=Path(__file__).parents[2]))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A folder on /dev/shm (skips where there is none), removed afterwards."""
    if not suite.SHM.is_dir():
        pytest.skip("no /dev/shm here")
    folder = Path(tempfile.mkdtemp(prefix="bench-test-", dir=suite.SHM))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_tiny(tmp_path: Path, *flags: str) -> dict[str, Any]:
    """The tiny suite with ``flags``; its JSON, after checking it left nothing behind."""
    out, s3_dir = tmp_path / "out", tmp_path / "s3"
    code = run_suite([*TINY, "--out", str(out), "--s3-dir", str(s3_dir), *flags])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "tiny-figures.png",
        "tiny-latency.png",
        "tiny.json",
        "tiny.md",
    ]
    for png in ("tiny-figures.png", "tiny-latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document: dict[str, Any] = json.loads((out / "tiny.json").read_text())
    document["page"] = (out / "tiny.md").read_text()
    return document


def assert_nothing_left(*folders: Path) -> None:
    """No mount, no process and no file of the suite under ``folders``."""
    for folder in folders:
        assert mounts_under(folder) == []
        assert processes_mentioning(str(folder)) == []
        assert [p.name for p in folder.iterdir() if p.name.startswith("cc-peers")] == []


def assert_every_cell(document: dict[str, Any]) -> None:
    """Every system ran or is missing with a reason; every cell has a figure or a reason."""
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


def cache_kinds(document: dict[str, Any]) -> dict[str, str | None]:
    """Each system's cache medium kind as the run recorded it (None: no cache)."""
    kinds: dict[str, str | None] = {}
    for name, record in document["systems"].items():
        assert "error" not in record["cache"], (name, record["cache"])
        medium = record["cache"]["medium"]
        kinds[name] = medium["kind"] if medium else None
    return kinds


def test_tiny_suite_fills_every_cell_and_leaves_nothing_behind(
    tmp_path: Path, disk_dir: Path, shm_dir: Path
) -> None:
    document = run_tiny(tmp_path, "--peer-cache-dir", str(disk_dir), "--scratch", str(shm_dir))
    assert_nothing_left(tmp_path, disk_dir, shm_dir)
    assert document["peer_cache"] == "disk"
    assert document["command"].startswith("python -m bench --peer-cache disk ")
    kinds = cache_kinds(document)
    assert {kinds[name] for name in PEERS} == {"disk"}
    assert {kinds[name] for name in OURS} == {"tmpfs"}  # the MEM tier, in both modes
    # the references: the objects as tmpfs files, read in-process or through pyfuse3, and
    # the GET that keeps a tmpfs copy
    assert {kinds[name] for name in REFERENCES} == {"tmpfs"}
    assert {kinds[name] for name in NO_CACHE} == {None}
    for name in PEERS:
        assert document["systems"][name]["cache"]["medium"]["path"].startswith(str(disk_dir))
    assert list(document["systems"]) == [cls.name for cls in SYSTEMS]
    assert_every_cell(document)
    summary = document["summary"]
    assert "p50_ms" in summary["boto3-get"]["random_1m"]
    assert summary["boto3-get"]["seq_cold"]["ratio"] == 1.0

    page = document["page"]
    assert page.startswith("# Peer benchmark tiny: peer caches on disk\n")
    assert "Peers' caches on disk" in page
    for system in document["systems"]:
        assert system in page
    for workload in WORKLOADS:
        assert workload.title in page
    assert page.count("cache on: disk (") == len(PEERS)
    assert "a plain tmpfs read (tmpfs-copy) is" in page  # each warm target set against it
    assert page.count("the least pyfuse3 mount (pyfuse3-minimal) is") == 5  # the mount's
    assert page.count("a GET that keeps a tmpfs copy (get-store) is") == 6  # each cold target
    assert_cpu_counted(document)
    assert "## CPU seconds a figure cost (median): S3 server + the rest" in page


def assert_cpu_counted(document: dict[str, Any]) -> None:
    """Each figure has its CPU split; over the run, S3 and the rest both spent some."""
    totals = {"cpu_s3": 0.0, "cpu_rest": 0.0}
    for system, record in document["systems"].items():
        for workload, cell in record["workloads"].items():
            for side in totals:
                assert len(cell[side]) == len(cell["values"]), (system, workload, side)
                assert all(seconds >= 0 for seconds in cell[side]), (system, workload, side)
                totals[side] += sum(cell[side])
    assert totals["cpu_s3"] > 0 and totals["cpu_rest"] > 0
    # boto3's reads make both SeaweedFS and the suite's own process work.
    direct = document["systems"]["boto3-get"]["workloads"].values()
    assert sum(sum(cell["cpu_s3"]) for cell in direct) > 0
    assert sum(sum(cell["cpu_rest"]) for cell in direct) > 0


def test_tiny_suite_with_every_cache_on_tmpfs(tmp_path: Path, shm_dir: Path) -> None:
    document = run_tiny(
        tmp_path, "--peer-cache", "tmpfs", "--scratch", str(shm_dir),
        "--systems", ",".join(TMPFS_SYSTEMS),
    )  # fmt: skip
    assert_nothing_left(tmp_path, shm_dir)
    assert document["peer_cache"] == "tmpfs"
    assert list(document["systems"]) == TMPFS_SYSTEMS
    left_out = [cls.name for cls in SYSTEMS if cls.name not in TMPFS_SYSTEMS]
    assert document["not_selected"] == left_out
    assert_every_cell(document)
    for name, kind in cache_kinds(document).items():
        assert kind == (None if name in NO_CACHE else "tmpfs"), name
    page = document["page"]
    assert page.startswith("# Peer benchmark tiny: peer caches on tmpfs\n")
    assert "Every cache in RAM (`--peer-cache tmpfs`)" in page
    assert f"left out by --systems): {', '.join(left_out)}" in page
    assert "fewer than the 3 issue 6 asks" in page


def test_medium_agrees_with_the_mount_table(tmp_path: Path) -> None:
    for path in (tmp_path, Path("/dev/shm"), Path.home() / ".cache" / "no-such-folder"):
        if not path.parent.exists():
            continue
        medium = medium_of(path)
        holding = mount_holding(path if path.exists() else path.parent)
        assert holding is not None
        assert (medium.fstype, medium.mount_point) == (holding.fstype, holding.mount_point)
        assert (medium.kind == "tmpfs") == (holding.fstype in ("tmpfs", "ramfs"))


def test_a_cache_folder_on_the_wrong_medium_is_refused_in_one_line(
    tmp_path: Path, disk_dir: Path, shm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = run_suite([*TINY, "--out", str(out), "--peer-cache-dir", str(shm_dir)])
    assert code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    assert "--peer-cache disk" in line and str(shm_dir) in line and "tmpfs" in line
    assert list(shm_dir.iterdir()) == [] and not out.exists()

    scratch = disk_dir / "scratch"
    code = run_suite([*TINY, "--out", str(out), "--peer-cache", "tmpfs", "--scratch", str(scratch)])
    assert code == 2
    line = capsys.readouterr().err.strip()
    assert "--peer-cache tmpfs" in line and "not tmpfs" in line and "\n" not in line
    assert list(scratch.iterdir()) == [] and not out.exists()


def test_tmpfs_asked_without_dev_shm_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(suite, "SHM", tmp_path / "no-shm")
    code = run_suite([*TINY, "--out", str(tmp_path / "out"), "--peer-cache", "tmpfs"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"python -m bench: --peer-cache tmpfs: {tmp_path}/no-shm is missing (no tmpfs for the "
        "caches)"
    )


SYSTEMS_SKIPS = {cls.name: set(cls.skips) for cls in SYSTEMS}
