"""``cachecluster ls|stat|cat|cp``: read datasets through the cluster from the shell.

Paths are ``NAMESPACE/DATASET/path`` (``cachecluster://`` in front is fine):

    cachecluster ls                       # namespaces
    cachecluster ls -l team-a/imagenet    # a dataset's root, sizes and times
    cachecluster stat team-a/imagenet/labels.csv
    cachecluster cat team-a/imagenet/labels.csv | head
    cachecluster cp -r team-a/imagenet/val ./val

Every command runs one :class:`~cachecluster.client.client.AsyncClient` on
uvloop; local file and stdout writes go to a thread while the next chunk
is read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import uvloop
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from cachecluster.cli.context import (
    add_master_argument,
    add_token_argument,
    resolve_cli_token,
    resolve_master,
)
from cachecluster.client.client import AsyncClient, AsyncFile
from cachecluster.client.master_api import FileInfo, parse_dataset_path
from cachecluster.common.errors import InvalidArgument
from cachecluster.common.units import format_size

T = TypeVar("T")

CP_PARALLEL_FILES = 4
CP_CHUNK_BLOCKS = 4
"""A cp reads this many blocks a call: they come from several workers at once."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``ls``, ``stat``, ``cat`` and ``cp``."""
    ls = sub.add_parser("ls", help="list a directory of a dataset (NS/DATASET/PATH)")
    ls.add_argument("path", nargs="?", default="", help="'' lists namespaces, NS its datasets")
    ls.add_argument("-l", "--long", action="store_true", help="a table with sizes and times")
    _add_cluster_arguments(ls)
    ls.set_defaults(handler=cmd_ls)

    stat = sub.add_parser("stat", help="status of a file or directory of a dataset")
    stat.add_argument("paths", nargs="+", metavar="path")
    _add_cluster_arguments(stat)
    stat.set_defaults(handler=cmd_stat)

    cat = sub.add_parser("cat", help="write dataset files to stdout")
    cat.add_argument("paths", nargs="+", metavar="path")
    _add_cluster_arguments(cat)
    cat.set_defaults(handler=cmd_cat)

    cp = sub.add_parser("cp", help="copy a dataset file (or a directory with -r) to a local path")
    cp.add_argument("src", help="NS/DATASET/PATH")
    cp.add_argument("dest", type=Path, help="local file or directory")
    cp.add_argument("-r", "--recursive", action="store_true", help="copy a directory")
    cp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_cluster_arguments(cp)
    cp.set_defaults(handler=cmd_cp)


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    add_master_argument(parser)
    add_token_argument(parser)


def _run(args: argparse.Namespace, body: Callable[[AsyncClient], Awaitable[T]]) -> T:
    master = resolve_master(args)
    token = resolve_cli_token(args)

    async def main() -> T:
        async with AsyncClient(master, token=token) as client:
            return await body(client)

    return uvloop.run(main())


# ---------------------------------------------------------------- ls, stat


def cmd_ls(args: argparse.Namespace) -> int:
    """``cachecluster ls [-l] PATH``."""
    entries = _run(args, lambda client: client.ls(args.path, detail=True))
    console = Console(soft_wrap=True)
    if not args.long:
        for entry in entries:
            console.print(entry.name + ("/" if entry.is_dir else ""), highlight=False, markup=False)
        return 0
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("TYPE")
    table.add_column("SIZE", justify="right")
    table.add_column("BYTES", justify="right")
    table.add_column("MODIFIED")
    table.add_column("NAME", overflow="fold")
    for entry in entries:
        table.add_row(
            "dir" if entry.is_dir else "file",
            "-" if entry.is_dir else format_size(entry.size),
            "-" if entry.is_dir else str(entry.size),
            _time(entry.mtime),
            entry.name + ("/" if entry.is_dir else ""),
        )
    console.print(table)
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    """``cachecluster stat PATH...``: one ``key: value`` line a field."""

    async def body(client: AsyncClient) -> list[tuple[FileInfo, int]]:
        block_size = await client.block_size()
        return [(await client.stat(path), block_size) for path in args.paths]

    for number, (info, block_size) in enumerate(_run(args, body)):
        if number:
            print()
        print(f"path: {info.path}")
        print(f"type: {info.type}")
        if not info.is_dir:
            print(f"size: {info.size} ({format_size(info.size)})")
            blocks = (info.size + block_size - 1) // block_size
            print(f"blocks: {blocks} of {format_size(block_size)}")
        print(f"mtime: {_time(info.mtime)}")
        for field in ("version", "mount_id", "mount_path"):
            value = getattr(info, field)
            if value:
                print(f"{field}: {value}")
    return 0


