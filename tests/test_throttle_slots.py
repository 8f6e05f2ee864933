"""Campaign slots: a send counts against the cap from its grant until its response came back, so the cap
holds where Meta counts it (arrivals), whatever the latency between grant and arrival."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import ratemath
from scheduler.ratemath import NumberState, Pacing, Reason, achieved_rate, max_in_window
from scheduler.throttle import LocalThrottle, Priority, RedisThrottle, Slot
from tests import services

AnyThrottle = RedisThrottle | LocalThrottle


def _simulate_slots(
    mps: int, senders: int, latencies: list[float], seed: int, duration: float, *, honest: bool = True,
    lead: float = 0.0, horizon: float = 0.0, marks: Sequence[float] = (0.0,),
) -> tuple[list[float], list[float]]:
    """Event-driven: ``senders`` take slots in batches; a sender spends a mark time (from ``marks``) before
    it may send, then waits for its slot's start, and its request arrives at Meta at an adversarial moment
    between sending and its response (one latency later). Returns (send times, arrival times).

    ``honest=False`` settles every slot at its start instead of its response, which is what a throttle
    counting grants does; the test below shows that breaks the cap.
    """
    pacing = Pacing(mps, 0.0)
    state = NumberState()
    rng = random.Random(seed)
    ids = itertools.count()
    responses: list[tuple[float, str]] = []
    sends: list[float] = []
    arrivals: list[float] = []
    free, now, k = senders, 0.0, 0
    while now <= duration:
        while responses and responses[0][0] <= now:
            done, slot = heapq.heappop(responses)
            ratemath.settle(state, slot, done)
            free += 1
        wait = 0.001
        if free:
            slots, decision = ratemath.grant_slots(
                state, pacing, now, free, hold=30.0, lead=lead, horizon=horizon, interactive_waiting=False,
                mint=lambda _i: f"s{next(ids)}")
            for slot, start in slots:
                assert start >= now + lead
                latency = latencies[k % len(latencies)]
                sent = max(start, now + marks[k % len(marks)])
                k += 1
                arrivals.append(rng.choice([sent, sent + latency, sent + rng.uniform(0, latency)]))
                sends.append(sent)
                heapq.heappush(responses, (sent + latency, slot))
                if not honest:
                    ratemath.settle(state, slot, start)
            free -= len(slots)
            if not slots:
                wait = max(decision.wait, 1e-6)  # float rounding must not stall the clock
        next_response = responses[0][0] if responses else now + wait
        now = min(now + wait, next_response) if free else next_response
    return sends, arrivals


@settings(max_examples=60, deadline=None)
@given(
    mps=st.sampled_from([1, 5, 80, 1000]),
    senders=st.integers(1, 40),
    latencies=st.lists(st.floats(0.0, 0.4), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_slots_never_exceed_mps_in_any_window_of_arrivals(
    mps: int, senders: int, latencies: list[float], seed: int
) -> None:
    _, arrivals = _simulate_slots(mps, senders, latencies, seed, duration=2.5)
    assert max_in_window(arrivals, 1.0) <= mps


@settings(max_examples=60, deadline=None)
@given(
    mps=st.sampled_from([1, 5, 80, 1000]),
    senders=st.integers(1, 40),
    latencies=st.lists(st.floats(0.0, 0.4), min_size=1, max_size=30),
    marks=st.lists(st.floats(0.0, 0.1), min_size=1, max_size=10),
    lead=st.floats(0.0, 0.06),
    horizon=st.floats(0.0, 0.02),
    seed=st.integers(0, 2**16),
)
def test_slots_granted_ahead_never_exceed_mps_whatever_the_marks_take(
    mps: int, senders: int, latencies: list[float], marks: list[float], lead: float, horizon: float, seed: int
) -> None:
    # A mark longer than the lead sends late (rate lost), shorter waits for the slot's start: either way
    # the cap holds where Meta counts.
    _, arrivals = _simulate_slots(mps, senders, latencies, seed, duration=2.5, lead=lead, horizon=horizon,
                                  marks=marks)
    assert max_in_window(arrivals, 1.0) <= mps


def test_counting_grants_instead_of_responses_breaks_the_cap_under_jitter() -> None:
    # Same senders, same latencies: only the settlement differs. Guards the test above against passing
    # for reasons that have nothing to do with the arrival bound.
    latencies = [0.0, 0.25, 0.0, 0.3, 0.05]
    _, arrivals = _simulate_slots(80, 40, latencies, 7, duration=3.0, honest=False)
    assert max_in_window(arrivals, 1.0) > 80


@pytest.mark.parametrize("mps", [5, 80, 1000])
def test_slots_reach_the_cap_less_only_the_latency(mps: int) -> None:
    latency = 0.004
    sends, arrivals = _simulate_slots(mps, 64, [latency], 1, duration=4.0)
    assert max_in_window(arrivals, 1.0) <= mps
    assert achieved_rate(sends) >= 0.99 * mps / (1 + latency)


@pytest.mark.parametrize("mps", [80, 1000])
def test_a_mark_within_the_lead_costs_no_rate(mps: int) -> None:
    # Senders spend 5-15 ms on their mark before each request: granted without a lead they would run at
    # 1 / (1 + latency + mark) of the cap; with a 20 ms lead the mark is not counted.
    latency, marks = 0.002, [0.005, 0.015, 0.01]
    without, _ = _simulate_slots(mps, 160, [latency], 1, duration=4.0, marks=marks)
    sends, arrivals = _simulate_slots(mps, 160, [latency], 1, duration=4.0, marks=marks, lead=0.02,
                                      horizon=0.01)
    assert max_in_window(arrivals, 1.0) <= mps
    assert achieved_rate(sends) >= 0.99 * mps / (1 + latency)
    assert achieved_rate(sends) > achieved_rate(without)


def test_a_slot_is_granted_ahead_for_the_moment_the_cap_frees_it() -> None:
    pacing = Pacing(2, 0.0)
    state = NumberState()
    ((a, _),), _ = ratemath.grant_slots(state, pacing, 0.0, 1, 5.0, interactive_waiting=False, mint=str)
    ((b, _),), _ = ratemath.grant_slots(state, pacing, 0.5, 1, 5.0, interactive_waiting=False, mint=lambda _: "b")
    ratemath.settle(state, a, 0.1)
    ratemath.settle(state, b, 0.5)
    # The first place frees at 1.1: refused at 1.05 without a horizon, granted for 1.1 with one.
    _, refused = ratemath.grant_slots(state, pacing, 1.05, 2, 5.0, interactive_waiting=False, mint=str)
    assert refused.reason is Reason.WINDOW and refused.wait == pytest.approx(0.05)
    slots, _ = ratemath.grant_slots(state, pacing, 1.05, 2, 5.0, horizon=0.1, interactive_waiting=False,
                                    mint=str)
    assert [start for _, start in slots] == [pytest.approx(1.1)]  # the second place frees only at 1.5


def test_grant_slots_grants_a_batch_bounded_by_the_pacer_and_the_cap() -> None:
    state = NumberState()
    pacing = Pacing(1000, 0.0)
    slots, decision = ratemath.grant_slots(state, pacing, 100.0, 500, 10.0, interactive_waiting=False,
                                           mint=str)
    assert decision.granted
    # The pacer's 20 ms catch-up at 1 ms intervals: 21 grants in exact arithmetic, 20 after float rounding.
    more, decision = ratemath.grant_slots(state, pacing, 100.0, 500, 10.0, interactive_waiting=False, mint=str)
    assert len(slots) + len(more) in (20, 21)
    assert ratemath.grant_slots(state, pacing, 100.0, 5, 10.0, interactive_waiting=False, mint=str)[1].reason \
        is Reason.PACE


def test_grant_slots_yields_to_a_waiting_reply() -> None:
    state = NumberState()
    slots, decision = ratemath.grant_slots(state, Pacing(5, 0.0), 1.0, 3, 10.0, interactive_waiting=True,
                                           mint=str)
    assert slots == [] and decision.reason is Reason.YIELD


def test_an_unsettled_slot_holds_its_place_until_its_hold_and_a_released_one_frees_it() -> None:
    pacing = Pacing(1, 0.0)
    state = NumberState()
    ((first, _),), _ = ratemath.grant_slots(state, pacing, 0.0, 1, 5.0, interactive_waiting=False, mint=str)
    _, blocked = ratemath.grant_slots(state, pacing, 3.0, 1, 5.0, interactive_waiting=False, mint=str)
    assert blocked.reason is Reason.WINDOW and blocked.wait == pytest.approx(3.0)  # 0 + 5 hold + 1 - 3
    ratemath.settle(state, first, 0.5)
    assert ratemath.grant_slots(state, pacing, 3.0, 1, 5.0, interactive_waiting=False, mint=str)[1].granted
    (second,) = list(state.log.bounds)
    ratemath.release(state, second)
    assert ratemath.grant_slots(state, pacing, 4.5, 1, 5.0, interactive_waiting=False, mint=str)[1].granted


# ---------------------------------------------------------------- both backends, real time


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with services.throwaway_redis() as url:
        yield url


@pytest.fixture(params=["redis", "local"])
async def throttle(request: pytest.FixtureRequest) -> AsyncIterator[AnyThrottle]:
    if request.param == "local":
        local = LocalThrottle()
        yield local
        await local.close()
        return
    url = request.getfixturevalue("redis_url")
    shared = RedisThrottle(aioredis.from_url(url), prefix=f"test:slots:{uuid.uuid4().hex[:8]}", owns_client=True)
    yield shared
    await shared.close()


async def _send_with_slots(throttle: AnyThrottle, key: str, mps: int, total: int,
                           latencies: list[float], lead: float = 0.0, horizon: float = 0.0) -> list[float]:
    """Send ``total`` fake messages through slots; each "arrives" at a moment between grant and response."""
    arrivals: list[float] = []
    settled: list[tuple[str, float]] = []
    tasks: set[asyncio.Task[None]] = set()
    rng = random.Random(3)

    async def send(slot: Slot, latency: float) -> None:
        await slot.wait()
        await asyncio.sleep(latency * rng.random())
        arrivals.append(time.monotonic())
        await asyncio.sleep(latency * rng.random())
        settled.append((slot.id, time.monotonic()))

    sent = 0
    while sent < total:
        batch, settled[:] = list(settled), []
        slots = await throttle.acquire_slots(key, mps, min(8, total - sent), hold=10.0, lead=lead,
                                             horizon=horizon, settled=batch)
        for slot in slots:
            task = asyncio.create_task(send(slot, latencies[sent % len(latencies)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
    await asyncio.gather(*tasks)
    return arrivals


@pytest.mark.parametrize(("mps", "lead", "horizon"), [(5, 0.0, 0.0), (80, 0.0, 0.0), (80, 0.03, 0.01)])
async def test_slots_keep_the_cap_on_arrivals_with_slow_and_jittery_responses(
    throttle: AnyThrottle, mps: int, lead: float, horizon: float
) -> None:
    arrivals = await _send_with_slots(throttle, "100000000000501", mps, mps * 2 + 1, [0.0, 0.15, 0.02, 0.3],
                                      lead, horizon)
    assert len(arrivals) == mps * 2 + 1
    assert max_in_window(arrivals, 1.0) <= mps


async def test_a_reply_is_granted_while_slots_saturate_the_number(throttle: AnyThrottle) -> None:
    key, mps = "100000000000502", 5
    campaign = asyncio.create_task(_send_with_slots(throttle, key, mps, 15, [0.01]))
    await asyncio.sleep(0.5)
    asked = time.monotonic()
    await throttle.acquire(key, mps, Priority.INTERACTIVE, timeout=5)
    waited = time.monotonic() - asked
    await campaign
    # Without priority the reply would queue behind the campaign's batches: well over a second.
    assert waited < 1.0


async def test_unused_slots_are_given_back(throttle: AnyThrottle) -> None:
    key = "100000000000503"
    slots = await throttle.acquire_slots(key, 1, 1, hold=30.0)
    await throttle.settle(key, [], unused=[slot.id for slot in slots])
    # The one slot of a 1-mps number is free again at once, not after its 30 s hold.
    assert len(await asyncio.wait_for(throttle.acquire_slots(key, 1, 1, hold=30.0), timeout=3)) == 1


async def test_a_slot_granted_with_a_lead_starts_no_sooner(throttle: AnyThrottle) -> None:
    asked = time.monotonic()
    slots = await throttle.acquire_slots("100000000000504", 80, 4, hold=5.0, lead=0.05, horizon=0.01)
    assert slots and all(slot.not_before >= asked + 0.05 for slot in slots)
    # The pacer's 20 ms catch-up lets two start at once and a third 5 ms later; the fourth would start
    # 17.5 ms after the first, beyond the 10 ms horizon.
    assert len(slots) == 3
    assert slots[2].not_before - slots[0].not_before == pytest.approx(0.005, abs=0.001)
