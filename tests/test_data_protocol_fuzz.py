"""Malformed input: hostile bytes on raw sockets against a running DataServer
(hypothesis-driven), and the frame checks of ``frames`` on their own.

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
from cachecluster.common.errors import InvalidArgument
from cachecluster.common.frames import FrameError, PingRequest, ReadRequest
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
        assert isinstance(request, ReadRequest | PingRequest)
        assert len(replies) == 1


@FUZZ
@given(payload_length=st.integers(min_value=1, max_value=2**32 - 1))
def test_requests_with_a_payload_are_refused(harness: Harness, payload_length: int) -> None:
    assert harness.attack(framed(valid_request(), payload_length) + b"z" * 32) == b""


# ------------------------------------------- frames alone, no server (decode_*)


def test_request_round_trip() -> None:
    request = ReadRequest(7, block_id(3), key(3), 10, 20, b"tok")
    data = frames.encode_request(request)
    header_length, payload_length = frames.decode_prefix(data[:8], frames.DEFAULT_MAX_PAYLOAD)
    assert (header_length, payload_length) == (len(data) - 8, 0)
    assert frames.decode_request(data[8:], 0) == request
    ping = frames.encode_request(PingRequest(9))
    assert frames.decode_request(ping[8:], 0) == PingRequest(9)
    assert frames.decode_request(msgpack.packb({"op": "ping"}), 0) == PingRequest(0)


def test_response_round_trip_and_error_classes() -> None:
    ok = frames.encode_ok(4, 100)
    assert frames.decode_response(ok[8:], 100) == frames.Response(4, True, 100)
    for kind, cls in frames.ERROR_CLASSES.items():
        data = frames.encode_error(5, kind, "line one\nline two")
        response = frames.decode_response(data[8:], 0)
        error = response.error("w:1")
        assert type(error) is cls and error.kind is kind
        assert str(error) == "w:1: line one line two"


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ((0, 0), "header length 0"),
        ((frames.MAX_HEADER + 1, 0), "header length"),
        ((10, 2**20 + 1), "payload length"),
    ],
)
def test_prefix_limits(prefix: tuple[int, int], reason: str) -> None:
    with pytest.raises(FrameError, match=reason) as info:
        frames.decode_prefix(frames.PREFIX.pack(*prefix), 2**20)
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"op": "write"}, "unknown op"),
        ({"id": -1}, "'id'"),
        ({"id": True}, "'id' must be an integer"),
        ({"block": "XYZ"}, "'block'"),
        ({"key": [1]}, "'key' must be a map"),
        ({"key": {"mount": "m", "path": "p", "version": 1, "index": 0}}, "'version'"),
        ({"off": -5}, "'off'"),
        ({"len": 2**20 + 1}, "'len'"),
        ({"cap": "text"}, "'cap' must be bytes"),
    ],
)
def test_request_fields_are_checked(change: dict[str, Any], reason: str) -> None:
    header = {
        "op": "read",
        "id": 1,
        "block": block_id(1),
        "key": {"mount": "m", "path": "p", "version": "v", "index": 1},
        "off": 0,
        "len": 10,
        "cap": None,
    }
    header.update(change)
    with pytest.raises(FrameError, match=reason):
        frames.decode_request(msgpack.packb(header), 0, 2**20)


def test_headers_that_are_not_maps() -> None:
    for body in (msgpack.packb([1, 2]), msgpack.packb(3), b"\xc1", msgpack.packb({1: 2})):
        with pytest.raises(FrameError):
            frames.decode_request(body, 0)
    with pytest.raises(FrameError, match="no payload"):
        frames.decode_request(msgpack.packb({"op": "ping"}), 3)
