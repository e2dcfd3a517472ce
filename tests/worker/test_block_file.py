"""The block file format and leases, on tmpfs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cachecluster.common.errors import CorruptBlock
from cachecluster.worker.block_file import (
    DATA_OFFSET,
    HEADER_USED_BYTES,
    BlockLease,
    data_checksum,
    move_block_file,
    open_block,
    read_header,
    scan_block_file,
    write_block_file,
)
from cachecluster.worker.tiers import Medium
from tests.worker.helpers import block_data, block_id


def test_write_then_read_back(shm_dir: Path) -> None:
    bid, data = block_id(1), block_data(1, 10_000)
    path = str(shm_dir / "b.blk")
    assert write_block_file(path, bid, data) == DATA_OFFSET + len(data)
    assert os.listdir(shm_dir) == ["b.blk"]  # no temp file left behind
    with open(path, "rb") as handle:
        raw = handle.read()
    assert raw[DATA_OFFSET:] == data  # raw data after the header: sendfile-ready
    fd = os.open(path, os.O_RDONLY)
    try:
        header = read_header(fd, path)
    finally:
        os.close(fd)
    assert (header.block_id, header.data_length) == (bid, len(data))
    assert header.checksum == data_checksum(data)
    opened = open_block(path, bid, len(data), verify=True, keep_data=True)
    os.close(opened.fd)
    assert opened.data is not None and bytes(opened.data) == data
    assert scan_block_file(path)[:2] == (header, DATA_OFFSET + len(data))


def test_flipped_data_byte_is_caught_with_the_path(shm_dir: Path) -> None:
    bid, data = block_id(2), block_data(2, 5000)
    path = str(shm_dir / "b.blk")
    write_block_file(path, bid, data)
    with open(path, "r+b") as handle:
        handle.seek(DATA_OFFSET + 1234)
        byte = handle.read(1)
        handle.seek(DATA_OFFSET + 1234)
        handle.write(bytes([byte[0] ^ 0x01]))
    opened = open_block(path, bid, len(data), verify=False)  # header alone is fine
    os.close(opened.fd)
    with pytest.raises(CorruptBlock, match=f"block file {path}: checksum mismatch"):
        open_block(path, bid, len(data), verify=True)


@pytest.mark.parametrize("damage", ["magic", "header", "truncate", "wrong-id"])
def test_bad_headers_and_torn_files(shm_dir: Path, damage: str) -> None:
    bid, data = block_id(3), block_data(3, 3000)
    path = str(shm_dir / "b.blk")
    write_block_file(path, bid, data)
    with open(path, "r+b") as handle:
        if damage == "magic":
            handle.write(b"XX")
        elif damage == "header":
            handle.seek(HEADER_USED_BYTES - 9)
            handle.write(b"\xff")
        elif damage == "truncate":
            handle.truncate(DATA_OFFSET + 100)
    expected_id = block_id(4) if damage == "wrong-id" else bid
    with pytest.raises(CorruptBlock, match=str(path)):
        os.close(open_block(path, expected_id, len(data), verify=True).fd)
    if damage != "wrong-id":
        with pytest.raises(CorruptBlock):
            scan_block_file(path)


def test_move_keeps_open_fd_readable(shm_dir: Path) -> None:
    bid, data = block_id(5), block_data(5, 4000)
    src, dst = str(shm_dir / "a.blk"), str(shm_dir / "b.blk")
    write_block_file(src, bid, data)
    opened = open_block(src, bid, len(data), verify=False)
    lease = BlockLease(bid, fd=opened.fd, length=len(data), medium=Medium.SSD)
    with lease:
        move_block_file(src, dst)
        os.unlink(dst)
        assert lease.read() == data
    assert lease.closed


def test_lease_reads() -> None:
    data = block_data(6, 1000)
    with BlockLease.in_memory(block_id(6), data) as lease:
        assert lease.fd is None and lease.medium is None
        with pytest.raises(io.UnsupportedOperation):
            lease.fileno()
        buf = bytearray(300)
        assert lease.readinto(memoryview(buf), 900) == 100
        assert buf[:100] == data[900:]
        assert lease.read(10, 5) == data[10:15]
        assert lease.read(2000) == b""
        assert lease.buffer is not None and bytes(lease.buffer) == data


def test_file_lease_readinto(shm_dir: Path) -> None:
    bid, data = block_id(7), block_data(7, 70_000)
    path = str(shm_dir / "b.blk")
    write_block_file(path, bid, data)
    opened = open_block(path, bid, len(data), verify=False)
    with BlockLease(bid, fd=opened.fd, length=len(data), medium=Medium.MEM) as lease:
        assert lease.fileno() == opened.fd and lease.offset == DATA_OFFSET
        buf = memoryview(bytearray(100_000))
        assert lease.readinto(buf) == len(data)
        assert buf[: len(data)] == data
        assert lease.readinto(buf[:10], 69_995) == 5
        assert lease.read(69_000) == data[69_000:]
