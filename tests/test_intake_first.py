"""Acks before processing in one process: the webhook worker rests while the acks are slow or the intake outpaces
it; the live lane only in a flood."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.app.factory import create_app
from bot.bridge.intake_first import (
    ACK_BUDGET,
    MAX_REST,
    REST_PER_BUSY,
    SLOW_HOLD,
    STEEPNESS,
    IntakeFirst,
    RateMeter,
    WindowMax,
)
from bot.handlers import appkeys
from storage.models import Message
from storage.work_models import WebhookLog
from tests.harness import BridgeFactory, eventually, now_ts
from tests.helpers import inbound_text, make_settings, status


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_meter_reads_about_the_last_window() -> None:
    clock = Clock()
    meter = RateMeter(window=1.0, clock=clock)
    for _ in range(10):
        meter.add(100)
        clock.now += 0.1
    assert meter.rate() == pytest.approx(1000, rel=0.25)
    clock.now += 5.0  # nothing since: the old buckets are gone
    assert meter.rate() == 0
    assert meter.total() == 0


def test_no_rest_while_the_worker_keeps_up() -> None:
    clock = Clock()
    intake = IntakeFirst(window=1.0, clock=clock)
    for _ in range(10):
        intake.stored(30)  # 300 deliveries/s
        clock.now += 0.1
    # A batch that took what it found: the worker is not behind, whatever its pace.
    assert intake.rest_after(5, 0.05, full=False) == 0.0
    # Full, but it applies 2,000/s against 300 arriving: no rest either.
    assert intake.rest_after(100, 0.05, full=True) == 0.0
    assert intake.rest_after(0, 0.0, full=False) == 0.0


def test_the_worker_rests_more_the_further_intake_outpaces_it_within_bounds() -> None:
    clock = Clock()
    intake = IntakeFirst(window=1.0, clock=clock)
    for _ in range(10):
        intake.stored(150)  # 1,500 deliveries/s
        clock.now += 0.1
    # 100 in 0.1 s: 1,000/s against about 1,500/s arriving: half as fast again, 1.5 times the batch's time.
    assert intake.rest_after(100, 0.1, full=True) == pytest.approx(0.1 * STEEPNESS * 0.5, rel=0.3)
    for _ in range(10):
        intake.stored(2000)  # 20,000/s: far ahead of the worker
        clock.now += 0.1
    assert intake.rest_after(100, 0.1, full=True) == pytest.approx(0.1 * REST_PER_BUSY)
    assert intake.rest_after(100, 5.0, full=True) == MAX_REST
    # The same batch without more waiting behind it: no rest.
    assert intake.rest_after(100, 0.1, full=False) == 0.0


def test_the_bulk_lane_rests_while_the_acks_are_slow_even_when_it_keeps_up() -> None:
    clock = Clock()
    intake = IntakeFirst(window=1.0, clock=clock)
    intake.stored(30, waited=ACK_BUDGET / 2)  # prompt acks: a batch that took what it found does not rest
    assert not intake.acks_slow
    assert intake.rest_after(5, 0.05, full=False) == 0.0
    # A group waited for its commit behind the worker's batches: the bulk lane rests, full batch or not, at
    # least as long as its batch took and longer the later the acks.
    intake.stored(30, waited=ACK_BUDGET * 1.2)
    assert intake.acks_slow
    assert intake.rest_after(5, 0.05, full=False) == pytest.approx(0.05)
    intake.stored(30, waited=ACK_BUDGET * 4)
    assert intake.rest_after(5, 0.05, full=False) == pytest.approx(0.15)
    intake.stored(30, waited=ACK_BUDGET * 100)
    assert intake.rest_after(5, 0.05, full=False) == pytest.approx(0.05 * REST_PER_BUSY)
    assert intake.rest_after(5, 1.0, full=False) == MAX_REST
    clock.now += 1.01  # nothing arrived for a window: the burst is over, nothing rests for it any more
    assert clock.now < 1000.0 + SLOW_HOLD and not intake.acks_slow
    intake.stored(30)
    assert intake.acks_slow  # arrivals again, within SLOW_HOLD of the slow group
    clock.now += SLOW_HOLD  # prompt for that long: back to its own pace
    intake.stored(30)
    assert not intake.acks_slow
    assert intake.rest_after(5, 0.05, full=False) == 0.0


def test_the_live_lane_rests_only_in_a_flood_and_the_longer_the_later_the_acks() -> None:
    clock = Clock()
    intake = IntakeFirst(window=1.0, clock=clock)
    assert intake.live_rest_after(0.05, full=True) == 0.0  # a full batch while the acks are prompt
    intake.stored(30, waited=ACK_BUDGET * 2)  # one budget over
    # Acks slow, but the customer messages waiting fit in one batch: a person-scale stream never waits.
    assert intake.live_rest_after(0.05, full=False) == 0.0
    assert intake.live_rest_after(0.05, full=True) == pytest.approx(0.05)
    intake.stored(30, waited=ACK_BUDGET * 4)  # three over: three times as long
    assert intake.live_rest_after(0.05, full=True) == pytest.approx(0.15)
    intake.stored(30, waited=ACK_BUDGET * 100)
    assert intake.live_rest_after(0.05, full=True) == pytest.approx(0.05 * REST_PER_BUSY)
    assert intake.live_rest_after(10.0, full=True) == MAX_REST
    clock.now += 1.01  # a window later the longest wait is the last group's
    intake.stored(30, waited=ACK_BUDGET * 1.5)
    assert intake.live_rest_after(0.1, full=True) == pytest.approx(0.05)


def test_the_longest_wait_is_read_over_about_the_last_window() -> None:
    clock = Clock()
    longest = WindowMax(window=1.0, clock=clock)
    longest.add(0.3)
    clock.now += 0.6
    longest.add(0.1)
    assert longest.value() == 0.3
    clock.now += 0.6  # the 0.3 is over a window old
    assert longest.value() == 0.1
    clock.now += 5.0
    assert longest.value() == 0.0


async def test_each_lane_waits_out_its_own_rest() -> None:
    intake = IntakeFirst()
    intake.stored(30, waited=ACK_BUDGET * 2)
    assert intake.rest_after(5, 0.05, full=False) > 0  # the bulk lane rests...
    live = intake.turn(live=True)
    with pytest.raises(StopIteration):
        live.send(None)  # ...the live lane's turn completes without suspending
    bulk = intake.turn()
    bulk.send(None)  # suspended in its sleep
    bulk.close()


async def test_a_rest_is_waited_out() -> None:
    intake = IntakeFirst()
    for _ in range(50):
        intake.stored(100)
    rest = intake.rest_after(10, 0.01, full=True)
    assert rest > 0
    started = time.monotonic()
    await asyncio.gather(intake.turn(), intake.turn())
    assert time.monotonic() - started >= rest * 0.9


def test_only_a_process_that_takes_and_applies_deliveries_has_one(db_url: str) -> None:
    settings = make_settings(db_url)
    assert isinstance(create_app(settings)[appkeys.INTAKE_FIRST], IntakeFirst)
    assert appkeys.INTAKE_FIRST not in create_app(settings, workers=False)  # --role web
    assert appkeys.INTAKE_FIRST not in create_app(settings, webhooks=False)  # --role worker


async def test_a_customer_message_is_applied_while_the_bulk_lane_rests(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    b.app[appkeys.INTAKE_FIRST]._resume_at = time.monotonic() + 3600  # a storm's rest, as long as this test
    await b.webhook(status("wamid.OUT1", "delivered"))
    await b.webhook(inbound_text("wamid.LIVE1", "is the batch full?", ts=now_ts()))
    await eventually(lambda: b.count(Message, Message.wamid == "wamid.LIVE1"))
    assert await b.count(WebhookLog, WebhookLog.lane == "bulk", WebhookLog.processed_at.is_(None)) == 1
