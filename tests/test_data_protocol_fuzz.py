"""Hostile bytes on raw sockets against a running DataServer (hypothesis-driven).

After each example the offending connection must be answered or closed (never
left hanging), and a normal client on its own connection still reads correct
bytes. One server (on uvloop, as in the worker) serves the whole module.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachecluster.client.data_conn import DataConnection
from cachecluster.common import frames
from cachecluster.common.frames import FrameError, ReadRequest
from cachecluster.worker.data_server import DataServer
from tests.test_data_protocol import BLOCK, FakeStore, block_id, key, make_blocks, recv_until_eof

MAX_PAYLOAD = 2 * BLOCK
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(repr=False)  # hypothesis prints its arguments: not megabytes of blocks
class Harness:
    """A server, a well-behaved client, and the loop they live on."""

    runner: asyncio.Runner
    server: DataServer
    store: FakeStore
    client: DataConnection
    blocks: dict[int, bytes]

    def attack(self, data: bytes) -> bytes:
        """Send ``data`` on a fresh raw connection, half-close, and return all replies."""
        return self.runner.run(asyncio.wait_for(self._attack(data), 10))

    async def _attack(self, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.server.port))
            try:
                await loop.sock_sendall(sock, data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server already hung up on an early bad byte
            replies = await recv_until_eof(sock)
        finally:
            sock.close()
        await self._still_serving()
        return replies

    async def _still_serving(self) -> None:
        for n in (1, 2):  # one file-backed, one in memory
            buf = bytearray(BLOCK)
            got = await self.client.read_block(block_id(n), key(n), 0, BLOCK, buf)
            assert buf[:got] == self.blocks[n]
        # Only the good client is left: the attacking connection is gone.
        for _ in range(200):
            if self.server.stats.connections_open == 1:
                break
            await asyncio.sleep(0.005)
        assert self.server.stats.connections_open == 1
        assert self.store.open_leases == 0


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    blocks = make_blocks(3)
    store = FakeStore(Path(tmp_path_factory.mktemp("fuzz")) / "blocks.bin", blocks)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        server = DataServer(store, max_payload=MAX_PAYLOAD)
        runner.run(server.start())
        try:
            client = runner.run(DataConnection.connect("127.0.0.1", server.port))
            try:
                yield Harness(runner, server, store, client, blocks)
            finally:
                runner.run(client.close())
        finally:
            runner.run(server.close())
            store.close()


def parse_responses(data: bytes) -> list[frames.Response]:
    """Every response in ``data``; the stream must be well formed up to its end."""
    responses = []
    while data:
        header_length, payload_length = frames.decode_prefix(data[:8], MAX_PAYLOAD)
        header = data[8 : 8 + header_length]
        responses.append(frames.decode_response(header, payload_length))
        data = data[8 + header_length + payload_length :]
    return responses


def valid_request(n: int = 1) -> dict[str, Any]:
    return {
        "op": "read",
        "id": 11,
        "block": block_id(n),
        "key": {"mount": "mount-1", "path": "dir/file.bin", "version": "etag-1", "index": n},
        "off": 0,
        "len": 64,
        "cap": None,
    }


def framed(header: object, payload_length: int = 0) -> bytes:
    body: bytes = msgpack.packb(header, use_bin_type=True)
    return frames.PREFIX.pack(len(body), payload_length) + body


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
msgpack_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@FUZZ
@given(data=st.binary(min_size=1, max_size=400))
def test_garbage_bytes(harness: Harness, data: bytes) -> None:
    replies = harness.attack(data)
    parse_responses(replies)  # whatever came back is well formed


@FUZZ
@given(cut=st.integers(min_value=1), n=st.sampled_from([0, 1, 2]))
def test_truncated_frames(harness: Harness, cut: int, n: int) -> None:
    whole = frames.encode_request(ReadRequest(5, block_id(n), key(n), 0, 100))
    assert harness.attack(whole[: cut % len(whole)] or whole[:1]) == b""


@FUZZ
@given(
    header_length=st.integers(min_value=0, max_value=2**32 - 1),
    payload_length=st.integers(min_value=0, max_value=2**32 - 1),
    tail=st.binary(max_size=64),
)
def test_length_prefixes(
    harness: Harness, header_length: int, payload_length: int, tail: bytes
) -> None:
    harness.attack(frames.PREFIX.pack(header_length, payload_length) + tail)


@FUZZ
@given(value=msgpack_values.filter(lambda v: not isinstance(v, dict)))
def test_valid_prefix_non_map_header(harness: Harness, value: object) -> None:
    assert harness.attack(framed(value)) == b""


@FUZZ
@given(
    field_name=st.sampled_from(["op", "id", "block", "key", "off", "len", "cap", "mount", "index"]),
    value=msgpack_values,
)
def test_wrong_field_types(harness: Harness, field_name: str, value: object) -> None:
    header = valid_request()
    if field_name in ("mount", "index"):
        header["key"][field_name] = value
    else:
        header[field_name] = value
    replies = parse_responses(harness.attack(framed(header)))
    try:
        request = frames.decode_request(msgpack.packb(header, use_bin_type=True), 0, MAX_PAYLOAD)
    except FrameError:
        # Refused: an INVALID answer when the id was usable, else just a closed connection.
        assert all(not r.ok and r.kind is not None for r in replies)
        assert len(replies) <= 1
    else:
        assert isinstance(request, ReadRequest | frames.PingRequest)
        assert len(replies) == 1


@FUZZ
@given(payload_length=st.integers(min_value=1, max_value=2**32 - 1))
def test_requests_with_a_payload_are_refused(harness: Harness, payload_length: int) -> None:
    assert harness.attack(framed(valid_request(), payload_length) + b"z" * 32) == b""
