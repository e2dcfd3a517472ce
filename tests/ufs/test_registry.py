"""The scheme registry: lazy imports, URI splitting, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cachecluster.common.errors import InvalidPath, UnknownScheme
from cachecluster.ufs import registry
from cachecluster.ufs.base import FileStatus, UfsBackend
from cachecluster.ufs.registry import (
    UfsLocation,
    backend_class,
    create_backend,
    register,
    split_uri,
    supported_schemes,
)


def test_unknown_scheme_is_one_clear_line() -> None:
    with pytest.raises(UnknownScheme) as info:
        create_backend("ftp://x/y")
    assert str(info.value) == (
        "unknown UFS scheme 'ftp' in 'ftp://x/y' (supported: file, local, oss, s3)"
    )


def test_uri_without_scheme() -> None:
    with pytest.raises(UnknownScheme, match="has no scheme"):
        create_backend("/just/a/path")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/dir/sub", UfsLocation("s3", "bucket", "dir/sub")),
        ("s3://bucket/dir/sub/", UfsLocation("s3", "bucket", "dir/sub")),
        ("oss://bucket", UfsLocation("oss", "bucket", "")),
        ("OSS://bucket/a//b", UfsLocation("oss", "bucket", "a/b")),
        ("local:///mnt/data", UfsLocation("local", "/mnt/data", "")),
        ("file:///mnt/data/", UfsLocation("file", "/mnt/data", "")),
        ("local:///", UfsLocation("local", "/", "")),
    ],
)
def test_split_uri(uri: str, expected: UfsLocation) -> None:
    assert split_uri(uri) == expected


@pytest.mark.parametrize("uri", ["s3:///no-bucket", "oss://bucket/../x", "local://host/dir"])
def test_split_uri_refuses_malformed(uri: str) -> None:
    with pytest.raises(InvalidPath):
        split_uri(uri)


def test_importing_the_registry_loads_no_sdk() -> None:
    code = (
        "import sys, cachecluster.ufs.registry as r\n"
        "r.create_backend('local:///tmp')\n"
        "assert 'boto3' not in sys.modules and 'oss2' not in sys.modules, 'SDK imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class _MemoryBackend(UfsBackend):
    async def list(self, path: str = "", *, recursive: bool = False) -> list[FileStatus]:
        return []

    async def stat(self, path: str) -> FileStatus:
        return FileStatus(path="", size=0, version="", mtime=0.0, is_dir=True)

    async def read_into(
        self, path: str, offset: int, buf: memoryview, *, version: str | None = None
    ) -> int:
        return 0


def test_register_a_class_and_refuse_a_taken_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registrations are process-wide: work on copies that the monkeypatch restores.
    monkeypatch.setattr(registry, "_TARGETS", dict(registry._TARGETS))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    with pytest.raises(ValueError, match="already registered"):
        register("s3", _MemoryBackend)
    register("memtest", _MemoryBackend)
    assert "memtest" in supported_schemes()
    assert backend_class("memtest") is _MemoryBackend
