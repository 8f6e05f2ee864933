"""Pure pacing maths for the per-number send throttle (no I/O, no clock).

The rule implemented here is mirrored line for line by the Lua script in ``scheduler.throttle``;
``LocalThrottle`` uses these functions directly, and the tests check them without Redis.

Two mechanisms work together:

* a GCRA pacer (theoretical arrival time ``tat``) spaces grants one ``interval`` apart, so a saturated
  number sends smoothly instead of in once-a-second bursts, and a waiting reply is never more than one
  interval from the next free slot;
* a sliding log of the last ``mps`` grant times is the hard cap: a grant is refused while the
  ``mps``-th most recent grant is younger than ``window``. It is exact over any window, not aligned
  buckets, whatever the pacer's catch-up allows.

``window`` is one second plus ``margin``: a grant is a promise made on the throttle's clock, while the
request reaches Meta a few milliseconds later with jitter. Counting over 1 s + margin keeps every 1-s
window on the receiving side within ``mps`` as long as jitter stays under ``margin``, at the cost of
running at ``1 / (1 + margin)`` of the cap (0.98 with the default 20 ms).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_MARGIN = 0.020
# Lateness of a waiter (round trip, event-loop lag, a busy CPU) the pacer absorbs without losing rate. It
# lets up to this much of the schedule through back to back (2 grants at 80 mps, 20 at 1,000 mps); the
# sliding log still caps every window, and a reply waits at most one interval plus this.
MAX_CATCH_UP = 0.020
# How long an interactive waiter's registration outlives the wait it was told; bounds how long a crashed
# waiter can hold campaign sends back.
DEFAULT_REGISTRATION_GRACE = 0.5


class Reason(enum.StrEnum):
    """Why a caller was told to wait (or ``OK`` when granted)."""

    OK = "ok"
    PACE = "pace"
    WINDOW = "window"
    PENALTY = "penalty"
    YIELD = "yield"


@dataclass(frozen=True)
class Pacing:
    """Derived timing for one number at ``mps`` messages per second."""

    mps: int
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if self.mps < 1:
            raise ValueError(f"mps must be a positive integer, got {self.mps!r}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1) seconds, got {self.margin!r}")

    @property
    def window(self) -> float:
        """Length of the sliding window that may hold at most ``mps`` grants."""
        return 1.0 + self.margin

    @property
    def interval(self) -> float:
        """Spacing between paced grants; ``mps`` intervals fill exactly one window."""
        return self.window / self.mps

    @property
    def catch_up(self) -> float:
        """How far behind ``now`` the pacer may reset, so a late waiter does not cost throughput."""
        return MAX_CATCH_UP

    @property
    def target_rate(self) -> float:
        """Sustained grants per second when saturated."""
        return self.mps / self.window


@dataclass
class NumberState:
    """Throttle state of one number: pacer, recent grants (newest first) and any penalty."""

    tat: float = 0.0
    grants: deque[float] = field(default_factory=deque)
    penalty_until: float = 0.0


@dataclass(frozen=True)
class Decision:
    """Outcome of one attempt: ``wait == 0`` means granted."""

    wait: float
    reason: Reason

    @property
    def granted(self) -> bool:
        return self.reason is Reason.OK


def earliest_wait(state: NumberState, pacing: Pacing, now: float) -> tuple[float, Reason]:
    """Seconds until a grant could be made, ignoring priority, and the binding constraint."""
    wait, reason = 0.0, Reason.OK
    if state.penalty_until - now > wait:
        wait, reason = state.penalty_until - now, Reason.PENALTY
    if state.tat - now > wait:
        wait, reason = state.tat - now, Reason.PACE
    if len(state.grants) >= pacing.mps:
        window_wait = state.grants[pacing.mps - 1] + pacing.window - now
        if window_wait > wait:
            wait, reason = window_wait, Reason.WINDOW
    return wait, reason


def decide(state: NumberState, pacing: Pacing, now: float, *, interactive: bool, interactive_waiting: bool) -> Decision:
    """Grant (recording it in ``state``) or say how long to wait.

    Bulk callers yield to any registered interactive waiter: they are told to come back one interval
    after the slot the waiter will take.
    """
    wait, reason = earliest_wait(state, pacing, now)
    if not interactive and interactive_waiting:
        return Decision(wait + pacing.interval, Reason.YIELD)
    if wait > 0:
        return Decision(wait, reason)
    record_grant(state, pacing, now)
    return Decision(0.0, Reason.OK)


def record_grant(state: NumberState, pacing: Pacing, now: float) -> None:
    """Advance the pacer and log the grant, keeping only the last ``mps`` grant times."""
    state.tat = max(state.tat, now - pacing.catch_up) + pacing.interval
    state.grants.appendleft(now)
    while len(state.grants) > pacing.mps:
        state.grants.pop()


def penalize(state: NumberState, now: float, seconds: float) -> None:
    """Block every grant until ``now + seconds``; an earlier deadline never shortens a longer one."""
    state.penalty_until = max(state.penalty_until, now + seconds)


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """Most events falling in any half-open window ``[t, t + width)``, sliding over ``times``."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def achieved_rate(times: Sequence[float]) -> float:
    """Events per second between the first and last event (0 when fewer than two)."""
    if len(times) < 2:
        return 0.0
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else float("inf")
