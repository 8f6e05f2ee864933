"""The one worker loop and the wake-up hub: a failing turn keeps its traceback and is retried after a backoff,
a wake-up cuts the idle wait short, and cancelling the loop ends it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.core.loop_health import Backoff, LoopHealth
from bot.core.loops import CAMPAIGNS, SLACK_OUTBOX, WEBHOOKS, Wake, WakeHub, forever

log = logging.getLogger("tests.loops")


class RecordingBackoff(Backoff):
    """The waits the loop asked for, kept short for the test."""

    def __init__(self) -> None:
        super().__init__(first=0.25, cap=1.0)
        self.asked: list[float] = []
        self.resets = 0

    def next(self) -> float:
        self.asked.append(super().next())
        return 0.001

    def reset(self) -> None:
        self.resets += 1
        super().reset()


async def test_a_failing_turn_is_logged_with_its_traceback_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    turns: list[str] = []
    done = asyncio.Event()

    async def step() -> float | None:
        turns.append("turn")
        if len(turns) <= 3:
            raise RuntimeError(f"database away ({len(turns)})")
        done.set()
        return None

    monitor = LoopHealth().loop("test loop", log)
    backoff = RecordingBackoff()
    caplog.set_level(logging.WARNING, logger="tests.loops")
    task = asyncio.create_task(forever(step, 3600.0, Wake(), monitor=monitor, doing="test turn", backoff=backoff))
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert turns == ["turn"] * 4
    assert backoff.asked == [0.25, 0.5, 1.0] and backoff.resets == 1  # doubling to the cap, reset by the success
    first = next(r for r in caplog.records if "test turn failed" in r.getMessage())
    assert first.exc_info is not None and "database away (1)" in str(first.exc_info[1])
    assert any("recovered after 3 failures" in r.getMessage() for r in caplog.records)
    assert monitor.failing_since is None  # the success closed the streak


async def test_an_idle_loop_waits_for_its_queue_to_be_woken() -> None:
    hub = WakeHub()
    wake = hub.listen(WEBHOOKS)
    turns: list[int] = []
    ran = asyncio.Event()

    async def step() -> float | None:
        turns.append(1)
        ran.set()
        return None  # nothing to do: wait for a wake-up (or an hour)

    task = asyncio.create_task(forever(step, 3600.0, wake, monitor=LoopHealth().loop("idle", log)))
    try:
        await asyncio.wait_for(ran.wait(), 10)
        ran.clear()
        hub.wake(SLACK_OUTBOX, CAMPAIGNS)  # other queues: this loop sleeps on
        for _ in range(20):
            await asyncio.sleep(0)
        assert turns == [1] and not ran.is_set()
        hub.wake(WEBHOOKS)
        await asyncio.wait_for(ran.wait(), 10)
        assert turns == [1, 1]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_turn_that_says_there_is_more_runs_again_at_once() -> None:
    left = [3]
    finished = asyncio.Event()

    async def step() -> float | None:
        left[0] -= 1
        if left[0] == 0:
            finished.set()
            return None
        return 0.0  # a full batch: there may be more

    task = asyncio.create_task(forever(step, 3600.0, Wake(), monitor=LoopHealth().loop("busy", log)))
    try:
        await asyncio.wait_for(finished.wait(), 10)  # never waits the hour
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_forgotten_wake_is_no_longer_woken() -> None:
    hub = WakeHub()
    first, second = hub.listen(SLACK_OUTBOX), hub.listen(SLACK_OUTBOX)
    hub.forget(SLACK_OUTBOX, first)
    hub.wake(SLACK_OUTBOX)
    assert second.is_set() and not first.is_set()
    hub.forget(CAMPAIGNS, first)  # forgetting what was never listened to is harmless
