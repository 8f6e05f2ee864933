"""Acks before processing in a process that does both (`serve --role all`): while the acks are slow or deliveries
arrive faster than the webhook worker applies them, the worker rests between its batches and leaves the event loop
(and PostgreSQL) to the intake.

The bulk lane (statuses and the like) rests whenever a stored group waited over ACK_BUDGET for its commit (the
worker's own work on the shared loop is what slows them), the longer the later the acks, and while it falls behind
the intake; down to one part in ten of the time. The live lane rests only in a flood: acks slow *and* a full batch
of customer messages waiting, more than it can apply; then the messages still arriving are stored first, or they
would queue behind the ones being applied, and it too rests the longer the later the acks are. A person-scale
stream of customer messages never waits on the intake.

Meta retries a delivery that is not acknowledged in time and disables a webhook that keeps failing, whereas a
delivery stored and acknowledged is only applied a little later: the backlog of a burst is applied once the burst
is over. While the acks are prompt and the worker keeps up (everyday traffic, a campaign's statuses) it never rests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WINDOW = 0.5  # seconds of arrivals the intake's rate is read over
REST_PER_BUSY = 9.0  # at most this many seconds rested per second a batch took: the worker keeps >= 1/10
STEEPNESS = 3.0  # rest per second of batch for each time the intake's rate exceeds the worker's pace
MAX_REST = 2.0  # seconds: the backlog keeps moving however long a batch took
# Seconds a stored group's first delivery may wait for its commit before the acks count as slow: a group forms in
# about a millisecond and commits in one or two; at 4,000 deliveries/s waits of 5-10 ms meant the worker's batches
# held the loop, and the loader's acks queued for a second (bench.ingest).
ACK_BUDGET = 0.010
# While the acks are slow a lane rests, per second its batch took, as many seconds as the latest groups (the longest
# wait of the last window) overran ACK_BUDGET, in budgets, at most REST_PER_BUSY (the bulk lane at least one): a
# fixed rest either cost a burst of customer messages a tenth of its mirror rate (acks 15-20 ms;
# bench.mirror_latency's backlog step) and a campaign's statuses four seconds (bench.status_storm), or left the acks
# of a flood at 4,000 deliveries/s queued for a second (bench.ingest).
SLOW_HOLD = 2.0  # seconds the acks count as slow after a group that waited too long


class _HalfWindows:
    """Two buckets of half a window each: the current one and the one before it (older amounts are dropped)."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._half = window / 2
        self._clock = clock
        self._start = clock()
        self._current = 0.0
        self._previous = 0.0

    def _roll(self, now: float) -> None:
        passed = now - self._start
        if passed >= self._half:
            # One half-window gone: the current bucket becomes the previous one; more: both are stale.
            self._previous = self._current if passed < 2 * self._half else 0.0
            self._current = 0.0
            self._start = now - (passed % self._half)


class RateMeter(_HalfWindows):
    """Amounts per second over about the last `window` seconds."""

    def add(self, amount: float = 1.0) -> None:
        self._roll(self._clock())
        self._current += amount

    def total(self) -> float:
        """The amount added over the window."""
        self._roll(self._clock())
        return self._previous + self._current

    def rate(self) -> float:
        now = self._clock()
        self._roll(now)
        return (self._previous + self._current) / (self._half + (now - self._start))


class WindowMax(_HalfWindows):
    """The largest amount added over about the last `window` seconds."""

    def add(self, amount: float) -> None:
        self._roll(self._clock())
        self._current = max(self._current, amount)

    def value(self) -> float:
        self._roll(self._clock())
        return max(self._current, self._previous)


class IntakeFirst:
    """Shared by the process's ingest writer (`stored`) and its webhook worker (`rest_after`)."""

    def __init__(self, *, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._arrivals = RateMeter(window, clock)
        self._applied = RateMeter(window, clock)
        self._busy = RateMeter(window, clock)  # seconds the worker's batches took
        self._clock = clock
        self._resume_at = 0.0  # the bulk lane rests until then
        self._live_resume_at = 0.0  # the live lane, in a flood
        self._slow_until = 0.0  # a group waited over ACK_BUDGET: the acks count as slow until then
        self._longest = WindowMax(window, clock)  # the longest wait of a stored group

    async def turn(self, *, live: bool = False) -> None:
        """Wait out the lane's rest, if it is resting."""
        wait = (self._live_resume_at if live else self._resume_at) - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)

    @property
    def acks_slow(self) -> bool:
        """A group stored within the last SLOW_HOLD seconds waited over ACK_BUDGET, and deliveries still arrive (the
        window's): once a burst is over nothing rests for it."""
        return self._clock() < self._slow_until and self._arrivals.total() > 0

    def stored(self, n: int, waited: float = 0.0) -> None:
        """n deliveries were committed (and are acknowledged), the first of them `waited` seconds after it
        arrived."""
        self._arrivals.add(n)
        self._longest.add(waited)
        if waited > ACK_BUDGET:
            self._slow_until = self._clock() + SLOW_HOLD

    def _overrun(self) -> float:
        """By how many budgets the longest wait of the last window overran ACK_BUDGET, at most REST_PER_BUSY."""
        return min(max(self._longest.value() / ACK_BUDGET - 1.0, 0.0), REST_PER_BUSY)

    def live_rest_after(self, took: float, *, full: bool) -> float:
        """Seconds the live lane rests after a batch that took `took` seconds: none unless it is a flood (the batch
        was `full` and the acks are slow), then `took` times the budgets the latest acks overran."""
        if not full or took <= 0 or not self.acks_slow:
            return 0.0
        rest = min(took * self._overrun(), MAX_REST)
        self._live_resume_at = max(self._live_resume_at, self._clock() + rest)
        return rest

    def rest_after(self, applied: int, took: float, *, full: bool) -> float:
        """Seconds the bulk lane rests after a batch of `applied` deliveries that took `took` seconds (`full`: as
        many as asked for, so more wait): while the acks are slow, `took` times the budgets they overran (at least
        once); else none while the worker keeps up; else STEEPNESS times `took` per time the intake outpaces it, at
        most REST_PER_BUSY times."""
        if applied <= 0 or took <= 0:
            return 0.0
        self._applied.add(applied)
        self._busy.add(took)
        if self.acks_slow:
            rest = min(took * max(self._overrun(), 1.0), MAX_REST)
            self._resume_at = max(self._resume_at, self._clock() + rest)
            return rest
        if not full:
            return 0.0  # nothing left behind: the worker keeps up (a campaign's statuses, everyday traffic)
        # Deliveries applied per second of the worker's own time (both lanes, rests not counted): the rate it
        # could keep up with; resting does not lower it, so a rest never makes the next one longer.
        pace = self._applied.total() / max(self._busy.total(), 1e-6)
        arriving = self._arrivals.rate()
        if arriving <= pace:
            return 0.0
        # Steeply: at 4,000/s a rest only as long again as the batch at twice the worker's pace still left the
        # acks queued for seconds, while a little behind (1,000/s on a busy machine) it hardly rests.
        rest = min(took * min(STEEPNESS * (arriving / pace - 1.0), REST_PER_BUSY), MAX_REST)
        self._resume_at = max(self._resume_at, self._clock() + rest)
        return rest
