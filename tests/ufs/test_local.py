"""The local backend: the conformance suite on a temporary directory, plus local specifics."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cachecluster.common.errors import ConfigError, InvalidPath, NotFound, VersionChanged
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.local import LocalBackend
from cachecluster.ufs.registry import create_backend
from tests.ufs.conformance import UfsConformance, payload


class LocalWriter:
    """Writes files under a local root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def make_dir(self, path: str) -> None:
        (self.root / path).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def writer(root: Path) -> LocalWriter:
    return LocalWriter(root)


@pytest.fixture
async def backend(root: Path) -> AsyncIterator[UfsBackend]:
    ufs = create_backend(f"local://{root}")
    yield ufs
    await ufs.close()


class TestLocalConformance(UfsConformance):
    """Everything every backend does."""


async def test_file_scheme_and_version_format(root: Path, writer: LocalWriter) -> None:
    writer.write("f.bin", b"12345")
    ufs = create_backend(f"file://{root}")
    assert isinstance(ufs, LocalBackend)
    status = await ufs.stat("f.bin")
    st = os.stat(root / "f.bin")
    assert status.version == f"5-{st.st_mtime_ns}"
    await ufs.close()


async def test_in_place_rewrite_with_same_size_changes_version(
    backend: UfsBackend, writer: LocalWriter, root: Path
) -> None:
    writer.write("same.bin", b"aaaa")
    old = await backend.stat("same.bin")
    (root / "same.bin").write_bytes(b"bbbb")
    os.utime(root / "same.bin", ns=(0, old_mtime_ns(old.version) + 1000))
    with pytest.raises(VersionChanged):
        await backend.read("same.bin", 0, 4, version=old.version)


def old_mtime_ns(version: str) -> int:
    return int(version.split("-", 1)[1])


async def test_symlink_to_a_file_is_followed(
    backend: UfsBackend, writer: LocalWriter, root: Path
) -> None:
    writer.write("real.bin", payload(10))
    (root / "link.bin").symlink_to(root / "real.bin")
    (root / "dangling").symlink_to(root / "nothing-here")
    assert await backend.read("link.bin", 0, 10) == payload(10)
    assert [e.path for e in await backend.list("")] == ["link.bin", "real.bin"]


async def test_read_of_a_directory_is_not_found(backend: UfsBackend, writer: LocalWriter) -> None:
    writer.make_dir("adir")
    with pytest.raises(NotFound, match="adir"):
        await backend.read("adir", 0, 10)


def test_relative_local_uri_is_refused() -> None:
    with pytest.raises(InvalidPath, match="three slashes"):
        create_backend("local://relative/dir")
    with pytest.raises(InvalidPath):
        create_backend("local:///data/../../etc")


def test_unknown_local_option_is_a_config_error(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"fs\.local\.bogus"):
        create_backend(f"local://{root}", {"fs.local.bogus": "1"})
