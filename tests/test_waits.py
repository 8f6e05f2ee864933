"""A worker loop that waits on an event with a deadline stops when cancelled, even when the event is set in
the same instant (cpython gh-86296: asyncio.wait_for on 3.11 loses that cancellation)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from bot.core.waits import wait_until


async def _wait_for(aw: Awaitable[object], seconds: float) -> bool:
    try:
        await asyncio.wait_for(aw, timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _worker(wait: Callable[[Awaitable[object], float], Awaitable[bool]], wake: asyncio.Event,
                  laps: list[int]) -> None:
    while True:  # the shape of the outbox, webhook and campaign loops
        await wait(wake.wait(), 10.0)
        wake.clear()
        laps.append(1)


async def _cancel_as_woken(wait: Callable[[Awaitable[object], float], Awaitable[bool]]) -> asyncio.Task[None]:
    wake, laps = asyncio.Event(), []
    task = asyncio.create_task(_worker(wait, wake, laps))
    await asyncio.sleep(0.01)  # parked in its wait
    wake.set()
    task.cancel()  # the same instant: shutdown while a notification arrives
    await asyncio.sleep(0.05)
    return task


async def test_a_loop_waiting_with_wait_until_stops_when_cancelled_as_it_is_woken() -> None:
    task = await _cancel_as_woken(wait_until)
    assert task.cancelled()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps the cancellation from 3.12")
async def test_the_same_loop_with_wait_for_runs_on() -> None:
    # What the test above guards against: the cancellation is lost and the loop keeps going.
    task = await _cancel_as_woken(_wait_for)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_wait_until_says_whether_it_finished() -> None:
    done = asyncio.Event()
    assert not await wait_until(done.wait(), 0.01)
    done.set()
    assert await wait_until(done.wait(), 0.01)
