"""Acks before processing in a process that does both (`serve --role all`): while deliveries arrive faster than
the webhook worker applies them, its bulk lane (statuses and the like) rests between its batches (down to one part
in ten of the time when far behind) and leaves the event loop (and PostgreSQL) to the intake. Its live lane never
rests: a customer's message goes on to Slack as soon as it is stored.

Meta retries a delivery that is not acknowledged in time and disables a webhook that keeps failing, whereas a
delivery stored and acknowledged is only applied a little later: the backlog of a burst is applied once the burst
is over. While the worker keeps up (everyday traffic, a campaign's statuses) it never rests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WINDOW = 0.5  # seconds of arrivals the intake's rate is read over
REST_PER_BUSY = 9.0  # at most this many seconds rested per second a batch took: the worker keeps >= 1/10
STEEPNESS = 3.0  # rest per second of batch for each time the intake's rate exceeds the worker's pace
MAX_REST = 2.0  # seconds: the backlog keeps moving however long a batch took


class RateMeter:
    """Amounts per second over about the last `window` seconds (two half-window buckets)."""

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


class IntakeFirst:
    """Shared by the process's ingest writer (`stored`) and its webhook worker (`rest_after`)."""

    def __init__(self, *, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._arrivals = RateMeter(window, clock)
        self._applied = RateMeter(window, clock)
        self._busy = RateMeter(window, clock)  # seconds the worker's batches took
        self._clock = clock
        self._resume_at = 0.0  # the bulk lane rests until then

    async def turn(self) -> None:
        """Wait out the bulk lane's rest, if it is resting (the live lane never rests)."""
        wait = self._resume_at - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)

    def stored(self, n: int) -> None:
        """n deliveries were committed (and are acknowledged)."""
        self._arrivals.add(n)

    def rest_after(self, applied: int, took: float, *, full: bool) -> float:
        """Seconds to rest after a batch of `applied` deliveries that took `took` seconds (`full`: as many as asked
        for, so more wait): none while the worker keeps up, else STEEPNESS times `took` per time the intake
        outpaces it, at most REST_PER_BUSY times."""
        if applied <= 0 or took <= 0:
            return 0.0
        self._applied.add(applied)
        self._busy.add(took)
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
