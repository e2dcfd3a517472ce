"""Single-flight: one run of the work per key, errors shared, retried afterwards."""

from __future__ import annotations

import asyncio

import pytest

from cachecluster.worker.singleflight import SingleFlight


async def test_concurrent_calls_share_one_run() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 42

    results = await asyncio.gather(*(flights.do("k", work) for _ in range(20)))
    assert results == [42] * 20
    assert calls == 1 and flights.started == 1 and flights.shared == 19
    assert len(flights) == 0
    assert await flights.do("k", work) == 42  # a later call runs again
    assert calls == 2


async def test_error_reaches_every_waiter_then_next_call_retries() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise OSError("UFS down")
        return "ok"

    results = await asyncio.gather(
        *(flights.do("k", flaky) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)
    assert attempts == 1
    assert await flights.do("k", flaky) == "ok"
    assert attempts == 2


async def test_cancelled_waiter_does_not_cancel_the_work() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    started = asyncio.Event()

    async def work() -> int:
        started.set()
        await asyncio.sleep(0.02)
        return 7

    first = asyncio.ensure_future(flights.do("k", work))
    await started.wait()
    second = asyncio.ensure_future(flights.do("k", work))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == 7


async def test_cancel_all() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def forever() -> int:
        await asyncio.sleep(3600)
        return 0

    waiter = asyncio.ensure_future(flights.do("k", forever))
    await asyncio.sleep(0)
    await flights.cancel_all()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(flights) == 0
