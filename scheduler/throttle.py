"""Per-number send throttle shared by every process on one Redis, with an in-process fallback.

Algorithm (see ``scheduler.ratemath`` for the maths): a GCRA pacer spaces sends one interval apart, and
a sliding log of the latest moment each recent send can have reached Meta is the hard cap over any
window. GCRA alone keeps sends
smooth and gives a reply the very next slot, but its catch-up (needed so a waiter's round trip does not
cost throughput) can squeeze a few grants closer; a sliding log alone is exact but lets a campaign burst
``mps`` sends at once and then makes a reply wait for the oldest to age out. Together they are exact and
smooth. A plain token bucket was rejected because its burst capacity breaks the sliding-window cap.

Everything runs in one Lua script on Redis's own clock (``TIME``), so process clocks never matter and
concurrent acquirers on any number of processes cannot interleave between check and grant. A settled
slot is sent as its age (how long ago, on the process's monotonic clock, its response came back) and
stamped ``TIME - age`` by the script: later than the true moment, never earlier, whatever the offset
between the clocks.

Campaign senders take slots in batches (``acquire_slots``: one round trip for several grants, carrying
the settlements of the previous sends); replies and other single sends use ``acquire``.

Priorities: an interactive waiter that cannot be served at once registers itself in a sorted set scored
by an expiry (the wait it was told plus a short grace). Bulk acquirers yield while any unexpired
registration exists. A waiter that crashes simply stops refreshing its entry, so bulk sends resume at
most one wait plus the grace later.

Both backends share one acquire loop and must keep the same rules as the Lua script
(``scheduler.throttle_scripts``) and ``scheduler.ratemath``; splitting them apart would let them drift.

Failure mode: if Redis cannot be reached, ``acquire`` raises ``ThrottleUnavailable``; it never lets a
send through unthrottled. Callers treat that like any other transient send failure.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from scheduler import ratemath
from scheduler.ratemath import DEFAULT_MARGIN, DEFAULT_REGISTRATION_GRACE, Pacing, Reason
from scheduler.throttle_scripts import ACQUIRE_LUA, PENALIZE_LUA

__all__ = [
    "LocalThrottle",
    "Priority",
    "RedisThrottle",
    "Slot",
    "Throttle",
    "ThrottleUnavailable",
    "make_throttle",
]

MICROS = 1_000_000
SLOT_POLL = 0.005  # longest a slot waiter sleeps on a wait that a settling slot may cut short


class Priority(enum.IntEnum):
    """Lower value goes first: staff replies before campaign sends."""

    INTERACTIVE = 0
    BULK = 1


class ThrottleUnavailable(Exception):
    """The shared throttle cannot be consulted (Redis down or throttle closed); do not send."""


@dataclass(frozen=True)
class Slot:
    """Permission for one campaign send, not before ``not_before`` (``time.monotonic()``)."""

    id: str
    not_before: float = 0.0

    async def wait(self, ahead: float = 0.0) -> None:
        """Sleep until ``ahead`` seconds before the slot may be used."""
        delay = self.not_before - ahead - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class Throttle(Protocol):
    """Grants permission to send one message on a number, at most ``mps`` in any one-second window."""

    async def acquire(
        self,
        key: str,
        mps: int,
        priority: Priority = Priority.BULK,
        timeout: float | None = None,  # noqa: ASYNC109 - lets the throttle refuse a wait it knows is too long
    ) -> None:
        """Return when the caller may send one message now; ``TimeoutError`` if not within ``timeout``."""
        ...

    async def acquire_slots(
        self,
        key: str,
        mps: int,
        want: int,
        *,
        hold: float,
        lead: float = 0.0,
        horizon: float = 0.0,
        settled: Sequence[tuple[str, float]] = (),
        unused: Sequence[str] = (),
    ) -> list[Slot]:
        """Wait for between 1 and ``want`` bulk send slots, granted in one round trip.

        A slot counts against the cap from its grant until it is settled with the moment its response came
        back (``time.monotonic()``), or for ``hold`` seconds if it never is. Each slot says when it may be
        used (``Slot.not_before``): from ``lead`` after the call returned, up to ``horizon`` later when the
        cap frees a place only then (``ratemath.schedule``). ``settled`` and ``unused`` (slots granted but
        not sent with) are recorded in the same round trip.
        """
        ...

    async def try_slots(
        self,
        key: str,
        mps: int,
        want: int,
        *,
        hold: float,
        lead: float = 0.0,
        horizon: float = 0.0,
        settled: Sequence[tuple[str, float]] = (),
        unused: Sequence[str] = (),
    ) -> tuple[list[Slot], float]:
        """One round trip of ``acquire_slots``: the slots granted (maybe none) and, if none, how long to wait."""
        ...

    async def settle(self, key: str, settled: Sequence[tuple[str, float]], unused: Sequence[str] = ()) -> None:
        """Record responses (slot, monotonic time it came back) and unused slots without asking for more."""
        ...

    async def penalize(self, key: str, seconds: float) -> None:
        """Hold every acquirer of ``key`` for ``seconds`` (after Meta answered 130429)."""
        ...

    async def close(self) -> None:
        """Release resources; later acquires raise ``ThrottleUnavailable``."""
        ...


class _PacedThrottle:
    """Shared acquire loop: one bulk caller per number and process talks to the store at a time."""

    def __init__(self, margin: float, registration_grace: float) -> None:
        self._margin = margin
        self._grace = registration_grace
        self._bulk_locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    async def _attempt(
        self, key: str, pacing: Pacing, priority: Priority, waiter: str
    ) -> tuple[ratemath.Decision, float]:
        """One try against the store: the decision and the store's clock reading it was made at."""
        raise NotImplementedError

    async def _exchange(
        self, key: str, pacing: Pacing, want: int, hold: float, prefix: str,
        settled: Sequence[tuple[str, float]], unused: Sequence[str], lead: float = 0.0, horizon: float = 0.0,
    ) -> tuple[list[float], ratemath.Decision]:
        """Settle and release slots (settled as (slot, age)), then grant up to ``want`` (``prefix`` +
        index); returns each granted slot's start, in seconds after the store's now."""
        raise NotImplementedError

    async def _withdraw(self, key: str, waiter: str) -> None:
        """Forget an interactive waiter that gave up (timeout, cancellation or error)."""

    async def try_slots(
        self,
        key: str,
        mps: int,
        want: int,
        *,
        hold: float,
        lead: float = 0.0,
        horizon: float = 0.0,
        settled: Sequence[tuple[str, float]] = (),
        unused: Sequence[str] = (),
    ) -> tuple[list[Slot], float]:
        """See ``Throttle.try_slots``."""
        if self._closed:
            raise ThrottleUnavailable("throttle is closed")
        pacing = Pacing(int(mps), 0.0)  # the arrival log, not a margin, absorbs the latency
        prefix = uuid.uuid4().hex[:16] + ":"
        now = time.monotonic()
        ages = [(slot, max(0.0, now - at)) for slot, at in settled]
        offsets, decision = await self._exchange(
            key, pacing, max(1, want), hold, prefix, ages, unused, lead, horizon)
        if offsets:
            # From the answer's arrival, which is later than the store's clock reading its now.
            arrived = time.monotonic()
            return [Slot(f"{prefix}{i}", arrived + offset) for i, offset in enumerate(offsets)], 0.0
        # A wait bound by a slot still in flight ends when that slot settles, not at its hold: look again soon.
        return [], min(decision.wait, max(pacing.interval, SLOT_POLL))

    async def acquire_slots(
        self,
        key: str,
        mps: int,
        want: int,
        *,
        hold: float,
        lead: float = 0.0,
        horizon: float = 0.0,
        settled: Sequence[tuple[str, float]] = (),
        unused: Sequence[str] = (),
    ) -> list[Slot]:
        """See ``Throttle.acquire_slots``."""
        while True:
            slots, wait = await self.try_slots(
                key, mps, want, hold=hold, lead=lead, horizon=horizon, settled=settled, unused=unused)
            if slots:
                return slots
            settled, unused = (), ()
            await asyncio.sleep(wait)

    async def settle(self, key: str, settled: Sequence[tuple[str, float]], unused: Sequence[str] = ()) -> None:
        """See ``Throttle.settle``."""
        if self._closed or not (settled or unused):
            return
        now = time.monotonic()
        ages = [(slot, max(0.0, now - at)) for slot, at in settled]
        await self._exchange(key, Pacing(1, 0.0), 0, 0.0, "", ages, unused)

    async def acquire(
        self,
        key: str,
        mps: int,
        priority: Priority = Priority.BULK,
        timeout: float | None = None,  # noqa: ASYNC109 - lets the throttle refuse a wait it knows is too long
    ) -> None:
        """Return when the caller may send one message now; ``TimeoutError`` if not within ``timeout``."""
        await self.acquire_timed(key, mps, priority, timeout)

    async def acquire_timed(
        self,
        key: str,
        mps: int,
        priority: Priority = Priority.BULK,
        timeout: float | None = None,  # noqa: ASYNC109 - see acquire
    ) -> float:
        """Like ``acquire``; returns the grant time on the throttle's own clock (seconds), for measuring."""
        if self._closed:
            raise ThrottleUnavailable("throttle is closed")
        pacing = Pacing(int(mps), self._margin)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # The outer timeout also bounds waiting for the local lock and a slow store; the loop below
        # gives up early when the store already says the wait would overrun it.
        async with asyncio.timeout_at(deadline):
            if priority is Priority.BULK:
                async with self._bulk_locks.setdefault(key, asyncio.Lock()):
                    return await self._wait_turn(key, pacing, priority, "", deadline)
            waiter = uuid.uuid4().hex
            granted = False
            try:
                granted_at = await self._wait_turn(key, pacing, priority, waiter, deadline)
                granted = True
                return granted_at
            finally:
                if not granted:
                    await self._withdraw(key, waiter)

    async def _wait_turn(
        self, key: str, pacing: Pacing, priority: Priority, waiter: str, deadline: float | None
    ) -> float:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise ThrottleUnavailable("throttle is closed")
            decision, at = await self._attempt(key, pacing, priority, waiter)
            if decision.granted:
                return at
            if deadline is not None and loop.time() + decision.wait > deadline:
                raise TimeoutError(f"throttle for {key} cannot grant within the timeout ({decision.reason.value})")
            await asyncio.sleep(decision.wait)


