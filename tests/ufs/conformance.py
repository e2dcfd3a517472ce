"""The suite every UFS backend passes: subclass :class:`UfsConformance` and supply fixtures.

A backend's test class provides two fixtures:

- ``backend``: a :class:`UfsBackend` on a fresh, empty root, created with a
  part size of :attr:`UfsConformance.part_size` where the backend has one, so
  that reads cross part boundaries without huge objects;
- ``writer``: a :class:`UfsWriter` that puts files into that same root
  directly (a local directory, a boto3 client, an oss2 Bucket).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import hashlib
import random
from typing import ClassVar, Protocol

import pytest

from cachecluster.common.errors import InvalidPath, NotFound, VersionChanged
from cachecluster.ufs.base import FileStatus, UfsBackend


class UfsWriter(Protocol):
    """Writes into a backend's root without going through the backend."""

    def write(self, path: str, data: bytes) -> None:
        """Create or replace the file at ``path`` (parents are implied)."""

    def make_dir(self, path: str) -> None:
        """Create an empty directory (a ``dir/`` marker object in object stores)."""


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def summary(entries: list[FileStatus]) -> list[tuple[str, bool, int]]:
    """``(path, is_dir, size)`` of each entry, for comparisons."""
    return [(e.path, e.is_dir, e.size) for e in entries]


