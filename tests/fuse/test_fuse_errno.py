"""Errors of the client become the errno of ``error_map`` (no mount needed)."""

from __future__ import annotations

import errno
import logging
from typing import Any, cast

import pyfuse3
import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.common.errors import NotFound, PermissionDenied, UfsError
from cachecluster.fuse.ops import CacheClusterOperations, MountView


class FailingClient:
    """A client whose ``stat`` raises the exception it was given."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def stat(self, path: str) -> Any:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (NotFound("no such file"), errno.ENOENT),
        (PermissionDenied("not your namespace"), errno.EACCES),
        (UfsError("bucket unreachable"), errno.EIO),
        (RuntimeError("bug"), errno.EIO),
    ],
)
async def test_errors_become_errno(
    exc: Exception, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    client = cast(AsyncClient, FailingClient(exc))
    ops = CacheClusterOperations(client, MountView("ns/ds"), attr_timeout=1.0)
    with caplog.at_level(logging.DEBUG), pytest.raises(pyfuse3.FUSEError) as caught:
        await ops.lookup(pyfuse3.ROOT_INODE, pyfuse3.FileNameT(b"a.bin"), cast(Any, None))
    assert caught.value.errno == code
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert bool(errors) == (code == errno.EIO)  # EIO always leaves a line in the log


async def test_open_for_writing_is_erofs() -> None:
    client = cast(AsyncClient, FailingClient(NotFound("x")))
    ops = CacheClusterOperations(client, MountView(""), attr_timeout=1.0)
    with pytest.raises(pyfuse3.FUSEError) as caught:
        await ops.open(pyfuse3.ROOT_INODE, 0o1, cast(Any, None))
    assert caught.value.errno == errno.EROFS
