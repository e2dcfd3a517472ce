"""Fixtures for the block store tests: real files on tmpfs (/dev/shm)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
