"""``from cachecluster import mount, unmount, list_mounts`` on a live cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.fuse.conftest import FuseCluster, cleanup, sha256, wait_until, write_tree


def test_mount_adds_a_dataset_and_returns_its_path(
    fuse_cluster: FuseCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cachecluster import list_mounts, mount, unmount

    cluster = fuse_cluster.cluster
    monkeypatch.setenv("CACHECLUSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CACHECLUSTER_TOKEN", cluster.token("tnb"))
    files = {"a.bin": os.urandom(3 << 20), "d/b.txt": b"notebook"}
    write_tree(tmp_path / "src", files)
    root = tmp_path / "mnt"
    try:
        path = mount(
            f"local://{tmp_path / 'src'}",
            namespace="tnb",
            root=root,
            master=cluster.master_address,
            metadata_ttl=1.0,
        )
        assert path == str(root / "src")
        assert sha256(Path(path, "a.bin").read_bytes()) == sha256(files["a.bin"])
        second = mount(
            f"local://{tmp_path / 'src' / 'd'}",
            "other",
            namespace="tnb",
            root=root,
            master=cluster.master_address,
        )
        assert Path(second, "b.txt").read_bytes() == b"notebook"
        (record,) = list_mounts()
        assert record["mountpoint"] == str(root)
        assert record["prefix"] == "tnb"
        unmount(second)
        wait_until(lambda: not os.path.exists(second), 5, "the removed dataset vanishes")
        unmount(root)
        assert list_mounts() == []
        assert not os.path.ismount(root)
    finally:
        pid = next((int(r["pid"]) for r in _records(tmp_path)), 0)
        cleanup(root, pid)


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    import json

    folder = tmp_path / "home" / "mounts"
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
