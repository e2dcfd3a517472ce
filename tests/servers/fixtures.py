"""pytest fixtures for the servers tests need: real servers on 127.0.0.1, stopped at the end.

Imported by ``tests/conftest.py``; keep this file to fixtures and small helpers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.oss_server import OssTestServer
from tests.servers.seaweed import SeaweedS3

__all__ = ["oss_server", "s3_server"]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """SeaweedFS with its S3 gateway (about 3 s to start).

    Offers ``.endpoint``, ``.access_key``/``.secret_key``, ``.client()``,
    ``.create_bucket(name)`` and ``.backend_options()``.
    """
    server = SeaweedS3.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oss_server() -> Iterator[OssTestServer]:
    """The in-process OSS-protocol server: ``.endpoint``, ``.access_key_id``/``_secret``."""
    with OssTestServer() as server:
        yield server
