"""How each background loop is doing: failures logged at a bounded rate, and what `/healthz` reports.

A loop that meets a database outage fails on every turn (several times a second); each failure used to log
a full traceback. Here the first failure of a streak logs its traceback, later ones at most one per
``traceback_every`` seconds (the rest are counted), and the first success after a streak says how long it
lasted. A loop failing for longer than ``unhealthy_after`` is named by `failing()`, which `/healthz` reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TRACEBACK_EVERY = 30.0  # seconds between two tracebacks of one failing loop
UNHEALTHY_AFTER = 30.0  # seconds of failing, without one success, before /healthz names the loop
# A streak whose last failure is older than this is over: some loops only report when they have work (the
# webhook intake, a campaign's writer), and a success may never come to close their streak. Every loop retries
# at least this often while it fails.
STALE_AFTER = 10.0


@dataclass
class LoopMonitor:
    """One loop's streak of failures."""

    name: str
    log: logging.Logger
    traceback_every: float = TRACEBACK_EVERY
    clock: Callable[[], float] = time.monotonic
    reported: bool = True  # named by /healthz while it fails (not a side job whose failure Slack can cause)
    failing_since: float | None = None
    failures: int = 0
    last_error: str = ""
    last_failure: float = float("-inf")
    _last_traceback: float = float("-inf")
    _held_back: int = 0

    def ok(self) -> None:
        """A turn that did its work: ends a streak of failures."""
        if self.failing_since is None:
            return
        self.log.warning("%s recovered after %d failures in %.1fs", self.name, self.failures,
                         self.clock() - self.failing_since)
        self.failing_since = None
        self.failures = 0
        self._held_back = 0
        # The traceback clock is kept: a loop that fails and succeeds in turn still logs one per interval.

    def failed(self, exc: BaseException, doing: str = "") -> None:
        """A turn that failed: logged with its traceback if none was logged for this loop lately."""
        now = self.clock()
        if self.failing_since is None or now - self.last_failure > STALE_AFTER:
            self.failing_since, self.failures, self._held_back = now, 0, 0  # a new streak
        self.last_failure = now
        self.failures += 1
        self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
        what = f"{self.name}: {doing or 'turn'} failed; retrying"
        if now - self._last_traceback >= self.traceback_every:
            self._last_traceback = now
            held, self._held_back = self._held_back, 0
            suffix = f" ({held} more failures since the last traceback)" if held else ""
            self.log.warning(what + suffix, exc_info=exc)
        else:
            self._held_back += 1
            if self._held_back == 1:  # one line, no traceback, then silence until the next traceback
                self.log.warning("%s (%s; further failures counted, tracebacks every %.0fs)", what,
                                 self.last_error, self.traceback_every)

    def failing_for(self) -> float:
        """Seconds this loop has been failing without a success (0 when it is not, or its last failure is
        older than `STALE_AFTER`)."""
        now = self.clock()
        if self.failing_since is None or now - self.last_failure > STALE_AFTER:
            return 0.0
        return now - self.failing_since


@dataclass
class LoopHealth:
    """Every loop of one application; `loop(name)` gives (or makes) one's monitor."""

    unhealthy_after: float = UNHEALTHY_AFTER
    traceback_every: float = TRACEBACK_EVERY
    clock: Callable[[], float] = time.monotonic
    loops: dict[str, LoopMonitor] = field(default_factory=dict)

    def loop(self, name: str, log: logging.Logger, *, reported: bool = True) -> LoopMonitor:
        """The monitor of loop `name`; `reported=False` for side jobs /healthz should not judge by."""
        if name not in self.loops:
            self.loops[name] = LoopMonitor(name, log, self.traceback_every, self.clock, reported)
        return self.loops[name]

    def failing(self) -> dict[str, str]:
        """Loops failing for longer than `unhealthy_after`: name -> reason."""
        return {name: f"failing for {m.failing_for():.0f}s ({m.failures} failures): {m.last_error}"
                for name, m in sorted(self.loops.items()) if m.reported and m.failing_for() > self.unhealthy_after}


@dataclass
class Backoff:
    """Waits between retries of a failing step: `first`, doubling up to `cap`; `reset()` after a success."""

    first: float = 0.25
    cap: float = 5.0
    _next: float = 0.0

    def next(self) -> float:
        self._next = self.first if self._next == 0.0 else min(self.cap, self._next * 2)
        return self._next

    def reset(self) -> None:
        self._next = 0.0
