"""The worker as a pod runs it: listen on every address, announce another one.

A pod's worker binds ``0.0.0.0`` and announces its pod IP
(``--advertise-host $(POD_IP)``). Here a real worker process binds ``0.0.0.0``
and announces ``127.0.0.2`` (a loopback address it does not name in
``--host``): the master must hand out that address, and a reader must get
blocks through it.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from cachecluster.client.data_conn import DataConnection
from cachecluster.common.errors import ConfigError
from cachecluster.worker.config import build_worker_config
from tests.worker.test_worker_process import (
    BLOCK,
    Processes,
    apply_local_dataset,
    file_status,
    master_view,
    processes,
    read_file,
)

__all__ = ["processes"]  # the fixture, used by name below

ADVERTISED = "127.0.0.2"


async def test_worker_announces_the_advertised_host(processes: Processes, tmp_path: Path) -> None:
    ufs = tmp_path / "ufs"
    ufs.mkdir()
    data = random.Random(7).randbytes(2 * BLOCK + 5)
    (ufs / "f.bin").write_bytes(data)
    master = (await asyncio.to_thread(processes.master().endpoint))["grpc"]
    await apply_local_dataset(master, ufs)
    status = await file_status(master, "f.bin")
    worker = processes.worker(
        master,
        tmp_path / "w",
        "--id",
        "pod-worker-0",
        "--host",
        "0.0.0.0",
        "--advertise-host",
        ADVERTISED,
        "--unix-socket",
        "none",
        "--tier",
        f"MEM:{tmp_path / 'mem'}:16Mi",
    )
    endpoint = await asyncio.to_thread(worker.endpoint)
    assert endpoint["host"] == ADVERTISED
    deadline = asyncio.get_running_loop().time() + 10
    seen = await master_view(master, "pod-worker-0")
    while seen is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        seen = await master_view(master, "pod-worker-0")
    assert seen is not None, worker.log_text()
    assert seen.endpoint.host == ADVERTISED
    async with await DataConnection.connect(seen.endpoint.host, seen.endpoint.data_port) as conn:
        assert await read_file(conn, status) == data
    assert await asyncio.to_thread(worker.terminate) == 0


@pytest.mark.parametrize("bad", ["0.0.0.0", "", "$(POD_IP)", "a b"])
def test_bad_advertise_host_is_one_line(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_worker_config(master="127.0.0.1:1", home=tmp_path, worker_id="w0", advertise_host=bad)
    assert str(caught.value).startswith("--advertise-host:")
    assert "\n" not in str(caught.value)


def test_advertise_host_defaults_to_none(tmp_path: Path) -> None:
    config = build_worker_config(master="127.0.0.1:1", home=tmp_path, worker_id="w0")
    assert config.advertise_host is None
