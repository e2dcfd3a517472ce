"""Fixtures the UFS backend tests share."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own in a shared bucket."""
    return f"t-{uuid.uuid4().hex[:12]}"
