"""Single-flight: concurrent calls for one key share one run of the work.

When 32 readers miss the same block at once, the block is fetched from the
UFS once and all 32 get the result. The first caller for a key starts the
work as a task of its own; later callers for the same key wait for that
task. A failure reaches every waiter, and the key is forgotten as soon as
the work ends, so the next call tries again (errors are never cached).

Cancelling a waiter does not cancel the shared work: other waiters may still
want it (and a fetched block is worth storing). :meth:`SingleFlight.cancel_all`
cancels the work itself, for shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """A map from key to the one task computing its value right now.

    Must be used from one event loop (the one running the tasks).
    """

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Task[V]] = {}
        self.started = 0
        """How many times work was actually started (for tests and metrics)."""
        self.shared = 0
        """How many calls joined work another call had started."""

    async def do(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """Return ``await work()``, running it at most once at a time per ``key``.

        If a call for ``key`` is already in flight, wait for its result (or
        its exception) instead of calling ``work``.
        """
        # shield: a waiter that is cancelled leaves; the flight goes on for the others.
        return await asyncio.shield(self.start(key, work))

    def start(self, key: K, work: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        """The task computing ``key``: the one in flight, or ``work()`` started now.

        Does not wait: a caller that starts work ahead of need (and awaits
        it later, shielded) is joined by the :meth:`do` calls that come meanwhile.
        """
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._flights[key] = task
            self.started += 1
            task.add_done_callback(functools.partial(self._finish, key))
        else:
            self.shared += 1
        return task

    def in_flight(self, key: K) -> bool:
        """Whether work for ``key`` is running now."""
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    async def cancel_all(self) -> None:
        """Cancel every flight and wait until they have ended."""
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def _finish(self, key: K, task: asyncio.Task[V]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            # Mark the exception retrieved: every waiter may have been cancelled.
            task.exception()
