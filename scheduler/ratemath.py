"""Pure pacing maths for the per-number send throttle (no I/O, no clock).

The rule implemented here is mirrored line for line by the Lua script in ``scheduler.throttle``;
``LocalThrottle`` uses these functions directly, and the tests check them without Redis.

Two mechanisms work together:

* a GCRA pacer (theoretical arrival time ``tat``) spaces grants one ``interval`` apart, so a saturated
  number sends smoothly instead of in once-a-second bursts, and a waiting reply is never more than one
  interval from the next free slot;
* a sliding log of recent sends is the hard cap (below). It is exact over any window, not aligned
  buckets, whatever the pacer's catch-up allows.

Meta counts arrivals, not grants, and a request reaches Meta at some unknown moment between its *start*
(the moment it was granted for; its sender sends no earlier) and the return of its response. So the log
holds, for every recent send, the latest moment it can have arrived (its *bound*), and a send may start
at ``s`` only while fewer than ``mps`` bounds lie after ``s - 1 s``. That is exact whatever the latency:
if some one-second window at Meta held ``mps + 1`` arrivals, the last of them to be granted would have
seen the other ``mps`` with bounds after its own start minus one second.

Where the bound comes from:

* a *slot* (``grant_slots``, the campaign path) is in flight with the bound ``start + hold`` (the longest
  a request can take); ``settle`` lowers it to the moment its response came back. A saturated number then
  runs at ``mps / (1 + latency)``: 0.99 of the cap at the 10 ms of a near Graph API, whatever the jitter.
  Slots are scheduled (``schedule``): each gets the earliest start the penalty, the pacer and the log
  allow, from ``now + lead`` (what its sender does first, committing the attempt, is then not latency) to
  ``horizon`` later (a place the log frees between two requests is not lost to the time between them);
* a plain grant (``decide``, replies and other single sends that do not report back) starts at once with
  the bound ``now + margin``: jitter under ``margin`` is absorbed, at ``1 / (1 + margin)`` of the cap.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
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
        heap = self._heap
        while heap and now - heap[0][0] >= WINDOW:
            bound, slot = heapq.heappop(heap)
            if self.bounds.get(slot) == bound:
                del self.bounds[slot]
        if not self.bounds:
            heap.clear()
        return len(self.bounds)

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


def schedule(
    state: NumberState, pacing: Pacing, now: float, want: int = 1, *, lead: float = 0.0, horizon: float = 0.0
) -> tuple[list[float], Decision]:
    """Start times for up to ``want`` sends, each the earliest the penalty, the pacer and the cap allow,
    none before ``now + lead`` nor after ``now + lead + horizon``. Records nothing.

    The k-th new send may start once all but ``mps - 1 - k`` of the logged bounds are a second old: the
    k sends before it in the batch count too (their bounds are later than its start minus a second).
    When none fits, the decision says how long until the first would.
    """
    at = now + lead
    want = min(want, pacing.mps)
    first = state.log.live(now) - pacing.mps
    # Sorted only when the log can bind one of these sends (it holds at least mps - want + 1 bounds).
    bounds = sorted(state.log.bounds.values()) if first + want > 0 else []
    tat = state.tat
    starts: list[float] = []
    for k in range(want):
        start, reason = at, Reason.OK
        if state.penalty_until > start:
            start, reason = state.penalty_until, Reason.PENALTY
        if tat > start:
            start, reason = tat, Reason.PACE
        if first + k >= 0 and start - bounds[first + k] < WINDOW:
            start, reason = a_window_after(bounds[first + k]), Reason.WINDOW
        if start > at + horizon:
            if not starts:
                return [], Decision(start - at - horizon, reason)
            break
        starts.append(start)
        tat = next_tat(tat, start, pacing)
    return starts, Decision(0.0, Reason.OK)


def next_tat(tat: float, start: float, pacing: Pacing) -> float:
    """The pacer after a send starting at ``start``: one interval on, from no further back than its catch-up."""
    return max(tat, start - pacing.catch_up) + pacing.interval


def a_window_after(t: float) -> float:
    """The first float ``s`` with ``s - t >= WINDOW`` (``t + WINDOW`` can fall short by rounding)."""
    s = t + WINDOW
    while s - t < WINDOW:
        s = math.nextafter(s, math.inf)
    return s


def decide(state: NumberState, pacing: Pacing, now: float, *, interactive: bool, interactive_waiting: bool) -> Decision:
    """Grant (recording it in ``state``) or say how long to wait.

    Bulk callers yield to any registered interactive waiter: they are told to come back one interval
    after the slot the waiter will take.
    """
    starts, decision = schedule(state, pacing, now)
    if not interactive and interactive_waiting:
        return Decision(decision.wait + pacing.interval, Reason.YIELD)
    if not starts:
        return decision
    record_grant(state, pacing, now)
    return Decision(0.0, Reason.OK)


def record_grant(state: NumberState, pacing: Pacing, now: float) -> None:
    """Advance the pacer and log a plain grant, whose arrival is assumed within ``margin`` of it."""
    state.tat = next_tat(state.tat, now, pacing)
    state.log.add(now + pacing.margin)


def grant_slots(
    state: NumberState,
    pacing: Pacing,
    now: float,
    want: int,
    hold: float,
    *,
    lead: float = 0.0,
    horizon: float = 0.0,
    interactive_waiting: bool,
    mint: Callable[[int], str],
) -> tuple[list[tuple[str, float]], Decision]:
    """Grant up to ``want`` campaign slots at once, each in flight until settled (at most ``hold``).

    Each slot comes with the moment its send may start (``schedule``): from ``now + lead``, so work its
    sender does first (committing the attempt) is not counted as latency, to ``horizon`` later, so that a
    slot the cap frees between two requests is not lost to the time between them. Returns (``mint(i)``,
    start) pairs and, when none could be granted, how long to wait. Bulk only: a registered interactive
    waiter makes it yield, as in ``decide``.
    """
    if interactive_waiting:
        _, decision = schedule(state, pacing, now, lead=lead)
        return [], Decision(decision.wait + pacing.interval, Reason.YIELD)
    starts, decision = schedule(state, pacing, now, want, lead=lead, horizon=horizon)
    slots: list[tuple[str, float]] = []
    for i, start in enumerate(starts):
        slots.append((state.log.add(start + hold, mint(i)), start))
        state.tat = next_tat(state.tat, start, pacing)
    return slots, decision


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
