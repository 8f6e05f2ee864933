"""A process that lost its database connection heals itself: the claims it no longer works on (a pass cut off,
a claim whose commit answer was lost) are given back at once, fenced; loops log failures at a bounded rate;
`/healthz` names a failing loop or a campaign run that stopped moving. The whole story, against a restarted
PostgreSQL, is tests/drills/test_db_restart.py."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.app.campaign_component import campaign_health_check
from bot.app.factory import create_app
from bot.core.loop_health import LoopHealth, LoopMonitor
from bot.handlers import appkeys
from bot.slack.outbox_queue import OutboxQueue
from scheduler.campaigns.attempts import AttemptMarks
from scheduler.campaigns.queue import RecipientQueue
from scheduler.campaigns.stalls import stalled_runs
from storage import liveness, webhook_logs
from storage.fencing import InHand
from storage.models import CampaignRecipient, CampaignRun, SlackOutbox, WebhookLog, utcnow
from storage.takeover import give_back_own
from tests.helpers import make_settings, owe_raw
from tests.test_campaign_support import make_campaign, numbers, open_db, start_run

R = CampaignRecipient


async def test_own_deliveries_cut_off_are_given_back_and_those_in_hand_are_not(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    sessions = db.sessions
    try:
        for _ in range(3):
            await webhook_logs.store(sessions, b"{}", "messages")
        me = await liveness.register(sessions, "me")
        hand = InHand()
        claimed = await webhook_logs.claim_batch(sessions, 10, owner=me, hand=hand)
        assert len(claimed) == 3 and all(hand.holds(c.id, c.fence.token) for c in claimed if c.fence)
        async with sessions() as s, s.begin():
            assert await give_back_own(s, me, {"webhook_logs": hand}) == {}  # all still worked on
        # The worker's batch is cut off for one of them (its outcome could not be written): it lets go.
        lost = claimed[0]
        assert lost.fence is not None
        hand.drop([(lost.id, lost.fence.token)])
        async with sessions() as s, s.begin():
            assert await give_back_own(s, me, {"webhook_logs": hand}) == {"webhook_logs": 1}
        # At once claimable again (not after the 60 s lease), under a new token: the old claim is void.
        [again] = await webhook_logs.claim_batch(sessions, 10, owner=me, hand=hand)
        assert again.id == lost.id and again.fence is not None and again.fence.token > lost.fence.token
        async with sessions() as s, s.begin():
            assert await give_back_own(s, me, {"webhook_logs": hand}) == {}
    finally:
        await db.close()


async def test_a_claim_whose_commit_fails_is_not_left_in_hand(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    try:
        await webhook_logs.store(db.sessions, b"{}", "messages")
        me = await liveness.register(db.sessions, "me")
        hand = InHand()
        real = db.sessions

        class FailingCommit:
            """Sessions whose commit raises after the statement ran: an answer lost with the connection."""

            def __call__(self) -> Any:
                session = real()
                async def commit() -> None:
                    raise ConnectionResetError("connection lost during COMMIT")
                session.commit = commit  # type: ignore[method-assign]
                return session

        with pytest.raises(ConnectionResetError):
            await webhook_logs.claim_batch(FailingCommit(), 10, owner=me, hand=hand)  # type: ignore[arg-type]
        assert hand.claims == {}
    finally:
        await db.close()


async def test_own_slack_posts_cut_off_are_given_back_and_looked_up_before_posting_again(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    sessions = db.sessions
    try:
        async with sessions() as s, s.begin():
            for n in range(2):
                await owe_raw(s, dedupe_key=f"k{n}", thread_key=f"t{n}", kind="note", payload={})
        me = await liveness.register(sessions, "me")
        queue = OutboxQueue(sessions, timedelta(seconds=120), owner=lambda: me)
        first, second = await queue.claim(10)
        assert queue.hand.holds(first.id, first.fence.token) if first.fence else False
        # The first one's outcome was never written (its attempt was cut off) and this process let it go.
        assert first.fence is not None
        queue.hand.drop([(first.id, first.fence.token)])
        async with sessions() as s, s.begin():
            assert await give_back_own(s, me, {"slack_outbox": queue.hand}) == {"slack_outbox": 1}
        [again] = await queue.claim(10)
        assert again.id == first.id and again.uncertain  # it may have posted: looked up before posting
        await queue.complete(second, {})
        assert not (second.fence and queue.hand.holds(second.id, second.fence.token))
        async with sessions() as s:
            row = await s.get(SlackOutbox, second.id)
            assert row is not None and row.done_at is not None
    finally:
        await db.close()


async def test_own_recipients_cut_off_get_their_fates_and_those_in_hand_are_left_alone(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    try:
        run_id = await start_run(db, await make_campaign(db, numbers(4)))
        me = await liveness.register(db.sessions, "me")
        queue = RecipientQueue(db.sessions, 60.0, owner=lambda: me)
        cut_off = await queue.claim(run_id, 3, marketing=False)
        [kept] = await queue.claim(run_id, 1, marketing=False)
        assert len(cut_off) == 3
        marks = AttemptMarks(db.sessions)
        assert await marks.mark(cut_off[0].id, me, cut_off[0].fence)  # its request may have left
        assert await queue.release_own() == {}  # everything is still in hand
        queue.forget(cut_off)  # their pass ended without writing their outcomes (the database was away)

        assert dict(await queue.release_own()) == {"unknown": 1, "pending": 2}
        async with db.sessions() as s:
            rows = {r.id: r for r in (await s.scalars(select(R).where(R.run_id == run_id))).all()}
        assert rows[cut_off[0].id].status == "unknown"  # never sent again blindly
        assert {rows[c.id].status for c in cut_off[1:]} == {"pending"}  # never attempted: sent normally
        assert {rows[c.id].attempts for c in cut_off[1:]} == {0}
        assert rows[kept.id].status == "sending" and rows[kept.id].owner_id == me
        # The cut-off claims are void: a late write by the old pass matches nothing.
        assert all(rows[c.id].fence == (c.fence or 0) + 1 for c in cut_off)
    finally:
        await db.close()


async def test_a_recipient_written_and_claimed_again_meanwhile_is_not_released(db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    try:
        run_id = await start_run(db, await make_campaign(db, numbers(1)))
        me = await liveness.register(db.sessions, "me")
        queue = RecipientQueue(db.sessions, 60.0, owner=lambda: me)
        [first] = await queue.claim(run_id, 1, marketing=False)
        queue.forget([first])
        # Before the sweep acts, the row is given back and claimed again: the new claim is in hand.
        async with db.sessions() as s, s.begin():
            await s.execute(update(R).where(R.id == first.id).values(status="pending", owner_id=None))
        [second] = await queue.claim(run_id, 1, marketing=False)
        assert second.id == first.id and second.fence != first.fence
        assert await queue.release_own() == {}
    finally:
        await db.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_loop_logs_one_traceback_per_interval_and_says_when_it_recovered(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    monitor = LoopMonitor("worker", logging.getLogger("test.loop"), traceback_every=30.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.loop"):
        for _ in range(50):  # ten seconds of failing five times a second
            monitor.failed(ConnectionRefusedError("refused"), "claiming")
            clock.now += 0.2
        assert sum(1 for r in caplog.records if r.exc_info) == 1
        assert len(caplog.records) == 2  # the traceback, then one line saying the rest are counted
        for _ in range(25):  # still failing, once a second (its retry back-off)
            monitor.failed(ConnectionRefusedError("refused"), "claiming")
            clock.now += 1.0
        assert sum(1 for r in caplog.records if r.exc_info) == 2
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert "69 more failures" in tracebacks[-1].getMessage()
        monitor.ok()
        assert "recovered after 75 failures" in caplog.records[-1].getMessage()
    assert monitor.failing_for() == 0.0


def test_loop_health_names_a_loop_only_once_it_has_failed_for_a_while() -> None:
    clock = FakeClock()
    health = LoopHealth(unhealthy_after=30.0, clock=clock)
    monitor = health.loop("webhook worker (live)", logging.getLogger("test.loop"))
    for _ in range(3):
        monitor.failed(OSError("down"))
        clock.now += 5
    assert health.failing() == {}
    for _ in range(5):
        monitor.failed(OSError("down"))
        clock.now += 5
    assert "webhook worker (live)" in health.failing()
    monitor.ok()
    assert health.failing() == {}


async def test_stalled_runs_name_recipients_claimed_without_progress_and_due_ones_nobody_claims(
        db_url: str) -> None:
    db = await open_db(make_settings(db_url))
    try:
        run_id = await start_run(db, await make_campaign(db, numbers(5)))
        later = utcnow() + timedelta(seconds=200)
        async with db.sessions() as s:
            assert await stalled_runs(s, utcnow()) == {}  # just started
            # Nothing claimed from it in 200 s while all five are due.
            assert "5 recipients due" in (await stalled_runs(s, later))[f"campaign run {run_id}"]
        me = await liveness.register(db.sessions, "me")
        queue = RecipientQueue(db.sessions, 60.0, owner=lambda: me)
        await queue.claim(run_id, 2, marketing=False)
        async with db.sessions() as s:
            assert await stalled_runs(s, utcnow() + timedelta(seconds=30)) == {}  # moving
            assert "2 recipients claimed" in (await stalled_runs(s, later))[f"campaign run {run_id}"]
    finally:
        await db.close()


async def test_healthz_is_503_with_a_reason_for_a_stalled_run_and_for_a_failing_loop(
        aiohttp_client: Any, db_url: str) -> None:
    settings = make_settings(db_url)
    db = await open_db(settings)
    try:
        run_id = await start_run(db, await make_campaign(db, numbers(3)))
        clock = FakeClock()
        app = create_app(settings, workers=False)
        app[appkeys.LOOP_HEALTH] = LoopHealth(clock=clock)
        app[appkeys.HEALTH_CHECKS].append(campaign_health_check(db.sessions, cache_seconds=0))
        client = await aiohttp_client(app)
        resp = await client.get("/healthz")
        assert resp.status == 200, await resp.text()

        # Recipients claimed long ago that nobody refreshes or gives back.
        long_ago = utcnow() - timedelta(seconds=300)
        async with db.sessions() as s, s.begin():
            await s.execute(update(CampaignRun).where(CampaignRun.id == run_id).values(started_at=long_ago))
            await s.execute(update(R).where(R.run_id == run_id).values(status="sending", claimed_at=long_ago,
                                                                       owner_id=99))
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["database"] == "ok"
        assert "3 recipients claimed" in body["stuck"][f"campaign run {run_id}"]
        assert f"campaign run {run_id}" in body["reason"]

        async with db.sessions() as s, s.begin():
            await s.execute(update(R).where(R.run_id == run_id).values(status="sent", owner_id=None))
        assert (await client.get("/healthz")).status == 200
        # A loop failing for longer than the limit is named too.
        monitor = app[appkeys.LOOP_HEALTH].loop("slack outbox", logging.getLogger("test.loop"))
        for _ in range(12):  # a minute of failing, retried every five seconds
            monitor.failed(ConnectionRefusedError("refused"), "claiming")
            clock.now += 5
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and "slack outbox" in body["stuck"] and "refused" in body["reason"]
        monitor.ok()
        assert (await client.get("/healthz")).status == 200
    finally:
        await db.close()


async def test_a_claimed_delivery_is_held_while_it_is_applied(db_url: str) -> None:
    """The webhook worker holds its batch in hand while applying it and lets go once it is settled."""
    from bot.bridge.meta_events import EventContext
    from bot.bridge.webhook_worker import WebhookWorker
    from bot.core.metrics import Metrics

    settings = make_settings(db_url)
    db = await open_db(settings)
    try:
        me = await liveness.register(db.sessions, "me")
        worker = WebhookWorker(db.sessions, lambda: EventContext(settings=settings, channel_ids={}), Metrics(),
                               owner=lambda: me)
        seen: list[dict[int, int]] = []
        apply = worker._apply

        async def watching(claimed: list[webhook_logs.ClaimedLog]) -> None:
            seen.append(dict(worker.hand.claims))
            await apply(claimed)

        worker._apply = watching  # type: ignore[method-assign]
        log_id = await webhook_logs.store(db.sessions, b'{"object": "whatsapp_business_account", "entry": []}',
                                          "unknown")
        assert await worker.process_available() == 1
        assert list(seen[0]) == [log_id] and worker.hand.claims == {}
        async with db.sessions() as s:
            row = await s.get(WebhookLog, log_id)
            assert row is not None and row.processed_at is not None
    finally:
        await db.close()


def test_a_loop_that_fails_and_succeeds_in_turn_still_logs_one_traceback_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    monitor = LoopMonitor("writer", logging.getLogger("test.loop"), traceback_every=30.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.loop"):
        for _ in range(20):
            monitor.failed(ConnectionRefusedError("refused"))
            monitor.ok()
            clock.now += 1.0
    assert sum(1 for r in caplog.records if r.exc_info) == 1


async def test_a_campaign_pass_keeps_its_claims_and_results_through_database_errors(db_url: str) -> None:
    """Claims and result writes that fail (the database restarting) are retried by the pass itself: every
    recipient is sent once and recorded `sent`, and nothing is left `sending` or in hand."""
    from bot.meta.graph import GraphClient
    from bot.standins import GraphStandin
    from scheduler.campaigns.policy import RunnerConfig
    from scheduler.campaigns.runner import CampaignRunner, campaign_throttle
    from tests.test_campaign_support import ThreadedStandin, campaign_settings

    with ThreadedStandin(GraphStandin()) as standin:
        settings = campaign_settings(db_url, graph_url=standin.base_url, mps=40)
        db = await open_db(settings)
        graph = GraphClient(standin.base_url, "v23.0")
        try:
            me = await liveness.register(db.sessions, "me")
            runner = CampaignRunner(db.sessions, graph, campaign_throttle(None), settings,
                                    config=RunnerConfig(poll=0.1), owner=lambda: me)
            queue = runner._queue
            real_write, real_claim = queue.write, queue.claim
            calls = {"write": 0, "claim": 0}

            async def write(*args: Any, **kwargs: Any) -> None:
                calls["write"] += 1
                if calls["write"] in (2, 3, 4):
                    raise ConnectionResetError("connection lost: the database restarted")
                await real_write(*args, **kwargs)

            async def claim(*args: Any, **kwargs: Any) -> Any:
                calls["claim"] += 1
                if calls["claim"] in (2, 3):
                    raise ConnectionResetError("connection refused: the database is starting")
                return await real_claim(*args, **kwargs)

            queue.write = write  # type: ignore[method-assign]
            queue.claim = claim  # type: ignore[method-assign]
            audience = numbers(30)
            run_id = await start_run(db, await make_campaign(db, audience))
            await runner.drive(run_id)

            assert calls["write"] > 4 and calls["claim"] > 3  # the failures did happen
            assert {w: len(standin.sends_to(w)) for w in audience} == dict.fromkeys(audience, 1)
            async with db.sessions() as s:
                states = {r.wa_id: (r.status, r.wamid) for r in (await s.scalars(
                    select(R).where(R.run_id == run_id))).all()}
                run = await s.get(CampaignRun, run_id)
            assert {w: states[w] for w in audience} == {w: ("sent", standin.sends_to(w)[0].wamid) for w in audience}
            assert run is not None and run.status == "done"
            assert queue.in_hand.claims == {}
        finally:
            await graph.aclose()
            await db.close()


def test_a_streak_with_no_failure_for_a_while_is_over_even_without_a_success() -> None:
    """The webhook intake only reports when webhooks arrive: after an outage with none, it is not named."""
    clock = FakeClock()
    health = LoopHealth(unhealthy_after=30.0, clock=clock)
    intake = health.loop("webhook intake", logging.getLogger("test.loop"))
    for _ in range(40):  # forty seconds of refused webhooks
        intake.failed(OSError("refused"))
        clock.now += 1
    assert "webhook intake" in health.failing()
    clock.now += 11  # the database is back; no webhook has come since
    assert health.failing() == {}
    intake.failed(OSError("refused"))  # a new failure starts a new streak
    assert intake.failures == 1 and health.failing() == {}


def test_a_side_job_failing_is_logged_but_never_makes_the_process_unhealthy() -> None:
    clock = FakeClock()
    health = LoopHealth(unhealthy_after=30.0, clock=clock)
    home = health.loop("home tab refresh", logging.getLogger("test.loop"), reported=False)
    for _ in range(12):
        home.failed(OSError("slack is down"))
        clock.now += 5
    assert home.failing_for() > 30 and health.failing() == {}
