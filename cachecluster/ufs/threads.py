"""Blocking calls of a UFS backend, run in its own thread pool and never on the event loop.

Reads fill a caller's buffer from a worker thread, which brings two duties:

- the buffer must not be written after ``read_into`` has returned or raised,
  also when the awaiting task is cancelled: :meth:`BlockingCalls.call` then
  waits for the thread before re-raising;
- no reference to the buffer may outlive the call, or a caller could not
  resize its ``bytearray`` (``BufferError: Existing exports``). A thread pool
  keeps a task's arguments a moment past its completion, and exception
  tracebacks keep frames (and their locals) alive, often in reference cycles.
  Buffers therefore travel as a :class:`BufferLease`, and the frames of an
  exception's traceback are cleared of locals (file and line stay).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import traceback
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from cachecluster.common.errors import InvalidArgument, UfsError

_T = TypeVar("_T")
_B = TypeVar("_B", memoryview, list[memoryview])


def writable_bytes(buf: memoryview) -> memoryview:
    """``buf`` as a flat, writable byte view (raises ``InvalidArgument`` otherwise)."""
    if buf.readonly:
        raise InvalidArgument("read_into needs a writable buffer")
    if not buf.c_contiguous:
        raise InvalidArgument("read_into needs a contiguous buffer")
    if buf.format != "B" or buf.ndim != 1:
        return buf.cast("B")
    return buf


class BufferLease(Generic[_B]):
    """Hands a caller's buffer (or list of buffers) to one worker thread, keeping no reference."""

    __slots__ = ("_view",)

    def __init__(self, view: _B) -> None:
        self._view: _B | None = view

    def take(self) -> _B:
        """The buffer (or list); a lease is taken once."""
        view = self._view
        if view is None:
            raise RuntimeError("a buffer lease is taken once")
        self._view = None
        return view

    def drop(self) -> None:
        """Forget the buffer (when the call never reached a thread)."""
        self._view = None


def forget_locals(exc: BaseException) -> None:
    """Drop the local variables of the finished frames in ``exc``'s traceback and causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # frames still running are skipped
        current = current.__cause__ or current.__context__


async def wait_threads(futures: Iterable[concurrent.futures.Future[Any]]) -> None:
    """Wait until every future's thread has finished, even if cancelled meanwhile.

    A cancellation that arrives while waiting is re-raised once all are done.
    """
    cancelled = False
    pending = [f for f in futures if not f.done()]
    while pending:
        try:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending])
        except asyncio.CancelledError:
            cancelled = True
        pending = [f for f in pending if not f.done()]
    if cancelled:
        raise asyncio.CancelledError()


class BlockingCalls:
    """A backend's thread pool: submit blocking calls, await them safely, shut down once."""

    def __init__(self, max_workers: int, thread_name_prefix: str, closed_message: str) -> None:
        self.max_workers = max_workers
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=thread_name_prefix
        )
        self._closed_message = closed_message
        self.closed = False

    def _run(self, func: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        call_args = tuple(arg.take() if isinstance(arg, BufferLease) else arg for arg in args)
        try:
            return func(*call_args)
        except BaseException as exc:
            forget_locals(exc)
            raise
        finally:
            del call_args  # this frame may outlive the call in a traceback

    def submit(self, func: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
        """Start ``func(*args)`` in the pool; a :class:`BufferLease` arrives as its view."""
        if self.closed:
            raise UfsError(self._closed_message)
        try:
            return self._executor.submit(self._run, func, args)
        except RuntimeError as exc:  # shut down between the check and the submit
            raise UfsError(self._closed_message) from exc

    async def call(self, func: Callable[..., _T], *args: Any) -> _T:
        """``func(*args)`` in the pool; if cancelled, returns only once the thread is done."""
        future = self.submit(func, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            await wait_threads([future])  # it may be writing into a caller's buffer
            raise
        finally:
            for arg in args:
                if isinstance(arg, BufferLease):
                    arg.drop()

    async def close(self) -> None:
        """Wait for running calls, drop queued ones, stop the threads. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
