"""Fixtures for the block store tests: real files on tmpfs (/dev/shm)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.servers.seaweed import SeaweedS3
from tests.worker.s3_opener import Env, opener_env

SHM = "/dev/shm"


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh directory on tmpfs, removed afterwards."""
    base = SHM if os.path.isdir(SHM) else None
    path = Path(tempfile.mkdtemp(prefix="cc-worker-test-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def env(s3_server: SeaweedS3, shm_dir: Path) -> AsyncIterator[Env]:
    """The worker's opener over a fresh SeaweedFS bucket (see ``s3_opener.py``)."""
    async with opener_env(s3_server, shm_dir) as built:
        yield built
