"""Work bound to a process's liveness: a silent owner's webhook deliveries, Slack posts and campaign
recipients are taken over within a second of the silence, and what the old owner does afterwards is fenced."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from bot.handlers import appkeys
from bot.slack.outbox import ItemContext, OutboxWorker
from bot.slack.render import Post
from scheduler.campaigns.attempts import AttemptMarks
from scheduler.campaigns.recovery import take_back_orphans
from storage import liveness, webhook_logs
from storage.fencing import FencedOut
from storage.models import CampaignRecipient, SlackOutbox, WebhookLog, Worker, utcnow
from storage.takeover import take_over
from tests.harness import bridges
from tests.helpers import SLACK_CHANNEL, make_settings, owe_raw
from tests.test_campaign_support import make_campaign, numbers, open_db, start_run


async def _go_silent(sessions: Any, worker_id: int) -> None:
    async with sessions() as s, s.begin():
        await s.execute(update(Worker).where(Worker.id == worker_id)
                        .values(heartbeat_at=utcnow() - timedelta(seconds=6)))


async def test_deliveries_of_a_silent_worker_are_given_back_and_its_late_commit_is_rolled_back(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    sessions = db.sessions
    try:
        await webhook_logs.store(sessions, b"{}", "messages")
        paused = await liveness.register(sessions, "paused")
        survivor = await liveness.register(sessions, "survivor")
        [mine] = await webhook_logs.claim_batch(sessions, 10, owner=paused)
        assert await webhook_logs.claim_batch(sessions, 10, owner=survivor) == []  # leased (60 s)
        async with sessions() as s, s.begin():
            assert await take_over(s) == {}  # the owner is alive: nothing moves
        await _go_silent(sessions, paused)
        async with sessions() as s, s.begin():
            assert await take_over(s) == {"webhook_logs": 1}
        [theirs] = await webhook_logs.claim_batch(sessions, 10, owner=survivor)
        assert theirs.id == mine.id and theirs.fence is not None and mine.fence is not None
        assert theirs.fence.token > mine.fence.token

        try:
            async with sessions() as s, s.begin():
                await owe_raw(s, dedupe_key="late", kind="note", payload={})
                await webhook_logs.mark_processed(s, mine.id, fence=mine.fence)
            raise AssertionError("a taken-over delivery was settled by its old owner")
        except FencedOut:
            pass
        async with sessions() as s:
            assert (await s.scalars(select(SlackOutbox.id))).all() == []  # its effects rolled back too
        async with sessions() as s, s.begin():
            await webhook_logs.mark_processed(s, theirs.id, fence=theirs.fence)
        async with sessions() as s:
            row = await s.get(WebhookLog, mine.id)
            assert row is not None and row.processed_at is not None and row.owner_id is None
    finally:
        await db.close()


async def test_a_post_whose_owner_died_mid_attempt_is_looked_up_before_posting_again(
        aiohttp_client: Any, db_url: str) -> None:
    async def note(ctx: ItemContext) -> None:
        await ctx.post(SLACK_CHANNEL, Post(text="hello once"))

    kinds = {"test_once": note}
    async with bridges(aiohttp_client, db_url) as build:
        b = await build(with_slack=False)
        deps = b.app[appkeys.DEPS]
        dead = await liveness.register(deps.sessions, "dead")
        alive = await liveness.register(deps.sessions, "alive")
        async with deps.sessions() as s, s.begin():
            await owe_raw(s, dedupe_key="once", thread_key="t1", kind="test_once", payload={})
            # A previous attempt that failed cleanly left "not uncertain" behind it.
            await s.execute(update(SlackOutbox).values(result={"uncertain": False}, attempts=1))
        first = OutboxWorker(deps, kinds, owner=lambda: dead)
        [item] = await first.claim(10)
        # The dead process posted, then died before recording it.
        ctx = ItemContext(first, item)
        await note(ctx)
        await _go_silent(deps.sessions, dead)
        async with deps.sessions() as s, s.begin():
            assert await take_over(s) == {"slack_outbox": 1}

        second = OutboxWorker(deps, kinds, owner=lambda: alive)
        [again] = await second.claim(10)
        assert again.uncertain  # the unsettled claim, not the stale flag, decides
        await second._deliver(again)
        held = [m for m in b.slack.messages(SLACK_CHANNEL) if m.get("text") == "hello once"]
        calls = [c for c in b.slack.calls_to("chat.postMessage") if c.args.get("text") == "hello once"]
        assert len(held) == 1 and len(calls) == 1
        # The dead owner's late settle is fenced off and changes nothing.
        await first.queue.complete(item, {"late": True})
        async with deps.sessions() as s:
            row = await s.get(SlackOutbox, item.id)
            assert row is not None and row.done_at is not None and "late" not in (row.result or {})


async def _claimed_by(db: Any, count: int, name: str) -> tuple[int, list[int]]:
    """A run of ``count`` recipients, all `sending` under one claim (fence 1) of a worker named ``name``."""
    run_id = await start_run(db, await make_campaign(db, numbers(count)))
    owner = await liveness.register(db.sessions, name)
    async with db.sessions() as s, s.begin():
        await s.execute(update(CampaignRecipient).where(CampaignRecipient.run_id == run_id)
                        .values(status="sending", owner_id=owner, fence=1, attempts=1))
    async with db.sessions() as s:
        return owner, sorted((await s.scalars(select(CampaignRecipient.id))).all())


async def test_recipients_taken_over_cannot_be_marked_or_recorded_by_their_old_sender(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    try:
        old, ids = await _claimed_by(db, 2, "old")
        marks = AttemptMarks(db.sessions)
        assert await marks.mark(ids[0], old, 1)
        await _go_silent(db.sessions, old)
        async with db.sessions() as s, s.begin():
            assert dict(await take_back_orphans(s)) == {"unknown": 1, "pending": 1}
        assert not await marks.mark(ids[1], old, 1)  # taken over: the old sender must not send it
        async with db.sessions() as s:
            states = dict((await s.execute(select(CampaignRecipient.id, CampaignRecipient.status))).tuples().all())
        assert [states[i] for i in ids] == ["unknown", "pending"]
    finally:
        await db.close()


async def test_a_process_that_may_have_lost_its_claim_posts_nothing(aiohttp_client: Any, db_url: str) -> None:
    async def note(ctx: ItemContext) -> None:
        await ctx.post(SLACK_CHANNEL, Post(text="only by the holder"))

    async with bridges(aiohttp_client, db_url) as build:
        b = await build(with_slack=False)
        deps = b.app[appkeys.DEPS]
        me = await liveness.register(deps.sessions, "paused")
        async with deps.sessions() as s, s.begin():
            await owe_raw(s, dedupe_key="guarded", thread_key="t1", kind="test_guard", payload={})
        lost = OutboxWorker(deps, {"test_guard": note}, owner=lambda: me, guard=lambda: (lambda: False))
        [item] = await lost.claim(10)
        await lost._deliver(item)
        assert [c for c in b.slack.calls_to("chat.postMessage")] == []
        async with deps.sessions() as s:
            row = await s.get(SlackOutbox, item.id)
            assert row is not None and row.done_at is None and (row.result or {}).get("uncertain") is True


async def test_marks_committed_together_are_matched_one_by_one(db_url: str) -> None:
    # Senders granted at the same moment share one commit: each mark still matches its own claim (owner and
    # fence), so one taken over in the same batch is refused while the others go ahead.
    db = await open_db(make_settings(db_url))
    try:
        owner, ids = await _claimed_by(db, 4, "sender")
        async with db.sessions() as s, s.begin():
            # Taken over and claimed again by someone else (a later fence), and one already settled.
            await s.execute(update(CampaignRecipient).where(CampaignRecipient.id == ids[1]).values(fence=2))
            await s.execute(update(CampaignRecipient).where(CampaignRecipient.id == ids[3]).values(status="sent"))
        marks = AttemptMarks(db.sessions)
        results = await asyncio.gather(*(marks.mark(i, owner, 1) for i in ids))
        assert results == [True, False, True, False]
        async with db.sessions() as s:
            marked = set((await s.scalars(select(CampaignRecipient.id)
                                          .where(CampaignRecipient.attempted_at.is_not(None)))).all())
        assert marked == {ids[0], ids[2]}
    finally:
        await db.close()
