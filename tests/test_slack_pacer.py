"""The Slack pacer and the outbox's failure policy: pure rules, and the order in which waiting calls go."""

from __future__ import annotations

import asyncio

import pytest

from bot.slack.outbox_policy import Action, Backoff, decide, priority_of, superseded
from bot.slack.pacer import Pacer
from bot.slack.pacing import SLACK_LIMITS, Bucket, Limit, limit_key

POST = "chat.postMessage"

# ---- token buckets (explicit clock) --------------------------------------------------------------


def test_bucket_spaces_calls_at_the_rate_after_the_burst() -> None:
    bucket = Bucket(Limit(1.0, 3, per_channel=True))
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(1.0)
    assert bucket.take(100.5) == pytest.approx(0.5)  # a refused take leaves the bucket as it was
    assert bucket.take(101.0) == 0.0
    assert bucket.take(101.0) == pytest.approx(1.0)


def test_a_pause_holds_the_bucket_and_spends_its_burst() -> None:
    bucket = Bucket(Limit(1.0, 3))
    bucket.take(0.0)
    bucket.pause(0.0, 5.0)
    assert bucket.wait(4.0) == pytest.approx(1.0)
    assert bucket.take(5.0) == 0.0  # five seconds refilled what the pause had spent
    assert bucket.take(5.0) == 0.0 and bucket.take(5.0) == 0.0


def test_the_reserve_is_kept_for_urgent_calls_and_the_sustained_rate_stays_one_per_second() -> None:
    bucket = Bucket(SLACK_LIMITS[POST])
    assert bucket.take(10.0, urgent=False) == 0.0  # a progress update on an idle channel goes at once
    assert bucket.take(10.1, urgent=True) == 0.0  # and the customer message right after it does not wait
    assert bucket.take(10.2, urgent=True) == pytest.approx(0.8)  # beyond the burst: one per second
    assert bucket.take(11.0, urgent=True) == 0.0
    assert bucket.take(11.0, urgent=False) == pytest.approx(2.0)  # waits until the reserve is back
    bucket = Bucket(SLACK_LIMITS[POST])
    granted = [t / 10 for t in range(0, 600) if bucket.take(t / 10, urgent=True) == 0.0]
    assert len(granted) <= 60 + 2  # a minute of urgent posts: the rate, plus the burst once


def test_slack_limits_key_posts_by_channel_and_tiered_methods_by_workspace() -> None:
    assert limit_key(POST, "C1", SLACK_LIMITS[POST]) != limit_key(POST, "C2", SLACK_LIMITS[POST])
    reactions = SLACK_LIMITS["reactions.add"]
    assert limit_key("reactions.add", "C1", reactions) == limit_key("reactions.add", "C2", reactions)
    assert SLACK_LIMITS[POST].per_second == 1.0 and SLACK_LIMITS[POST].per_channel


# ---- the pacer -----------------------------------------------------------------------------------


async def test_waiting_calls_go_by_priority_then_in_arrival_order() -> None:
    pacer = Pacer({POST: Limit(20.0, 1, per_channel=True)})
    await pacer.pause(POST, "C1", 0.2)  # a Retry-After: everyone below has to wait for it
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        await pacer.acquire(POST, "C1", priority)
        order.append(name)

    tasks = [asyncio.create_task(call(name, prio)) for name, prio in
             [("status 1", 2), ("progress", 3), ("message 1", 0), ("status 2", 2), ("message 2", 0)]]
    await asyncio.sleep(0)
    assert pacer.backlog()["C1"].waiting == 5
    await asyncio.gather(*tasks)
    assert order == ["message 1", "message 2", "status 1", "status 2", "progress"]
    assert pacer.backlog() == {}


async def test_a_retry_after_pauses_that_channel_only() -> None:
    pacer = Pacer()
    await pacer.pause(POST, "C1", 30.0)
    await pacer.acquire(POST, "C2")  # returns: C2 is not held by C1's pause
    await pacer.acquire("api.test", "C1")  # unpaced methods never wait
    assert pacer.paused_for(POST, "C1") > 25.0 and pacer.paused_for(POST, "C2") == 0.0


async def test_a_cancelled_waiter_leaves_the_queue_to_the_next() -> None:
    pacer = Pacer({POST: Limit(20.0, 1, per_channel=True)})
    await pacer.pause(POST, "C1", 0.1)
    first = asyncio.create_task(pacer.acquire(POST, "C1", 0))
    second = asyncio.create_task(pacer.acquire(POST, "C1", 1))
    await asyncio.sleep(0)
    first.cancel()
    await second
    assert first.cancelled() and pacer.backlog() == {}


