"""Client pieces that need no cluster: paths, block math, candidate order, master address."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachecluster.client.cluster_view import order_candidates
from cachecluster.client.master_api import (
    DatasetPath,
    FileInfo,
    parse_dataset_path,
    resolve_master_address,
)
from cachecluster.client.reader import BufferPool, block_length, split_range
from cachecluster.common.errors import InvalidArgument, InvalidPath, Unavailable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", DatasetPath()),
        ("/", DatasetPath()),
        ("ns", DatasetPath("ns")),
        ("ns/", DatasetPath("ns")),
        ("ns/ds", DatasetPath("ns", "ds")),
        ("/ns/ds/", DatasetPath("ns", "ds")),
        ("ns/ds/a/b.bin", DatasetPath("ns", "ds", "a/b.bin")),
        ("ns//ds/./a//b.bin", DatasetPath("ns", "ds", "a/b.bin")),
        ("ns/ds/a/../b.bin", DatasetPath("ns", "ds", "b.bin")),
        ("cachecluster://ns/ds/x", DatasetPath("ns", "ds", "x")),
    ],
)
def test_parse_dataset_path(text: str, expected: DatasetPath) -> None:
    assert parse_dataset_path(text) == expected


@pytest.mark.parametrize(
    "text", ["ns/ds/..", "ns/ds/../../x", "ns/ds/a/../../..", "../ns", "ns/../x", "ns/ds/a\\b"]
)
def test_parse_dataset_path_refuses_escapes(text: str) -> None:
    with pytest.raises(InvalidPath):
        parse_dataset_path(text)


def test_dataset_path_str_and_child() -> None:
    assert str(DatasetPath("ns", "ds", "a/b")) == "ns/ds/a/b"
    assert str(DatasetPath()) == ""
    assert DatasetPath().child("ns") == DatasetPath("ns")
    assert DatasetPath("ns").child("ds") == DatasetPath("ns", "ds")
    assert DatasetPath("ns", "ds").child("a") == DatasetPath("ns", "ds", "a")
    assert DatasetPath("ns", "ds", "a").child("b") == DatasetPath("ns", "ds", "a/b")


def test_file_info_fsspec_form() -> None:
    info = FileInfo("ns/ds/a/b.bin", 10, False, 1.5, "v1", "m1", "a/b.bin")
    assert info.name == "b.bin"
    assert info.to_dict()["name"] == "ns/ds/a/b.bin"
    assert info.to_dict()["type"] == "file"
    assert FileInfo.directory("ns").to_dict()["type"] == "directory"


def test_block_length() -> None:
    assert block_length(0, 0, 4) == 0
    assert block_length(0, 3, 4) == 3
    assert block_length(0, 4, 4) == 4
    assert block_length(1, 9, 4) == 4
    assert block_length(2, 9, 4) == 1
    assert block_length(3, 9, 4) == 0


def test_split_range_examples() -> None:
    assert split_range(0, 0, 10, 4) == []
    assert split_range(0, 10, 10, 4) == [(0, 0, 4, 0), (1, 0, 4, 4), (2, 0, 2, 8)]
    assert split_range(3, 2, 10, 4) == [(0, 3, 1, 0), (1, 0, 1, 1)]
    assert split_range(8, 100, 10, 4) == [(2, 0, 2, 0)]  # cut at the end of the file
    assert split_range(12, 5, 10, 4) == []
    with pytest.raises(InvalidArgument):
        split_range(-1, 1, 10, 4)
    with pytest.raises(InvalidArgument):
        split_range(0, 1, 10, 0)


@given(
    size=st.integers(0, 5000),
    block=st.integers(1, 700),
    offset=st.integers(0, 6000),
    length=st.integers(0, 6000),
)
def test_split_range_covers_exactly(size: int, block: int, offset: int, length: int) -> None:
    spans = split_range(offset, length, size, block)
    end = min(offset + length, size)
    covered = 0
    for span in spans:
        start_in_file = span.block * block + span.start
        assert start_in_file == offset + span.buf_offset  # contiguous, in order
        assert span.buf_offset == covered
        assert 0 < span.length <= block - span.start  # inside one block
        assert span.start + span.length <= block_length(span.block, size, block)
        covered += span.length
    assert covered == max(0, end - offset)


def test_order_candidates_moves_suspects_last() -> None:
    assert order_candidates(["a", "b", "c", "d"], set()) == ["a", "b", "c", "d"]
    assert order_candidates(["a", "b", "c", "d"], {"a", "c"}) == ["b", "d", "a", "c"]
    assert order_candidates(["a", "b"], {"x"}) == ["a", "b"]
    assert order_candidates([], {"a"}) == []
    assert order_candidates(["a", "b", "c", "d"], {"b"}, {"a", "c"}) == ["d", "b"]


def test_buffer_pool_reuses_buffers() -> None:
    pool = BufferPool(max_free_bytes=32)
    first = pool.get(16)
    pool.put(first)
    assert pool.free_bytes == 16
    assert pool.get(16) is first
    assert pool.free_bytes == 0
    buffers = [pool.get(16) for _ in range(4)]
    for buffer in buffers:
        pool.put(buffer)
    assert pool.free_bytes == 32  # the rest went to the garbage collector
    assert pool.get(16) in buffers


def test_resolve_master_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CACHECLUSTER_MASTER", raising=False)
    monkeypatch.setenv("CACHECLUSTER_HOME", str(tmp_path))
    assert resolve_master_address("h:1") == "h:1"
    with pytest.raises(Unavailable):
        resolve_master_address()
    (tmp_path / "cluster.json").write_text(json.dumps({"master": "127.0.0.1:5"}))
    assert resolve_master_address() == "127.0.0.1:5"
    assert resolve_master_address(home=tmp_path) == "127.0.0.1:5"
    monkeypatch.setenv("CACHECLUSTER_MASTER", "127.0.0.1:6")
    assert resolve_master_address() == "127.0.0.1:6"
