"""The Slack outbox shared by several processes, and extended with new kinds by other modules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.app.slack_component import builtin_kinds
from bot.handlers import appkeys
from bot.slack.outbox import OutboxWorker
from bot.slack.outbox_handlers import handle, kinds
from bot.slack.pacer import Pacer
from bot.slack.pacing import Limit
from storage import repository as repo
from storage.models import Conversation, SlackOutbox, utcnow
from storage.outbox_kinds import ParentRefresh
from tests.harness import BridgeFactory, all_text, bridges, eventually, now_ts, thread_posts
from tests.helpers import inbound_text, owe_raw


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def test_two_processes_share_the_outbox_in_timestamp_order_without_doubling(make: BridgeFactory) -> None:
    # A process without the Slack bridge stores everything first, deliveries arriving newest first.
    intake = await make(with_slack=False)
    customers = [("919800000001", "Asha"), ("919800000002", "Bilal"), ("919800000003", "Chitra")]
    expected: dict[str, list[str]] = {name: [f"{name} message {i}" for i in range(5)] for _, name in customers}
    base = now_ts(-100)
    for i in reversed(range(5)):
        for wa_id, name in customers:
            await intake.webhook(inbound_text(f"wamid.{wa_id}.{i}", f"{name} message {i}", wa_id=wa_id,
                                              name=name, ts=base + i))

    async def stored() -> bool:
        return await intake.count(SlackOutbox) == 15

    await eventually(stored, timeout=20)
    intake.slack.set_latency(0.05)  # keeps several posts in flight at once
    a = await make(slack=intake.slack, graph=intake.graph, run_migrations=False, outbox={"concurrency": 4})
    b = await make(slack=intake.slack, graph=intake.graph, run_migrations=False, outbox={"concurrency": 4})

    async def all_done() -> bool:
        return await a.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

    await eventually(all_done, timeout=30)
    parents = b.parents()
    assert len(parents) == 3
    for parent in parents:
        name = next(n for _, n in customers if n in all_text(parent))
        shown = [next(t for t in expected[name] if t in all_text(r)) for r in thread_posts(a, parent)]
        assert shown == expected[name]


async def _store_inbound(intake: Any, conversations: int, per_conversation: int) -> None:
    base = now_ts(-100)
    for i in range(per_conversation):
        for c in range(conversations):
            wa_id = f"9198000{c:05d}"
            await intake.webhook(inbound_text(f"wamid.{wa_id}.{i}", f"customer {c} message {i}", wa_id=wa_id,
                                              name=f"Customer {c}", ts=base + i))

    async def stored() -> bool:
        return await intake.count(SlackOutbox) == conversations * per_conversation

    await eventually(stored, timeout=20)


async def test_one_claim_leases_one_head_per_thread_and_unstarted_items_go_back_unchanged(
        make: BridgeFactory) -> None:
    intake = await make(with_slack=False)
    await _store_inbound(intake, conversations=6, per_conversation=2)
    deps = intake.app[appkeys.DEPS]
    first = OutboxWorker(deps, builtin_kinds(), concurrency=1, claim_batch=4)
    claimed = await first.claim(first.claim_batch)
    assert len(claimed) == 4
    assert len({item.thread_key for item in claimed}) == 4
    assert all(item.payload and item.attempts == 1 and not item.uncertain for item in claimed)
    # Another process gets the other threads' heads only: a leased head holds its whole thread.
    other = await OutboxWorker(deps, builtin_kinds(), concurrency=1, claim_batch=10).claim(10)
    assert {item.thread_key for item in other}.isdisjoint({item.thread_key for item in claimed})
    assert len(other) == 2

    await first.unclaim(claimed)
    async with deps.sessions() as s:
        rows = (await s.scalars(select(SlackOutbox).where(SlackOutbox.id.in_([i.id for i in claimed])))).all()
    assert all(row.claimed_until is None and row.attempts == 0 for row in rows)
    again = await OutboxWorker(deps, builtin_kinds(), concurrency=1, claim_batch=10).claim(10)
    assert sorted(i.id for i in again) == sorted(i.id for i in claimed)
    assert not any(item.uncertain for item in again)


async def test_while_background_work_is_held_back_only_urgent_heads_are_claimed(make: BridgeFactory) -> None:
    intake = await make(with_slack=False)
    await _store_inbound(intake, conversations=2, per_conversation=1)
    deps = intake.app[appkeys.DEPS]
    async with deps.sessions() as s, s.begin():
        conversations = (await s.scalars(select(Conversation.id))).all()
        for conversation_id in conversations:
            await repo.owe_parent_refresh(s, conversation_id, "test")  # background kind, threads of their own
    worker = OutboxWorker(deps, builtin_kinds(), concurrency=2, claim_batch=10)
    assert "message" in worker._urgent_kinds and "thread_parent" not in worker._urgent_kinds
    urgent = await worker.claim(10, kinds=worker._urgent_kinds)
    assert sorted(i.kind for i in urgent) == ["message", "message"]
    rest = await worker.claim(10)
    assert sorted(i.kind for i in rest) == ["thread_parent"] * 2


async def test_items_queued_past_their_lease_margin_are_handed_back_and_still_posted_once_in_order(
        make: BridgeFactory) -> None:
    intake = await make(with_slack=False)
    await _store_inbound(intake, conversations=6, per_conversation=2)
    # One at a time, so the third head of a claim waits past a quarter lease (1.2 s > 1 s); the lease is long
    # enough that a post slowed by a busy machine does not outlive it (that would be a second attempt).
    intake.slack.set_latency(0.6)
    worker = await make(slack=intake.slack, graph=intake.graph, run_migrations=False,
                        outbox={"concurrency": 1, "claim_batch": 6, "lease": 4.0})

    async def all_done() -> bool:
        return await worker.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

    await eventually(all_done, timeout=60)
    parents = worker.parents()
    assert len(parents) == 6
    for parent in parents:
        c = next(c for c in range(6) if f"Customer {c}" in all_text(parent))
        shown = [all_text(r) for r in thread_posts(worker, parent)]
        assert [f"customer {c} message {i}" in text for i, text in enumerate(shown)] == [True, True]
    async with intake.app[appkeys.SESSIONS]() as s:
        rows = (await s.scalars(select(SlackOutbox))).all()
    # Handing an item back undoes its claim: every item was attempted once and none had to look itself up.
    assert [row.attempts for row in rows] == [1] * len(rows)
    assert all(row.last_error is None for row in rows)


async def test_a_layout_slack_refuses_goes_once_as_plain_text_and_a_refused_text_is_given_up(
        make: BridgeFactory) -> None:
    b = await make()
    b.slack.fail_next("chat.postMessage", "invalid_blocks")
    await b.webhook(inbound_text("wamid.F1", "first <question>", ts=now_ts(-60)))
    parent = (await eventually(lambda: b.parents()))[0]
    assert "blocks" not in parent and "first &lt;question&gt;" in parent["text"]
    assert [c.error for c in b.slack.calls_to("chat.postMessage")] == ["invalid_blocks", None]

    b.slack.fail_next("chat.postMessage", "msg_too_long", times=2)
    await b.webhook(inbound_text("wamid.F2", "second", ts=now_ts(-30)))

    async def settled() -> bool:
        return await b.count(SlackOutbox, SlackOutbox.done_at.is_not(None)) == 2

    await eventually(settled)
    async with b.app[appkeys.SESSIONS]() as s:
        rows = (await s.scalars(select(SlackOutbox).order_by(SlackOutbox.id))).all()
    assert [(r.attempts, r.last_error) for r in rows] == [(1, None), (1, "Slack refused the message: msg_too_long")]
    assert len(b.slack.calls_to("chat.postMessage")) == 4  # never an endless retry


async def test_a_post_whose_answer_was_lost_is_looked_up_even_after_the_lookup_was_rate_limited(
        make: BridgeFactory) -> None:
    b = await make()
    b.slack.lose_answers("chat.postMessage", 1)  # the parent lands, its answer does not
    b.slack.rate_limit("conversations.history", 1, retry_after=1)  # and the first look for it is refused
    await b.webhook(inbound_text("wamid.U1", "hello", ts=now_ts(-60)))

    async def settled() -> bool:
        return await b.count(SlackOutbox, SlackOutbox.done_at.is_not(None)) == 1

    await eventually(settled, timeout=20)
    assert len(b.parents()) == 1 and len(b.slack.calls_to("chat.postMessage")) == 1
    # Refused, then asked again once Retry-After had passed. On a busy machine the process may doubt its claim
    # (its heartbeat late) and look once more before posting: more lookups are allowed, never a second post.
    lookups = b.slack.calls_to("conversations.history")
    assert [c.status for c in lookups[:2]] == [429, 200] and all(c.status == 200 for c in lookups[1:])
    assert lookups[1].time - lookups[0].time >= 0.9  # Retry-After: 1 s (less clock rounding)


async def test_a_parent_refresh_delivered_closes_those_owed_after_it_and_posts_once(make: BridgeFactory) -> None:
    intake = await make(with_slack=False)
    await _store_inbound(intake, conversations=1, per_conversation=1)
    deps = intake.app[appkeys.DEPS]
    async with deps.sessions() as s, s.begin():
        [conversation_id] = (await s.scalars(select(Conversation.id))).all()
        for n in range(5):  # five window moves while chat.update's allowance was spent elsewhere
            await repo.owe_parent_refresh(s, conversation_id, f"window:{n}")
        await owe_raw(s, kind="thread_parent", payload={"conversation_id": conversation_id},
                      dedupe_key="later", thread_key=f"parent:{conversation_id}",
                      order_ts=utcnow() + timedelta(minutes=5))
        await s.execute(update(SlackOutbox).where(SlackOutbox.dedupe_key == "later")
                        .values(next_attempt_at=utcnow() + timedelta(hours=1)))  # owed for later: kept
    shown: list[int] = []

    async def refresh(ctx: Any, item: Any) -> None:
        shown.append(ctx.item.id)

    worker = OutboxWorker(deps, kinds(handle(ParentRefresh, refresh)), concurrency=1)
    [head] = await worker.claim(10, kinds=["thread_parent"])
    await worker._deliver(head)
    async with deps.sessions() as s:
        rows = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "thread_parent")
                                .order_by(SlackOutbox.id))).all()
    assert shown == [head.id]
    assert [r.done_at is not None for r in rows] == [True] * 5 + [False]
    assert all(r.result.get("folded_into") == head.id for r in rows[1:5])
    assert await worker.claim(10, kinds=["thread_parent"]) == []  # the one owed for later is not due yet


async def _answered() -> dict[str, Any]:
    return {"ok": True}


async def test_background_calls_far_from_their_turn_wait_at_the_table_not_in_a_slot(make: BridgeFactory) -> None:
    # One workspace: parent refreshes queue for chat.update (about one a second per workspace in Slack; one
    # per 2 s here). The first goes, the second waits its turn in the pacer, and the third, further away, goes
    # back to the table until about its turn instead of holding an outbox slot a customer's message needs.
    intake = await make(with_slack=False)
    await _store_inbound(intake, conversations=3, per_conversation=1)
    deps = intake.app[appkeys.DEPS]
    async with deps.sessions() as s, s.begin():
        for conversation_id in (await s.scalars(select(Conversation.id))).all():
            await repo.owe_parent_refresh(s, conversation_id, "test")
            await repo.owe_parent_refresh(s, conversation_id, "test, again")
    shown: list[int] = []

    async def refresh(ctx: Any, item: Any) -> None:
        await ctx.call("chat.update", None, _answered)  # the slot taken before the handler ran (TURN_FIRST)
        shown.append(ctx.item.id)

    worker = OutboxWorker(deps, kinds(handle(ParentRefresh, refresh)), concurrency=3,
                          pacer=Pacer({"chat.update": Limit(0.5, 1)}))
    assert not deps.many_workspaces
    heads = await worker.claim(10, kinds=["thread_parent"])
    assert len(heads) == 3
    before = utcnow()
    await asyncio.gather(*(worker._deliver(head) for head in heads))
    assert len(shown) == 2  # whichever two reached the pacer first
    async with deps.sessions() as s:
        rows = {r.id: r for r in (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "thread_parent")))}
    assert all(rows[i].done_at is not None for i in shown)
    [sent_away] = [r for r in rows.values() if r.id not in shown and r.id in {h.id for h in heads}]
    assert sent_away.done_at is None and "calls ahead" in (sent_away.last_error or "")
    # Each refresh delivered closed the one owed after it; the one sent away waited before closing anything.
    assert sorted(r.done_at is not None for r in rows.values() if r.thread_key == sent_away.thread_key) == [False] * 2
    assert sum(r.done_at is not None for r in rows.values()) == 4
    # Back about at its turn: after the bucket's next slot and the one waiting for it (2 s each).
    assert sent_away.next_attempt_at is not None
    assert 3 < (sent_away.next_attempt_at - before).total_seconds() < 10
    assert deps.metrics.slack_posts.labels("thread_parent", "deferred")._value.get() == 1


async def test_only_due_heads_of_idle_threads_are_claimed(make: BridgeFactory) -> None:
    intake = await make(with_slack=False)
    deps = intake.app[appkeys.DEPS]
    t0 = utcnow() - timedelta(minutes=10)
    async with deps.sessions() as s, s.begin():
        for key, thread, minute in [("a1", "ta", 1), ("a2", "ta", 2), ("b1", "tb", 1), ("b2", "tb", 2),
                                    ("c1", "tc", 1), ("c2", "tc", 2)]:
            await owe_raw(s, kind="note", payload={}, dedupe_key=key, thread_key=thread,
                          order_ts=t0 + timedelta(minutes=minute))
        # tb's head waits for a retry: nothing of tb goes before it.
        await s.execute(update(SlackOutbox).where(SlackOutbox.dedupe_key == "b1")
                        .values(next_attempt_at=utcnow() + timedelta(hours=1)))
    worker = OutboxWorker(deps, builtin_kinds(), concurrency=1)
    first = await worker.claim(10)
    assert sorted(i.thread_key for i in first) == ["ta", "tc"]
    # An item ordered before ta's head arrives while that head is in flight: ta stays busy until it settles.
    async with deps.sessions() as s, s.begin():
        await owe_raw(s, kind="note", payload={}, dedupe_key="a0", thread_key="ta", order_ts=t0)
    assert await worker.claim(10) == []
    await worker.unclaim(first)
    again = await worker.claim(10)
    async with deps.sessions() as s:
        keys = dict((await s.execute(select(SlackOutbox.id, SlackOutbox.dedupe_key))).tuples().all())
    assert sorted(keys[i.id] for i in again) == ["a0", "c1"]