class RedisThrottle(_PacedThrottle, Throttle):
    """Throttle shared through Redis by every process that uses the same ``prefix``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str = "wabridge:throttle",
        *,
        margin: float = DEFAULT_MARGIN,
        registration_grace: float = DEFAULT_REGISTRATION_GRACE,
        owns_client: bool = False,
    ) -> None:
        super().__init__(margin, registration_grace)
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._acquire_script = redis.register_script(ACQUIRE_LUA)
        self._penalize_script = redis.register_script(PENALIZE_LUA)

    def _keys(self, key: str) -> list[str]:
        # One hash tag per number keeps all its keys in one slot on a Redis Cluster. The arrival log is a
        # sorted set under a new name: the list of grants that older versions kept there would be the
        # wrong type for it.
        base = f"{self._prefix}:{{{key}}}"
        return [f"{base}:tat", f"{base}:arrivals", f"{base}:penalty", f"{base}:interactive", f"{base}:lead"]

    async def _run(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise ThrottleUnavailable(f"throttle store unreachable: {exc}") from exc

    async def _call(
        self, key: str, pacing: Pacing, *, interactive: bool, waiter: str, want: int, hold: float, prefix: str,
        lead: float = 0.0, horizon: float = 0.0, settled: Sequence[tuple[str, float]] = (),
        unused: Sequence[str] = (),
    ) -> tuple[list[float], ratemath.Decision, float]:
        args: list[str | int] = [
            pacing.mps,
            _micros(pacing.interval),
            _micros(ratemath.WINDOW),
            _micros(pacing.catch_up),
            1 if interactive else 0,
            waiter,
            _micros(self._grace),
            want,
            _micros(hold),
            prefix,
            _micros(lead),
            _micros(horizon),
            len(settled),
        ]
        for slot, age in settled:
            args += [slot, _micros(age)]
        args += list(unused)
        count, wait_us, reason, now_us, *offsets = await self._run(self._acquire_script, self._keys(key), args)
        reason_text = reason.decode() if isinstance(reason, bytes) else str(reason)
        starts = [int(o) / MICROS for o in offsets[: int(count)]]  # after the store's now
        return starts, ratemath.Decision(int(wait_us) / MICROS, Reason(reason_text)), int(now_us) / MICROS

    async def _attempt(
        self, key: str, pacing: Pacing, priority: Priority, waiter: str
    ) -> tuple[ratemath.Decision, float]:
        _, decision, at = await self._call(
            key, pacing, interactive=priority is Priority.INTERACTIVE, waiter=waiter, want=1,
            hold=pacing.margin, prefix=uuid.uuid4().hex)
        return decision, at

    async def _exchange(
        self, key: str, pacing: Pacing, want: int, hold: float, prefix: str,
        settled: Sequence[tuple[str, float]], unused: Sequence[str], lead: float = 0.0, horizon: float = 0.0,
    ) -> tuple[list[float], ratemath.Decision]:
        offsets, decision, _ = await self._call(
            key, pacing, interactive=False, waiter="", want=want, hold=hold, prefix=prefix, lead=lead,
            horizon=horizon, settled=settled, unused=unused)
        return offsets, decision

    async def _withdraw(self, key: str, waiter: str) -> None:
        # Best effort: if this fails the entry expires on its own after the grace period.
        try:
            await asyncio.shield(self._redis.zrem(self._keys(key)[3], waiter))
        except (RedisError, OSError, asyncio.CancelledError):
            pass

    async def penalize(self, key: str, seconds: float) -> None:
        """Hold every acquirer of ``key`` on every process for ``seconds`` from now (Redis clock)."""
        if seconds <= 0:
            return
        await self._run(self._penalize_script, [self._keys(key)[2]], [_micros(seconds)])

    async def close(self) -> None:
        """Stop granting; close the Redis client when this throttle created it."""
        self._closed = True
        if self._owns_client:
            await self._redis.aclose()


class LocalThrottle(_PacedThrottle, Throttle):
    """In-process throttle with the same rules; correct only while one process sends for a number."""

    def __init__(
        self,
        *,
        margin: float = DEFAULT_MARGIN,
        registration_grace: float = DEFAULT_REGISTRATION_GRACE,
    ) -> None:
        super().__init__(margin, registration_grace)
        self._states: dict[str, ratemath.NumberState] = {}
        self._waiters: dict[str, set[str]] = {}

    async def _attempt(
        self, key: str, pacing: Pacing, priority: Priority, waiter: str
    ) -> tuple[ratemath.Decision, float]:
        state = self._states.setdefault(key, ratemath.NumberState())
        waiters = self._waiters.setdefault(key, set())
        interactive = priority is Priority.INTERACTIVE
        now = time.monotonic()
        decision = ratemath.decide(state, pacing, now, interactive=interactive, interactive_waiting=bool(waiters))
        if interactive:
            # A waiter in this process always withdraws in acquire's finally, so no expiry is needed.
            if decision.granted:
                waiters.discard(waiter)
            else:
                waiters.add(waiter)
        return decision, now

    async def _exchange(
        self, key: str, pacing: Pacing, want: int, hold: float, prefix: str,
        settled: Sequence[tuple[str, float]], unused: Sequence[str], lead: float = 0.0, horizon: float = 0.0,
    ) -> tuple[list[float], ratemath.Decision]:
        state = self._states.setdefault(key, ratemath.NumberState())
        now = time.monotonic()
        for slot, age in settled:
            ratemath.settle(state, slot, now - age)
        for slot in unused:
            ratemath.release(state, slot)
        if want == 0:
            return [], ratemath.Decision(0.0, Reason.OK)
        slots, decision = ratemath.grant_slots(
            state, pacing, now, want, hold, lead=lead, horizon=horizon,
            interactive_waiting=bool(self._waiters.get(key)), mint=lambda i: f"{prefix}{i}")
        return [start - now for _, start in slots], decision

    async def _withdraw(self, key: str, waiter: str) -> None:
        self._waiters.get(key, set()).discard(waiter)

    async def penalize(self, key: str, seconds: float) -> None:
        """Hold every acquirer of ``key`` in this process for ``seconds`` from now."""
        if seconds <= 0:
            return
        state = self._states.setdefault(key, ratemath.NumberState())
        ratemath.penalize(state, time.monotonic(), seconds)

    async def close(self) -> None:
        """Stop granting."""
        self._closed = True


def _micros(seconds: float) -> int:
    return max(0, math.ceil(seconds * MICROS))


def make_throttle(redis_url: str | None) -> Throttle:
    """A Redis-backed throttle for ``redis_url``, or the in-process one when it is empty."""
    if not redis_url:
        return LocalThrottle()
    # Short timeouts and few retries: a send should fail fast with ThrottleUnavailable, not hang.
    client = aioredis.from_url(
        redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
    )
    return RedisThrottle(client, owns_client=True)
