"""Pure pacing maths for the per-number send throttle (no I/O, no clock).

The rule implemented here is mirrored line for line by the Lua script in ``scheduler.throttle``;
``LocalThrottle`` uses these functions directly, and the tests check them without Redis.

Two mechanisms work together:

* a GCRA pacer (theoretical arrival time ``tat``) spaces grants one ``interval`` apart, so a saturated
  number sends smoothly instead of in once-a-second bursts, and a waiting reply is never more than one
  interval from the next free slot;
* a sliding log of recent sends is the hard cap (below). It is exact over any window, not aligned
  buckets, whatever the pacer's catch-up allows.

Meta counts arrivals, not grants, and a request reaches Meta at some unknown moment between its grant
and the return of its response. So the log holds, for every recent send, the latest moment it can have
arrived (its *bound*), and a grant at ``now`` is refused while ``mps`` bounds lie after ``now - 1 s``.
That is exact whatever the latency: if some one-second window at Meta held ``mps + 1`` arrivals, the last
of them to be granted would have seen the other ``mps`` with bounds after its own grant minus one second.

Where the bound comes from:

* a *slot* (``grant_slots``, the campaign path) is in flight with the bound ``grant + hold`` (the longest
  a request can take); ``settle`` lowers it to the moment its response came back. A saturated number then
  runs at ``mps / (1 + latency)``: 0.99 of the cap at the 10 ms of a near Graph API, whatever the jitter.
  A slot may be granted with a *lead*: its sender promises not to send before ``grant + lead`` and the slot
  is checked and counted as of that moment, so what the sender does between grant and request (commit the
  attempt) is not latency. The proof above holds with "grant" read as "the moment checked";
* a plain grant (``decide``, replies and other single sends that do not report back) gets the bound
  ``grant + margin``: jitter under ``margin`` is absorbed, at ``1 / (1 + margin)`` of the cap.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

DEFAULT_MARGIN = 0.020
WINDOW = 1.0  # Meta's cap is per second, over any sliding second
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
        """Time ``mps`` paced grants take: one second plus the margin of a plain grant."""
        return WINDOW + self.margin

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
class ArrivalLog:
    """Latest possible arrival at Meta (bound) of every recent send, by slot id."""

    bounds: dict[str, float] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)  # lazily pruned: stale entries are skipped
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, bound: float, slot: str | None = None) -> str:
        slot = slot if slot is not None else f"g{next(self._ids)}"
        self.bounds[slot] = bound
        heapq.heappush(self._heap, (bound, slot))
        return slot

    def lower(self, slot: str, bound: float) -> None:
        """A response came back: the send cannot arrive after ``bound``; never raises a bound."""
        current = self.bounds.get(slot)
        if current is not None and bound < current:
            self.bounds[slot] = bound
            heapq.heappush(self._heap, (bound, slot))

    def drop(self, slot: str) -> None:
        """A slot granted but never used (its sender stopped first)."""
        self.bounds.pop(slot, None)

    def live(self, now: float) -> int:
        """Sends that may still fall in a window with one granted at ``now``."""
        horizon = now - WINDOW
        heap = self._heap
        while heap and heap[0][0] <= horizon:
            bound, slot = heapq.heappop(heap)
            if self.bounds.get(slot) == bound:
                del self.bounds[slot]
        if not self.bounds:
            heap.clear()
        return len(self.bounds)

    def free_at(self, mps: int, now: float, at: float | None = None) -> float:
        """Earliest moment from ``at`` (default ``now``) at which fewer than ``mps`` bounds lie within the
        second before it (assuming none settles). Pruning goes by ``now``: a bound older than ``at``'s
        second can still share one with a plain grant made before ``at``."""
        at = now if at is None else at
        total = self.live(now)
        if self.count_after(at - WINDOW) < mps:
            return at
        return sorted(self.bounds.values())[total - mps] + WINDOW

    def count_after(self, horizon: float) -> int:
        """Bounds later than ``horizon`` (nothing is pruned)."""
        return sum(1 for bound in self.bounds.values() if bound > horizon)


@dataclass
class NumberState:
    """Throttle state of one number: pacer, arrival log of recent sends and any penalty."""

    tat: float = 0.0
    log: ArrivalLog = field(default_factory=ArrivalLog)
    penalty_until: float = 0.0


@dataclass(frozen=True)
class Decision:
    """Outcome of one attempt: ``wait == 0`` means granted."""

    wait: float
    reason: Reason

    @property
    def granted(self) -> bool:
        return self.reason is Reason.OK


def earliest_wait(state: NumberState, pacing: Pacing, now: float, lead: float = 0.0) -> tuple[float, Reason]:
    """Seconds until a grant could be made, ignoring priority, and the binding constraint; with ``lead``,
    for a send that will not leave before ``now + lead``."""
    at = now + lead
    wait, reason = 0.0, Reason.OK
    if state.penalty_until - at > wait:
        wait, reason = state.penalty_until - at, Reason.PENALTY
    if state.tat - now > wait:
        wait, reason = state.tat - now, Reason.PACE
    window_wait = state.log.free_at(pacing.mps, now, at) - at
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
    """Advance the pacer and log a plain grant, whose arrival is assumed within ``margin`` of it."""
    state.tat = max(state.tat, now - pacing.catch_up) + pacing.interval
    state.log.add(now + pacing.margin)


def pace_budget(state: NumberState, pacing: Pacing, now: float) -> int:
    """Grants the pacer allows at ``now`` back to back (its catch-up lets a late caller take a few)."""
    base = max(state.tat, now - pacing.catch_up)
    if base > now:
        return 0
    return int((now - base) / pacing.interval) + 1


def grant_slots(
    state: NumberState,
    pacing: Pacing,
    now: float,
    want: int,
    hold: float,
    *,
    lead: float = 0.0,
    interactive_waiting: bool,
    mint: Callable[[int], str],
) -> tuple[list[str], Decision]:
    """Grant up to ``want`` campaign slots at once, each in flight until settled (at most ``hold``).

    A slot granted with ``lead`` must not be sent before ``now + lead``: it is checked against the cap as
    of that moment, so work its sender does first (committing the attempt) is not counted as latency.
    Returns the slot ids (``mint(i)`` for the i-th) and, when none could be granted, how long to wait.
    Bulk only: a registered interactive waiter makes it yield, as in ``decide``.
    """
    wait, reason = earliest_wait(state, pacing, now, lead)
    if interactive_waiting:
        return [], Decision(wait + pacing.interval, Reason.YIELD)
    if wait > 0:
        return [], Decision(wait, reason)
    at = now + lead
    state.log.live(now)
    count = min(want, pacing.mps - state.log.count_after(at - WINDOW), pace_budget(state, pacing, now))
    base = max(state.tat, now - pacing.catch_up)
    state.tat = base + count * pacing.interval
    slots = [state.log.add(at + hold, mint(i)) for i in range(count)]
    return slots, Decision(0.0, Reason.OK)


def settle(state: NumberState, slot: str, responded_at: float) -> None:
    """The response to ``slot``'s send came back at ``responded_at``: it cannot arrive later than that."""
    state.log.lower(slot, responded_at)


def release(state: NumberState, slot: str) -> None:
    """``slot`` was granted but nothing was sent with it."""
    state.log.drop(slot)


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
