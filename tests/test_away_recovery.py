"""An away message (or survey) whose sender stopped mid-way is recovered as campaign recipients are: never
attempted, it is sent once by a live process; maybe sent (its request may have reached Meta), it is not sent
again and its thread says so. Through both stand-ins, with a process that really stops in the middle of the
Graph call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.app.factory import create_app
from bot.bridge.auto_replies import INTERRUPTED, ORPHAN_AFTER, AutoReplies
from bot.handlers import appkeys
from bot.ops.sla import hours_for
from bot.standins import GraphStandin
from storage.liveness import register
from storage.models import AutoReply, Conversation, SlackOutbox, Worker, utcnow
from tests.harness import BridgeFactory, bridges, drain_webhooks, eventually, now_ts, thread_with
from tests.helpers import inbound_text, make_settings, signed
from tests.test_away_messages import away_sends, closed_number


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _row(app: Any) -> AutoReply:
    async with app[appkeys.SESSIONS]() as s:
        return (await s.scalars(select(AutoReply))).one()


async def _stopped(app: Any, worker_id: int) -> bool:
    async with app[appkeys.SESSIONS]() as s:
        return (await s.get(Worker, worker_id)).stopped_at is not None  # type: ignore[union-attr]


async def test_a_send_cut_off_inside_the_graph_call_is_reported_and_never_sent_again(make: BridgeFactory) -> None:
    first = await make(channel_extra=closed_number())
    first.graph.hold_answers()  # Meta takes the request, its answer never reaches the sender
    await first.webhook(inbound_text("wamid.R1", "Anyone there?", ts=now_ts(-5)))
    await eventually(lambda: first.graph.attempts)
    row = await _row(first.app)
    worker = first.app[appkeys.HEARTBEAT].worker_id
    assert (row.state, row.owner_id) == ("sending", worker) and row.attempted_at is not None
    await first.client.close()  # the process stops in the middle of the call
    assert await _stopped(first.app, worker)
    first.graph.release_answers()

    second = await make(slack=first.slack, graph=first.graph, channel_extra=closed_number())
    settled = await eventually(lambda: _settled(second.app))
    assert (settled.state, settled.reason, settled.wamid) == ("failed", INTERRUPTED, None)
    _, posts = await thread_with(second, 2)
    assert "The away message may not have reached the customer" in str(posts[-1])
    assert len(first.graph.attempts) == 1 and len(away_sends(first.graph)) == 1  # the one request, not two
    # Later passes leave it alone: one note, no send.
    await second.app[appkeys.AUTO_REPLIES].run_once()
    assert len(first.graph.attempts) == 1
    async with second.app[appkeys.SESSIONS]() as s:
        notes = (await s.scalars(select(SlackOutbox.dedupe_key).where(
            SlackOutbox.dedupe_key.like("away-interrupted:%")))).all()
    assert notes == [f"away-interrupted:{settled.id}"]


async def _settled(app: Any) -> AutoReply | None:
    row = await _row(app)
    return row if row.state not in ("pending", "sending") else None


async def test_a_send_cut_off_before_its_request_left_is_sent_once_by_a_live_process(make: BridgeFactory) -> None:
    # The first process records the customer's message and owes the away message, then stops with the row
    # claimed and no request made (its sender held by the throttle, say).
    first = await make(channel_extra={"mode": "cloud_api"})  # no hours: nothing owed by the webhook itself
    await first.webhook(inbound_text("wamid.R2", "Hello?", ts=now_ts(-5)))
    await thread_with(first, 1)
    await first.client.close()
    second = await make(slack=first.slack, graph=first.graph, channel_extra=closed_number())
    settings = second.app[appkeys.SETTINGS]
    clock = hours_for(settings, settings.channels[0])
    period = clock.closed_since(utcnow()) if clock is not None else None
    assert period is not None
    dead = await register(second.app[appkeys.SESSIONS], "serve:stopped")
    async with second.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(update(Worker).where(Worker.id == dead).values(stopped_at=utcnow()))
        conv_id = await s.scalar(select(Conversation.id))
        assert await s.scalar(select(AutoReply.id)) is None  # nothing was owed yet
        s.add(AutoReply(conversation_id=conv_id, kind="away", period_key=period.isoformat(), state="sending",
                        owner_id=dead, fence=1, trigger_at=utcnow(), created_at=utcnow(), updated_at=utcnow()))
    sent = await eventually(lambda: away_sends(first.graph))
    assert sent == ["Hello Ravi, we are closed; we answer from 9:00. (lucknow)"]
    row = await eventually(lambda: _settled(second.app))
    assert (row.state, row.owner_id) == ("sent", second.app[appkeys.HEARTBEAT].worker_id)
    assert row.wamid is not None and row.fence == 3  # taken back (2), then claimed by the live process (3)
    _, posts = await thread_with(second, 2)
    assert "Sent automatically by Wabridge" in str(posts[-1])
    await second.app[appkeys.AUTO_REPLIES].run_once()
    assert len(away_sends(first.graph)) == 1


async def test_recovery_takes_only_sends_nobody_works_on(aiohttp_client: Any, db_url: str) -> None:
    graph = GraphStandin()
    await graph.start()
    try:
        raw = make_settings(db_url, graph_url=graph.base_url).model_dump()
        raw["channels"][0].update(closed_number())
        settings = type(make_settings(db_url)).model_validate(raw)
        client = await aiohttp_client(create_app(settings, workers=False))  # no sender but the test's own
        app = client.app
        body, headers = signed(
            inbound_text("wamid.R3", "Hi", ts=now_ts(-5)))
        assert (await client.post("/webhooks/meta", data=body, headers=headers)).status == 200
        await drain_webhooks(app)
        sessions = app[appkeys.SESSIONS]
        me, alive, gone = [await register(sessions, n) for n in ("me", "alive", "gone")]
        now = utcnow()
        async with sessions() as s, s.begin():
            await s.execute(update(Worker).where(Worker.id == alive).values(heartbeat_at=now + timedelta(hours=1)))
            await s.execute(update(Worker).where(Worker.id == gone).values(stopped_at=now))
            owed = (await s.scalars(select(AutoReply))).one()
            conv_id = owed.conversation_id
            owed.state, owed.owner_id, owed.fence = "sending", me, 1  # mine, cut off (not in hand), not attempted
            rows = {
                "in-hand": dict(owner_id=me, fence=4, attempted_at=now),
                "alive": dict(owner_id=alive, fence=1, attempted_at=now),
                "gone-attempted": dict(owner_id=gone, fence=1, attempted_at=now),
                "unowned-new": dict(owner_id=None, fence=1, attempted_at=now, updated_at=now),
                "unowned-old": dict(owner_id=None, fence=1, attempted_at=None,
                                    updated_at=now - ORPHAN_AFTER - timedelta(seconds=1)),
            }
            for key, values in rows.items():
                s.add(AutoReply(conversation_id=conv_id, kind="away", period_key=key, state="sending",
                                trigger_at=now, created_at=now, **{"updated_at": now, **values}))
        sender = AutoReplies(app[appkeys.DEPS], owner=lambda: me)
        async with sessions() as s:
            in_hand = (await s.scalars(select(AutoReply).where(AutoReply.period_key == "in-hand"))).one()
        sender.hand.take([(in_hand.id, 4)])

        assert await sender.recover(now) == 3
        async with sessions() as s:
            found = {r.period_key: (r.state, r.reason, r.owner_id)
                     for r in (await s.scalars(select(AutoReply))).all()}
            notes = (await s.scalars(select(SlackOutbox.dedupe_key).where(
                SlackOutbox.dedupe_key.like("away-interrupted:%")))).all()
        assert found[owed.period_key] == ("pending", None, None)
        assert found["in-hand"] == ("sending", None, me)
        assert found["alive"] == ("sending", None, alive)
        assert found["gone-attempted"] == ("failed", INTERRUPTED, gone)
        assert found["unowned-new"] == ("sending", None, None)
        assert found["unowned-old"] == ("pending", None, None)
        assert len(notes) == 1
        # The unowned send that may have left is reported once it is old enough, and only once.
        later = now + ORPHAN_AFTER + timedelta(seconds=1)
        assert await sender.recover(later) == 1 and await sender.recover(later) == 0
        async with sessions() as s:
            assert (await s.scalars(select(AutoReply.state).where(AutoReply.period_key == "unowned-new"))).one() \
                == "failed"
        assert graph.attempts == []
    finally:
        await graph.stop()
