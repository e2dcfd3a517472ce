"""Hostile bytes on a real worker process's data port (hypothesis-driven).

Garbage, truncated frames, oversized lengths and well-formed frames with bad
fields are sent on fresh TCP connections to worker ``w0`` of the read
cluster. After every example the worker process is still alive and a
well-behaved client, on a connection opened after the attack, reads a block
straight from that worker (no fallback to hide a failure) with correct bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator

import msgpack
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachecluster.client.client import AsyncClient, BlockPlacementInfo
from cachecluster.client.data_conn import DataConnection
from cachecluster.common import frames
from cachecluster.common.frames import BlockRef
from cachecluster.local.cluster import WorkerProcess
from cachecluster.protos import master_pb2
from tests.integration.conftest import BLOCK_SIZE, ReadCluster, list_workers

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PREFIX = struct.Struct(">II")
TARGET_FILE = "dir/several-blocks.bin"


class Target:
    """The attacked worker and a block it serves, with the bytes it must return."""

    def __init__(
        self,
        runner: asyncio.Runner,
        worker: WorkerProcess,
        block: BlockPlacementInfo,
        key: BlockRef,
        expected: bytes,
    ) -> None:
        self.runner = runner
        self.worker = worker
        self.block = block
        self.key = key
        self.expected = expected

    def __repr__(self) -> str:  # hypothesis prints it: not a megabyte of block bytes
        return f"Target({self.worker.worker_id}, block {self.block.index})"

    def attack(self, data: bytes) -> None:
        """Send ``data`` on a fresh connection, half-close, drain replies until EOF or 5 s."""
        with socket.create_connection(("127.0.0.1", self.worker.data_port), timeout=5) as sock:
            with contextlib.suppress(OSError):  # the worker may hang up on an early bad byte
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while sock.recv(1 << 16):
                    pass
        self.check_serving()

    def check_serving(self) -> None:
        """The worker runs and serves a good block read on a new connection."""
        assert self.worker.alive, f"worker {self.worker.worker_id} died"
        self.runner.run(asyncio.wait_for(self._good_read(), 10))

    async def _good_read(self) -> None:
        conn = await DataConnection.connect("127.0.0.1", self.worker.data_port)
        try:
            buf = bytearray(BLOCK_SIZE)
            got = await conn.read_block(self.block.block_id, self.key, 0, BLOCK_SIZE, buf)
            assert bytes(buf[:got]) == self.expected
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def target(read_cluster: ReadCluster) -> Iterator[Target]:
    """Worker w0 and the first block of a test file, resolved once."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        path = read_cluster.path("local", TARGET_FILE)

        async def resolve() -> tuple[BlockPlacementInfo, BlockRef]:
            async with AsyncClient(read_cluster.cluster.master_address) as client:
                info = await client.stat(path)
                block = (await client.blocks(path))[1]
            return block, BlockRef(info.mount_id, info.mount_path, info.version, block.index)

        block, key = runner.run(resolve())
        data = read_cluster.files[TARGET_FILE]
        expected = data[block.offset : block.offset + block.length]
        target = Target(runner, read_cluster.cluster.workers[0], block, key, expected)
        target.check_serving()
        yield target


def _frame(header: object, payload_length: int = 0) -> bytes:
    body: bytes = msgpack.packb(header, use_bin_type=True)
    return PREFIX.pack(len(body), payload_length) + body


def _read_header(block_id: str, ref: BlockRef, **changes: object) -> dict[str, object]:
    header: dict[str, object] = {
        "op": "read",
        "id": 1,
        "block": block_id,
        "key": {"mount": ref.mount, "path": ref.path, "version": ref.version, "index": ref.index},
        "off": 0,
        "len": 4096,
    }
    header.update(changes)
    return header


@FUZZ
@given(data=st.binary(min_size=1, max_size=4096))
def test_garbage_bytes(target: Target, data: bytes) -> None:
    target.attack(data)


@FUZZ
@given(cut=st.integers(min_value=1, max_value=200), pipelined=st.booleans())
def test_truncated_frames(target: Target, cut: int, pipelined: bool) -> None:
    good = _frame(_read_header(target.block.block_id, target.key))
    data = (good if pipelined else b"") + good[: max(1, len(good) - cut)]
    target.attack(data)


@FUZZ
@given(
    header_length=st.integers(min_value=frames.MAX_HEADER + 1, max_value=0xFFFFFFFF),
    payload_length=st.integers(min_value=0, max_value=0xFFFFFFFF),
    tail=st.binary(max_size=64),
)
def test_oversized_lengths(
    target: Target, header_length: int, payload_length: int, tail: bytes
) -> None:
    target.attack(PREFIX.pack(header_length, payload_length) + tail)


_MSGPACK_INTS = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    _MSGPACK_INTS,
    st.text(max_size=50),
    st.binary(max_size=50),
    st.lists(_MSGPACK_INTS, max_size=3),
    st.dictionaries(st.text(max_size=8), _MSGPACK_INTS, max_size=3),
)


@FUZZ
@given(
    field=st.sampled_from(["op", "id", "block", "key", "off", "len", "cap"]),
    value=_FIELD_VALUES,
    payload_length=st.sampled_from([0, 0, 1, 1 << 20]),
)
def test_well_framed_requests_with_bad_fields(
    target: Target, field: str, value: object, payload_length: int
) -> None:
    header = _read_header(target.block.block_id, target.key, **{field: value})
    target.attack(_frame(header, payload_length))


def test_bad_keys_and_huge_reads_are_refused(target: Target) -> None:
    key = target.key
    bad = [
        _read_header(target.block.block_id, key, len=frames.DEFAULT_MAX_PAYLOAD * 4),
        _read_header(target.block.block_id, key, off=BLOCK_SIZE * 10),
        _read_header("0" * 32, key),  # the id does not match the key
        _read_header(
            target.block.block_id,
            key,
            key={"mount": key.mount, "path": "../../etc/passwd", "version": "x", "index": 0},
        ),
        _read_header(
            target.block.block_id,
            key,
            key={"mount": "no-such-mount", "path": key.path, "version": key.version, "index": 0},
        ),
    ]
    for header in bad:
        target.attack(_frame(header))
    target.attack(b"".join(_frame(header) for header in bad))


def test_worker_still_active_at_the_master(target: Target, read_cluster: ReadCluster) -> None:
    answer = target.runner.run(list_workers(read_cluster.cluster))
    states = {w.worker_id: w.state for w in answer.workers}
    assert states[target.worker.worker_id] == master_pb2.WORKER_STATE_ACTIVE