# ---- the failure policy ----------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["msg_too_long", "msg_blocks_too_long", "invalid_blocks", "invalid_arguments",
                                   "invalid_blocks_format", "no_text"])
def test_format_errors_fall_back_to_plain_text_once_then_give_up(error: str) -> None:
    for attempts in (1, 7, 500):
        assert decide(error, attempts).action is Action.PLAIN_TEXT
        assert decide(error, attempts, plain_text_tried=True).action is Action.GIVE_UP


def test_rate_limits_wait_the_retry_after_and_are_certain_not_to_have_posted() -> None:
    outcome = decide("ratelimited", 3, status=429, retry_after=7.0)
    assert (outcome.action, outcome.delay, outcome.uncertain) == (Action.RETRY, 7.0, False)


@pytest.mark.parametrize(("error", "status"), [("internal_error", 200), ("service_unavailable", 503),
                                               ("transport_error", 200), ("whatever", 502)])
def test_unknown_outcomes_retry_with_backoff_and_look_before_posting_again(error: str, status: int) -> None:
    outcome = decide(error, 4, status=status, backoff=Backoff(1.0, 60.0))
    assert outcome.action is Action.RETRY and outcome.uncertain
    assert 7.2 <= outcome.delay <= 8.8


def test_operator_errors_are_kept_and_retried_slowly_never_dropped() -> None:
    for attempts in (1, 50):
        outcome = decide("not_in_channel", attempts, backoff=Backoff(1.0, 60.0))
        assert outcome.action is Action.RETRY and outcome.operator and not outcome.uncertain
        assert outcome.delay <= 66.0


def test_people_go_before_reactions_progress_and_history() -> None:
    assert priority_of("message") < priority_of("status") < priority_of("campaign_progress")
    assert priority_of("note") == priority_of("message") and priority_of("history") == priority_of("history_progress")


def test_delivery_ticks_superseded_by_a_later_state_are_skipped() -> None:
    assert superseded("delivered", "read") and superseded("sent", "delivered")
    assert not superseded("read", "read") and not superseded("read", "delivered")
    assert not superseded("failed", "read") and not superseded("delivered", "failed")


async def test_a_method_tier_is_paced_per_workspace() -> None:
    """Slack counts a method's tier per workspace: one workspace's 429 on reactions.add holds only its own."""
    reactions = SLACK_LIMITS["reactions.add"]
    assert limit_key("reactions.add", None, reactions, "T0A") != limit_key("reactions.add", None, reactions, "T0B")
    pacer = Pacer()
    await pacer.pause("reactions.add", "C1", 30.0, "T0A")
    await pacer.acquire("reactions.add", "C2", 0, "T0B")  # returns: T0B is not held by T0A's pause
    assert pacer.paused_for("reactions.add", "C9", "T0A") > 25.0
    assert pacer.paused_for("reactions.add", "C1", "T0B") == 0.0


async def test_ahead_counts_the_bucket_and_the_callers_that_would_go_first() -> None:
    pacer = Pacer({POST: Limit(1.0, 1, per_channel=True)})
    assert pacer.ahead(POST, "C1", 0) == 0.0  # an idle channel: nothing ahead
    await pacer.acquire(POST, "C1", 0)  # the burst is spent: the next slot is a second away
    waiting = [asyncio.create_task(pacer.acquire(POST, "C1", prio)) for prio in (0, 0, 2)]
    await asyncio.sleep(0)
    assert 2.5 < pacer.ahead(POST, "C1", 0) <= 3.0  # the bucket's second, then the two urgent callers
    assert 3.5 < pacer.ahead(POST, "C1", 2) <= 4.0  # a background call waits behind all three
    assert pacer.ahead(POST, "C2", 0) == 0.0
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_calls_sent_away_come_back_one_slot_apart() -> None:
    pacer = Pacer({POST: Limit(1.0, 1, per_channel=True)})
    await pacer.acquire(POST, "C1", 0)
    waiting = asyncio.create_task(pacer.acquire(POST, "C1", 0))
    await asyncio.sleep(0)
    first, second, third = (pacer.defer(POST, "C1", 0) for _ in range(3))
    assert 1.5 < first <= 2.0  # after the bucket's second and the caller waiting here
    assert second == pytest.approx(first + 1.0, abs=0.01) and third == pytest.approx(first + 2.0, abs=0.01)
    assert pacer.defer(POST, "C2", 0) == 0.0  # another channel: its own line, nothing in it
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
