"""Reference datasets: dataset://<ns>/<name>[/subpath] reads the source's mounts and cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cachecluster.common.errors import InvalidArgument, InvalidPath, NotFound
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.metadata import EntryStatus, MetadataCache
from cachecluster.master.references import (
    effective_access_modes,
    parse_reference,
    referrers,
    resolve_source,
)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ufs"
    write(root / "train" / "a.bin", b"a" * 10)
    write(root / "train" / "sub" / "b.bin", b"b" * 20)
    write(root / "eval" / "c.bin", b"c" * 30)
    write(tmp_path / "other" / "d.bin", b"d" * 40)
    return root


def source_spec(tree: Path, **extra: Any) -> dict[str, Any]:
    return {"mounts": [{"mountPoint": f"local://{tree}", "name": "m0"}], **extra}


def ref_spec(point: str, **extra: Any) -> dict[str, Any]:
    return {"mounts": [{"mountPoint": point}], **extra}


@pytest.fixture
async def cache(tree: Path) -> AsyncIterator[MetadataCache]:
    registry = DatasetRegistry()
    registry.apply("share", "src", source_spec(tree))
    metadata = MetadataCache(registry, sync_interval=30)
    try:
        yield metadata
    finally:
        await metadata.close()


async def listing(cache: MetadataCache, ns: str, name: str, path: str = "") -> list[EntryStatus]:
    entries, token = await cache.list_status(ns, name, path, recursive=True)
    assert token == ""
    return entries


async def test_whole_reference_reads_the_source_mounts(cache: MetadataCache) -> None:
    cache.registry.apply("ref", "all", ref_spec("dataset://share/src"))
    source = {e.path: e for e in await listing(cache, "share", "src")}
    mirror = {e.path: e for e in await listing(cache, "ref", "all")}
    assert sorted(mirror) == ["eval/c.bin", "train/a.bin", "train/sub/b.bin"]
    for path, entry in mirror.items():
        # the same mount id and mount path: the same block ids, the same cached blocks
        assert (entry.mount_id, entry.mount_path, entry.version) == (
            source[path].mount_id,
            source[path].mount_path,
            source[path].version,
        )
    assert cache.registry.get("ref", "all").mounts == ()  # no mount (and no cache) of its own


async def test_subpath_sees_only_its_subtree(cache: MetadataCache) -> None:
    cache.registry.apply("ref", "train", ref_spec("dataset://share/src/train"))
    paths = [e.path for e in await listing(cache, "ref", "train")]
    assert paths == ["a.bin", "sub/b.bin"]
    status = await cache.get_status("ref", "train", "sub/b.bin")
    assert (status.size, status.mount_path) == (20, "train/sub/b.bin")
    root = await cache.get_status("ref", "train", "")
    assert root.is_dir and root.path == ""
    children, _ = await cache.list_status("ref", "train", "")
    assert [e.path for e in children] == ["a.bin", "sub"]
    with pytest.raises(NotFound):
        await cache.get_status("ref", "train", "eval/c.bin")
    for escape in ("../eval/c.bin", "sub/../../eval/c.bin", "/../c.bin"):
        with pytest.raises(InvalidPath):
            await cache.get_status("ref", "train", escape)
        with pytest.raises(InvalidPath):
            await cache.list_status("ref", "train", escape)


def test_dotdot_subpath_refused(tree: Path) -> None:
    registry = DatasetRegistry()
    registry.apply("share", "src", source_spec(tree))
    with pytest.raises(InvalidArgument, match=r"\.\."):
        registry.apply("ref", "bad", ref_spec("dataset://share/src/../other"))
    with pytest.raises(InvalidArgument):
        parse_reference("dataset://share/src/../../x")
    assert parse_reference("dataset://share/src/a/./b/").subpath == "a/b"
    assert [r.ref for r in registry.datasets()] == ["share/src"]


def test_chaining_refused_naming_both(tree: Path) -> None:
    registry = DatasetRegistry()
    registry.apply("share", "src", source_spec(tree))
    registry.apply("ref", "r1", ref_spec("dataset://share/src"))
    with pytest.raises(InvalidArgument) as caught:
        registry.apply("ref", "r2", ref_spec("dataset://ref/r1"))
    message = str(caught.value)
    assert "ref/r2" in message and "ref/r1" in message and "chain" in message
    # a referenced dataset cannot become a reference either
    registry.apply("other", "src2", source_spec(tree))
    with pytest.raises(InvalidArgument, match="referenced by ref/r1"):
        registry.apply("share", "src", ref_spec("dataset://other/src2"))
    with pytest.raises(NotFound, match="share/missing"):
        registry.apply("ref", "r3", ref_spec("dataset://share/missing"))
    assert [r.ref for r in registry.datasets()] == ["other/src2", "ref/r1", "share/src"]


def test_source_cannot_be_deleted_while_referenced(tree: Path) -> None:
    registry = DatasetRegistry()
    registry.apply("share", "src", source_spec(tree))
    registry.apply("ref", "r1", ref_spec("dataset://share/src"))
    registry.apply("team", "r2", ref_spec("dataset://share/src/train"))
    assert referrers(registry, "share", "src") == ["ref/r1", "team/r2"]
    with pytest.raises(InvalidArgument) as caught:
        registry.delete("share", "src")
    assert "ref/r1" in str(caught.value) and "team/r2" in str(caught.value)
    assert registry.get("share", "src")
    registry.delete("ref", "r1")
    registry.delete("team", "r2")
    assert registry.delete("share", "src") is not None


def test_read_only_follows_the_source(tree: Path) -> None:
    registry = DatasetRegistry()
    registry.apply("share", "ro", source_spec(tree))
    registry.apply("share", "rw", source_spec(tree, accessModes=["ReadWriteMany"]))
    registry.apply("ref", "a", ref_spec("dataset://share/ro", accessModes=["ReadWriteMany"]))
    registry.apply("ref", "b", ref_spec("dataset://share/rw", accessModes=["ReadWriteMany"]))
    assert effective_access_modes(registry, registry.get("ref", "a")) == ("ReadOnlyMany",)
    assert effective_access_modes(registry, registry.get("ref", "b")) == ("ReadWriteMany",)
    source, subpath = resolve_source(registry, registry.get("ref", "a"))
    assert (source.ref, subpath) == ("share/ro", "")


async def test_mounts_added_and_removed_on_a_live_dataset(tree: Path, tmp_path: Path) -> None:
    registry = DatasetRegistry()
    one = {"mounts": [{"mountPoint": f"local://{tree}", "name": "main", "path": "/main"}]}
    registry.apply("share", "live", one)
    registry.apply("ref", "live", ref_spec("dataset://share/live"))
    cache = MetadataCache(registry, sync_interval=30)
    try:
        assert len(await listing(cache, "ref", "live")) == 3
        two = {
            "mounts": [
                *one["mounts"],
                {"mountPoint": f"local://{tmp_path / 'other'}", "name": "extra", "path": "/x"},
            ]
        }
        registry.apply("share", "live", two)
        await cache.sync_mounts()
        paths = [e.path for e in await listing(cache, "ref", "live")]
        assert "x/d.bin" in paths and len(paths) == 4
        registry.apply(
            "share",
            "live",
            {"mounts": [{"mountPoint": f"local://{tmp_path / 'other'}", "name": "extra"}]},
        )
        await cache.sync_mounts()
        assert [e.path for e in await listing(cache, "ref", "live")] == ["d.bin"]
        with pytest.raises(NotFound):
            await cache.get_status("ref", "live", "main/train/a.bin")
        assert all(
            key[0] == registry.get("share", "live").mounts[0].mount_id for key in cache._listings
        )
    finally:
        await cache.close()
