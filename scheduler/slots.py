"""Throttle slots for one run's senders in one process: several grants per round trip to the throttle,
each carrying the settlements (response times) of the sends that finished since the last one.

Each slot says when it may be used (``Slot.not_before``): no sooner than the lead, the time a sender
expects to spend between taking a slot and sending with it (committing the attempt, measured by the
caller), and up to ``HORIZON`` later when the cap frees a place only then. So neither that time nor the
time between two round trips counts against the number's rate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from bot.core.waits import wait_until
from scheduler.throttle import Slot, Throttle, ThrottleUnavailable

log = logging.getLogger(__name__)

MIN_GAP = 0.002  # at most one round trip per this while senders wait: batches grants at high rates
HORIZON = 0.010  # how far ahead of its start a slot may be granted: covers a few round trips' lag


class SlotDispenser:
    """Senders ``take()`` a slot before a Graph send and ``settle()`` it when the response is back."""

    def __init__(
        self, throttle: Throttle, key: str, mps: int, hold: float, lead: Callable[[], float] = lambda: 0.0
    ) -> None:
        self._throttle = throttle
        self._key = key
        self._mps = mps
        self._hold = hold
        self._lead = lead
        self._waiting: deque[asyncio.Future[Slot]] = deque()
        self._settled: list[tuple[str, float]] = []
        self._unused: list[str] = []
        self._kick = asyncio.Event()
        self._news = asyncio.Event()  # a slot settled or came back since the last round trip
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"slots-{self._key}")

    async def close(self) -> None:
        """Stop granting and record what is left to settle (best effort: the holds expire on their own)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for fut in self._waiting:
            fut.cancel()
        settled, unused = self._drain()
        if settled or unused:
            with contextlib.suppress(ThrottleUnavailable):
                await self._throttle.settle(self._key, settled, unused)

    async def take(self) -> Slot:
        """Wait for a slot (send with it only after ``slot.wait()``); ``ThrottleUnavailable`` if the throttle
        cannot be reached."""
        fut: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._kick.set()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._unused.append(fut.result().id)  # granted as the caller gave up: nothing was sent with it
            fut.cancel()
            raise

    def settle(self, slot: Slot, responded_at: float) -> None:
        """The send with ``slot`` got its answer at ``responded_at`` (``time.monotonic()``)."""
        self._settled.append((slot.id, responded_at))
        self._news.set()
        self._kick.set()

    def give_back(self, slot: Slot) -> None:
        """Nothing was sent with ``slot``."""
        self._unused.append(slot.id)
        self._news.set()
        self._kick.set()

    def _drain(self) -> tuple[list[tuple[str, float]], list[str]]:
        settled, unused = self._settled, self._unused
        self._settled, self._unused = [], []
        return settled, unused

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._waiting and self._waiting[0].done():
                self._waiting.popleft()
            live = [f for f in self._waiting if not f.done()]
            settled, unused = self._drain()
            if not live:
                if settled or unused:
                    with contextlib.suppress(ThrottleUnavailable):
                        await self._throttle.settle(self._key, settled, unused)
                continue
            asked = loop.time()
            self._news.clear()
            lead = self._lead()
            try:
                slots, wait = await self._throttle.try_slots(
                    self._key, self._mps, len(live), hold=self._hold, lead=lead, horizon=HORIZON,
                    settled=settled, unused=unused)
            except ThrottleUnavailable as exc:
                for fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for slot in slots:
                while self._waiting and self._waiting[0].done():
                    self._waiting.popleft()
                if self._waiting:
                    self._waiting.popleft().set_result(slot)
                else:
                    self._unused.append(slot.id)
            if self._waiting or self._unused:
                self._kick.set()
            # Pace the round trips, not the grants: a short sleep lets several grants accrue to one trip.
            await asyncio.sleep(max(0.0, MIN_GAP - (loop.time() - asked)))
            if not slots and wait > MIN_GAP:
                # Refused: a slot settling here may be what the cap was waiting for (its bound in the
                # throttle is still its hold), so look again as soon as one does.
                await wait_until(self._news.wait(), wait - MIN_GAP)