def _time(mtime: float) -> str:
    if not mtime:
        return "-"
    moment = datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- cat


def cmd_cat(args: argparse.Namespace) -> int:
    """``cachecluster cat PATH...``: the bytes, in chunks of the block size."""
    out = sys.stdout.buffer

    async def body(client: AsyncClient) -> None:
        chunk = await client.block_size()
        for path in args.paths:
            async with await client.open(path) as file:
                await _pump(file, out, chunk)
        await asyncio.to_thread(out.flush)

    try:
        _run(args, body)
    except BrokenPipeError:  # `cachecluster cat x | head`: the reader left, so do we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


async def _pump(
    file: AsyncFile,
    out: BinaryIO,
    chunk: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy ``file`` from its position to ``out``: read one chunk while the last is written."""
    buffers = [bytearray(min(chunk, max(file.size, 1))) for _ in range(2)]
    writing: asyncio.Future[Any] | None = None
    total = 0
    turn = 0
    try:
        while True:
            view = memoryview(buffers[turn])
            got = await file.readinto(view)
            if writing is not None:
                await writing
                writing = None
            if got == 0:
                return total
            writing = asyncio.ensure_future(asyncio.to_thread(out.write, view[:got]))
            total += got
            if progress is not None:
                progress(got)
            turn ^= 1
    finally:
        if writing is not None:
            await asyncio.gather(writing, return_exceptions=True)


# ---------------------------------------------------------------- cp


def cmd_cp(args: argparse.Namespace) -> int:
    """``cachecluster cp [-r] SRC DEST``: copy to a local path, then one summary line."""
    console = Console(stderr=True)
    started = time.perf_counter()
    copied = _run(args, lambda client: _copy(client, args, console))
    seconds = max(time.perf_counter() - started, 1e-9)
    files, total = copied
    print(
        f"copied {files} file{'s' if files != 1 else ''}, {total} bytes "
        f"({format_size(total)}) in {seconds:.2f} s, {total / seconds / 1e9:.3f} GB/s"
    )
    return 0


async def _copy(client: AsyncClient, args: argparse.Namespace, console: Console) -> tuple[int, int]:
    source = parse_dataset_path(args.src)
    info = await client.stat(args.src)
    dest: Path = args.dest
    dest_is_dir = await asyncio.to_thread(dest.is_dir)
    if info.is_dir:
        if not args.recursive:
            raise InvalidArgument(f"{info.path}: is a directory (use cp -r)")
        root = dest / (info.name or "root") if dest_is_dir else dest
        files = await client.walk_files(args.src)
        prefix = str(source)
        plan = [(f, root / f.path[len(prefix) :].lstrip("/")) for f in files]
    else:
        target = dest / info.name if dest_is_dir or str(args.dest).endswith("/") else dest
        plan = [(info, target)]
    total = sum(f.size for f, _ in plan)
    chunk = CP_CHUNK_BLOCKS * await client.block_size()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet or not console.is_terminal,
        transient=True,
    )
    slots = asyncio.Semaphore(CP_PARALLEL_FILES)
    with progress:
        task = progress.add_task(f"{info.path}", total=total)

        def advance(count: int) -> None:
            progress.advance(task, count)

        async def one(file: FileInfo, target: Path) -> int:
            async with slots:
                return await _copy_file(client, file, target, chunk, advance)

        copied = await asyncio.gather(*(one(f, t) for f, t in plan))
    return len(plan), sum(copied)


async def _copy_file(
    client: AsyncClient,
    info: FileInfo,
    target: Path,
    chunk: int,
    progress: Callable[[int], None],
) -> int:
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    out = await asyncio.to_thread(open, target, "wb")
    try:
        async with await client.open(info.path) as file:
            return await _pump(file, out, chunk, progress)
    finally:
        await asyncio.to_thread(out.close)