class UfsConformance:
    """The shared UFS suite (a mixin: not collected on its own)."""

    part_size: ClassVar[int] = 256 << 10

    # -- list ----------------------------------------------------------------------

    async def test_list_root_flat(self, backend: UfsBackend, writer: UfsWriter) -> None:
        writer.write("b.bin", b"12345")
        writer.write("a.txt", b"abc")
        writer.write("dir/c.txt", b"c")
        entries = await backend.list("")
        assert summary(entries) == [("a.txt", False, 3), ("b.bin", False, 5), ("dir", True, 0)]
        files = {e.path: e for e in entries if not e.is_dir}
        assert all(f.version for f in files.values())
        assert files["a.txt"].name == "a.txt"

    async def test_list_recursive_lists_only_files(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("top.txt", b"t")
        writer.write("x/one.txt", b"1")
        writer.write("x/y/two.txt", b"22")
        writer.write("x/y/z/three.txt", b"333")
        writer.make_dir("x/empty")
        everything = await backend.list("", recursive=True)
        assert summary(everything) == [
            ("top.txt", False, 1),
            ("x/one.txt", False, 1),
            ("x/y/two.txt", False, 2),
            ("x/y/z/three.txt", False, 3),
        ]
        below_x = await backend.list("x/y", recursive=True)
        assert [e.path for e in below_x] == ["x/y/two.txt", "x/y/z/three.txt"]

    async def test_list_nested_dir(self, backend: UfsBackend, writer: UfsWriter) -> None:
        writer.write("a/b/c/file.bin", b"xyz")
        writer.write("a/b/other.bin", b"o")
        assert summary(await backend.list("a")) == [("a/b", True, 0)]
        assert summary(await backend.list("a/b")) == [
            ("a/b/c", True, 0),
            ("a/b/other.bin", False, 1),
        ]
        assert summary(await backend.list("/a/b/c/")) == [("a/b/c/file.bin", False, 3)]

    async def test_list_empty_dir(self, backend: UfsBackend, writer: UfsWriter) -> None:
        writer.make_dir("empty")
        writer.write("full/f", b"f")
        assert await backend.list("empty") == []
        assert await backend.list("empty", recursive=True) == []
        status = await backend.stat("empty")
        assert status.is_dir and status.size == 0 and status.version == ""
        assert summary(await backend.list("")) == [("empty", True, 0), ("full", True, 0)]

    async def test_list_empty_root(self, backend: UfsBackend) -> None:
        assert await backend.list("") == []
        assert (await backend.stat("")).is_dir

    async def test_list_missing_dir_is_not_found(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("present/f", b"f")
        with pytest.raises(NotFound, match="nope"):
            await backend.list("nope")
        with pytest.raises(NotFound, match="nope"):
            await backend.list("nope/deeper", recursive=True)

    async def test_list_of_a_file_is_not_found(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("plain.txt", b"p")
        with pytest.raises(NotFound, match=r"plain\.txt"):
            await backend.list("plain.txt")

    # -- stat ----------------------------------------------------------------------

    async def test_stat_file(self, backend: UfsBackend, writer: UfsWriter) -> None:
        writer.write("d/file.bin", payload(1234))
        status = await backend.stat("d/file.bin")
        assert (status.path, status.size, status.is_dir) == ("d/file.bin", 1234, False)
        assert status.version and status.mtime > 0
        assert status.name == "file.bin"
        assert await backend.stat("/d//file.bin") == status

    async def test_stat_dir(self, backend: UfsBackend, writer: UfsWriter) -> None:
        writer.write("d/sub/file.bin", b"x")
        for path in ("d", "d/sub", "d/sub/"):
            status = await backend.stat(path)
            assert status.is_dir and status.path == path.rstrip("/")
        assert (await backend.stat("")).path == ""

    async def test_stat_missing_names_the_path(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("d/present", b"x")
        with pytest.raises(NotFound, match=r"d/missing\.bin"):
            await backend.stat("d/missing.bin")
        with pytest.raises(NotFound, match="nowhere/at/all"):
            await backend.stat("nowhere/at/all")

    # -- reads ---------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("offset", "length"),
        [
            (0, 1),
            (999, 1),
            (1, 998),
            (333, 333),
            (7, 1000),  # past EOF: short
            (990, 100),  # past EOF: short
            (1000, 10),  # at EOF: nothing
            (5000, 10),  # beyond EOF: nothing
            (0, 0),
        ],
    )
    async def test_read_odd_ranges(
        self, backend: UfsBackend, writer: UfsWriter, offset: int, length: int
    ) -> None:
        data = payload(1000)
        writer.write("odd.bin", data)
        assert await backend.read("odd.bin", offset, length) == data[offset : offset + length]

    async def test_read_zero_byte_file(self, backend: UfsBackend, writer: UfsWriter) -> None:
        writer.write("empty.bin", b"")
        status = await backend.stat("empty.bin")
        assert status.size == 0 and not status.is_dir
        assert await backend.read("empty.bin", 0, 10) == b""
        assert await backend.read("empty.bin", 0, 10, version=status.version) == b""
        assert await backend.read("empty.bin", 3, 10) == b""

    async def test_read_across_part_boundaries(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        part = self.part_size
        data = payload(4 * part + 123, seed=2)
        writer.write("parts.bin", data)
        version = (await backend.stat("parts.bin")).version
        for offset, length in [
            (part - 1, 2),
            (part - 7, part + 14),
            (3, 3 * part + 5),
            (part, 2 * part),
            (part + 1, 10 * part),  # past EOF
            (0, len(data)),
        ]:
            got = await backend.read("parts.bin", offset, length, version=version)
            assert got == data[offset : offset + length], (offset, length)

    async def test_large_object_read_in_parallel_parts(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        data = payload(20 << 20, seed=3)
        writer.write("large/20mib.bin", data)
        status = await backend.stat("large/20mib.bin")
        buf = bytearray(status.size)
        n = await backend.read_into("large/20mib.bin", 0, memoryview(buf), version=status.version)
        assert n == len(data)
        assert hashlib.sha256(buf).hexdigest() == hashlib.sha256(data).hexdigest()

    async def test_scatter_read_fills_each_buffer_in_turn(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        block = self.part_size
        data = payload(3 * block + 1234, seed=11)  # the last block is partial
        writer.write("blocks.bin", data)
        version = (await backend.stat("blocks.bin")).version
        buffers = [bytearray(b"\xee" * block) for _ in range(4)]
        reported: list[tuple[int, int, bytes]] = []

        def filled(index: int, count: int) -> None:  # may run in a pool thread
            reported.append((index, count, bytes(buffers[index][:count])))

        n = await backend.read_blocks_into(
            "blocks.bin", block, [memoryview(b) for b in buffers], version=version, filled=filled
        )
        assert n == 2 * block + 1234
        # Each full buffer is reported, in order, holding its bytes already; the
        # one the file ends in may be, with its short count.
        assert reported[:2] == [
            (0, block, data[block : 2 * block]),
            (1, block, data[2 * block : 3 * block]),
        ]
        assert reported[2:] in ([], [(2, 1234, data[3 * block :])])
        assert bytes(buffers[0]) == data[block : 2 * block]
        assert bytes(buffers[1]) == data[2 * block : 3 * block]
        assert bytes(buffers[2][:1234]) == data[3 * block :]
        assert bytes(buffers[2][1234:]) == b"\xee" * (block - 1234)  # past the end: untouched
        assert bytes(buffers[3]) == b"\xee" * block
        for buffer in buffers:
            buffer.append(0)  # a BufferError here means a thread still holds a view

    async def test_scatter_read_at_and_past_the_end(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("end.bin", payload(1000, seed=12))
        version = (await backend.stat("end.bin")).version
        for offset in (1000, 5000):
            views = [memoryview(bytearray(100)), memoryview(bytearray(100))]
            assert await backend.read_blocks_into("end.bin", offset, views, version=version) == 0
        assert await backend.read_blocks_into("end.bin", 0, []) == 0

    async def test_scatter_read_is_pinned_to_the_version(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("moved.bin", payload(2 * self.part_size, seed=13))
        old = await backend.stat("moved.bin")
        new_data = payload(2 * self.part_size + 5, seed=14)
        writer.write("moved.bin", new_data)
        views = [memoryview(bytearray(self.part_size)) for _ in range(2)]
        with pytest.raises(VersionChanged, match=r"moved\.bin"):
            await backend.read_blocks_into("moved.bin", 0, views, version=old.version)
        with pytest.raises(NotFound, match="absent"):
            await backend.read_blocks_into("absent.bin", 0, views)

    async def test_read_into_leaves_no_export_behind(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("r.bin", payload(100))
        buf = bytearray(200)
        assert await backend.read_into("r.bin", 0, memoryview(buf)) == 100
        del buf[100:]  # a BufferError here means a thread still holds a view
        assert await backend.read_into("r.bin", 100, memoryview(buf)) == 0
        buf.append(0)

    async def test_read_into_typed_buffer(self, backend: UfsBackend, writer: UfsWriter) -> None:
        data = payload(4096, seed=4)
        writer.write("typed.bin", data)
        words = array.array("I", bytes(4096))
        assert await backend.read_into("typed.bin", 0, memoryview(words)) == 4096
        assert words.tobytes() == data

    async def test_read_with_current_version(self, backend: UfsBackend, writer: UfsWriter) -> None:
        data = payload(3 * self.part_size, seed=5)
        writer.write("v.bin", data)
        version = (await backend.stat("v.bin")).version
        assert await backend.read("v.bin", 10, 20, version=version) == data[10:30]
        assert await backend.read("v.bin", 0, len(data), version=version) == data

    async def test_overwritten_object_changes_version(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        old_data = payload(3 * self.part_size, seed=6)
        writer.write("moving.bin", old_data)
        old = await backend.stat("moving.bin")
        new_data = payload(3 * self.part_size + 17, seed=7)
        writer.write("moving.bin", new_data)
        new = await backend.stat("moving.bin")
        assert new.version != old.version and new.size == len(new_data)
        for offset, length in [(0, 100), (0, len(old_data)), (len(new_data), 10)]:
            with pytest.raises(VersionChanged, match=r"moving\.bin"):
                await backend.read("moving.bin", offset, length, version=old.version)
        assert await backend.read("moving.bin", 0, len(new_data), version=new.version) == new_data

    async def test_missing_file_read_is_not_found(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        writer.write("d/present", b"x")
        with pytest.raises(NotFound, match="d/absent"):
            await backend.read("d/absent", 0, 10)
        with pytest.raises(NotFound, match="d/absent"):
            await backend.read("d/absent", 0, 4 * self.part_size)

    async def test_dotdot_escape_is_invalid(self, backend: UfsBackend, writer: UfsWriter) -> None:
        writer.write("inside/f", b"f")
        assert (await backend.stat("inside/../inside/f")).path == "inside/f"
        with pytest.raises(InvalidPath):
            await backend.stat("../outside")
        with pytest.raises(InvalidPath):
            await backend.list("inside/../..")
        with pytest.raises(InvalidPath):
            await backend.read("inside/../../etc/passwd", 0, 10)

    async def test_concurrent_reads(self, backend: UfsBackend, writer: UfsWriter) -> None:
        data = payload(6 * self.part_size + 99, seed=8)
        writer.write("shared.bin", data)
        version = (await backend.stat("shared.bin")).version
        spans = [(i * 7919 % len(data), (i % 5 + 1) * self.part_size // 3) for i in range(24)]
        spans.append((0, len(data)))
        results = await asyncio.gather(
            *(backend.read("shared.bin", o, n, version=version) for o, n in spans)
        )
        for (offset, length), got in zip(spans, results, strict=True):
            assert got == data[offset : offset + length]

    async def test_cancelled_read_leaves_the_backend_usable(
        self, backend: UfsBackend, writer: UfsWriter
    ) -> None:
        data = payload(8 * self.part_size, seed=9)
        writer.write("cancel.bin", data)
        buf = bytearray(len(data))
        task = asyncio.ensure_future(backend.read_into("cancel.bin", 0, memoryview(buf)))
        await asyncio.sleep(0.001)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            assert await task == len(data)  # finished before the cancel landed
        del buf[1:]  # no worker thread holds the buffer any more
        assert await backend.read("cancel.bin", 5, 10) == data[5:15]

    async def test_close_twice(self, backend: UfsBackend) -> None:
        await backend.close()
        await backend.close()
