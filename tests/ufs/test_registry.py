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
    preload,
    register,
    split_uri,
    start_preload,
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


def test_preload_imports_every_sdk_and_warms_s3_up() -> None:
    # In a fresh interpreter: the SDKs load, and a first S3 backend then finds botocore's
    # model loaded (the warm-up made the shared session and its client).
    code = (
        "import sys, cachecluster.ufs.registry as r\n"
        "assert r.preload() == {}, r.preload()\n"
        "assert 'boto3' in sys.modules and 'oss2' in sys.modules\n"
        "import cachecluster.ufs.s3 as s3\n"
        "assert s3._shared_session is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class _BrokenWarmUp(_MemoryBackend):
    @classmethod
    def warm_up(cls) -> None:
        raise RuntimeError("no data files")


def test_preload_reports_what_it_could_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_TARGETS", dict(registry._TARGETS))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    register("nosdk", "cachecluster_no_such_sdk.module:Backend")
    register("brokenwarm", _BrokenWarmUp)
    failed = preload(["local", "nosdk", "brokenwarm"])
    assert set(failed) == {"nosdk", "brokenwarm"}
    assert "no data files" in failed["brokenwarm"]
    assert "pip install cachecluster_no_such_sdk.module" in failed["nosdk"]
    thread = start_preload(["nosdk"])  # never raises: the failure is a debug line
    thread.join(timeout=30)
    assert not thread.is_alive()
