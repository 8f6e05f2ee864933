"""One pass of a run in one process: claimed recipients waiting for a sender, results waiting for the
writer, and the run's stop signal that every waiter watches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from bot.core.waits import wait_until
from scheduler.campaigns.policy import Claimed, Result

T = TypeVar("T")


@dataclass
class RunState:
    """A run as one process sees it: stops every worker when its status leaves `running`."""

    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    in_flight: set[int] = field(default_factory=set)  # recipients whose Graph call is under way

    def stop(self, reason: str) -> None:
        if not self.stopped.is_set():
            self.reason = reason
            self.stopped.set()

    async def race(self, aw: Awaitable[T]) -> T:
        """Await aw unless the run stops first (then aw is cancelled and Stopped raised)."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not stop.done():
                stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise Stopped()

    async def sleep(self, seconds: float) -> None:
        await wait_until(self.stopped.wait(), max(0.0, seconds))


class Stopped(Exception):
    pass


class Pipe:
    """Claimed recipients waiting to be sent, and results waiting to be written, for one pass of a run."""

    def __init__(self, size: int, reserve: int | None = None) -> None:
        self.size = size
        self.reserve = max(size, reserve or 0)  # claim more once no more than this many are queued
        self.queue: list[Claimed] = []
        self.claimed: list[Claimed] = []  # every claim of this pass
        self.results: list[Result] = []
        self.sending: dict[int, Claimed] = {}
        self.idle_senders = 0
        self.closed = False
        self.flush_now = asyncio.Event()
        self._changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wake(self) -> None:
        """Make every waiter look again (the pass is closing)."""
        await self._notify()

    async def put(self, batch: list[Claimed]) -> None:
        self.queue.extend(batch)
        self.claimed.extend(batch)
        await self._notify()

    async def get(self, state: RunState) -> Claimed | None:
        """The next claimed recipient; None when the pass is over or the run stopped."""
        async with self._changed:
            self.idle_senders += 1
            self._changed.notify_all()  # the feeder may be waiting for an idle sender
            try:
                while not self.queue and not self.closed and not state.stopped.is_set():
                    await _wait(self._changed, state)
            finally:
                self.idle_senders -= 1
            if not self.queue or state.stopped.is_set():
                return None
            rec = self.queue.pop(0)
            self.sending[rec.id] = rec
            self._changed.notify_all()
            return rec

    async def done(self, result: Result) -> None:
        self.sending.pop(result.recipient.id, None)
        self.results.append(result)
        await self._notify()

    async def wait_for_room(self, state: RunState) -> None:
        """Claim the next batch while one is still queued, so a slow commit never leaves the senders idle;
        at low rates (batches of one) only once a sender is idle: the fewer recipients sit claimed, the
        fewer a crash leaves `unknown`."""
        async with self._changed:
            while not state.stopped.is_set():
                if self.size > 1 and len(self.queue) <= self.reserve:
                    return
                if self.size == 1 and not self.queue and self.idle_senders > 0:
                    return
                await _wait(self._changed, state)

    async def drained(self, state: RunState) -> None:
        """Wait until every queued recipient has been sent (or the run stopped)."""
        async with self._changed:
            while (self.queue or self.sending) and not state.stopped.is_set():
                await _wait(self._changed, state)

    def take_queued(self) -> list[Claimed]:
        queued, self.queue = self.queue, []
        return queued

    def held(self) -> list[int]:
        return [r.id for r in self.queue] + list(self.sending)


async def _wait(cond: asyncio.Condition, state: RunState) -> None:
    # A short timeout re-checks the run's status even when nobody notifies. Not wait_until: under
    # asyncio.timeout a Condition's wait, cancelled while it takes the lock back, stalled senders for seconds;
    # a cancellation wait_for loses here is caught by that re-check.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cond.wait(), timeout=0.1)
