"""The outbox across workspaces: heads are taken round robin, paused workspaces' items stay in the table,
and each item is named for the workspace it is delivered to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.core.config import parse_settings
from bot.slack.outbox_queue import OutboxQueue
from scheduler.campaigns import progress
from scheduler.campaigns.jobs import alert
from scheduler.campaigns.unknown_notice import check_unknowns
from storage import progress_refresh
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Campaign, CampaignRecipient, CampaignRun, Channel, Contact, Conversation, SlackOutbox
from storage.outbox_kinds import MessagePost, enqueue
from storage.workspaces import owed_per_workspace, top_labels

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def _seed(db_url: str) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession], int]:
    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        for n, team in ((1, "T0STORM"), (2, "T0QUIET")):
            s.add(Channel(id=n, name=f"n{n}", phone_number_id=str(n), waba_id="w", mode="coexistence", mps=80,
                          slack_channel=f"C{n}", slack_team=team))
        await s.flush()
        # A reply storm: 30 customers of the storm workspace wrote first; then one of the quiet workspace.
        for i in range(31):
            team, channel = ("T0QUIET", 2) if i == 30 else ("T0STORM", 1)
            contact = Contact(wa_id=f"9198000{i:05d}")
            s.add(contact)
            await s.flush()
            conv = Conversation(channel_id=channel, contact_id=contact.id, slack_channel=f"C{channel}",
                                slack_team=team)
            s.add(conv)
            await s.flush()
            await enqueue(s, MessagePost(i, conv.id), dedupe_key=f"msg:{i}", order_ts=T0 + timedelta(seconds=i))
        camp = Campaign(name="c", channel_id=2, template_name="t", language="en", schedule_kind="now",
                        status="running", slack_team="T0QUIET")
        s.add(camp)
        await s.flush()
        run = CampaignRun(campaign_id=camp.id, scheduled_for=T0)
        s.add(run)
        await s.flush()
        await progress.enqueue(s, run.id, "start")
    return engine, sessions, run.id


async def test_one_workspaces_storm_does_not_keep_anothers_message_waiting(db_url: str) -> None:
    engine, sessions, _ = await _seed(db_url)
    try:
        queue = OutboxQueue(sessions, timedelta(seconds=60))
        first = await queue.claim(4, T0 + timedelta(minutes=1), workspaces=True)
        assert sorted(i.slack_team for i in first) == ["T0QUIET", "T0QUIET", "T0STORM", "T0STORM"]
        assert {i.kind for i in first if i.slack_team == "T0QUIET"} == {"message", "campaign_progress"}
    finally:
        await engine.dispose()


async def test_a_paused_workspaces_items_are_not_claimed(db_url: str) -> None:
    engine, sessions, _ = await _seed(db_url)
    try:
        queue = OutboxQueue(sessions, timedelta(seconds=60))
        claimed = await queue.claim(100, T0 + timedelta(minutes=1), paused={"T0STORM"}, workspaces=True)
        assert claimed and {i.slack_team for i in claimed} == {"T0QUIET"}
    finally:
        await engine.dispose()


async def test_metrics_name_the_workspaces_owed_most_and_sum_the_rest(db_url: str) -> None:
    engine, sessions, _ = await _seed(db_url)
    try:
        async with sessions() as s:
            owed = await owed_per_workspace(s)
    finally:
        await engine.dispose()
    assert owed == {"T0STORM": 30, "T0QUIET": 2}  # the campaign's progress post counts for its workspace
    assert top_labels(owed, 1) == {"T0STORM": 30, "other": 2}
    assert top_labels(owed, 5) == owed
    assert top_labels({f"T{i}": i for i in range(100)}, 20).keys() == {f"T{i}" for i in range(80, 100)} | {"other"}


async def test_a_campaign_alert_goes_to_the_campaigns_own_workspace(db_url: str) -> None:
    engine, sessions, _ = await _seed(db_url)
    try:
        async with sessions() as s, s.begin():
            camp = (await s.scalars(select(Campaign))).one()
            camp.slack_channel = "C2"
            other = Campaign(name="d", channel_id=1, template_name="t", language="en", schedule_kind="now",
                             status="running", slack_channel="C1")  # single-workspace days: 'default'
            s.add(other)
            await s.flush()
            await alert(s, "a", "campaign", "paused", "paused", campaign_id=camp.id)
            await alert(s, "b", "campaign", "paused", "paused", campaign_id=other.id)
        async with sessions() as s:
            rows = (await s.execute(select(SlackOutbox.dedupe_key, SlackOutbox.slack_team, SlackOutbox.payload)
                                    .where(SlackOutbox.kind == "alert").order_by(SlackOutbox.dedupe_key))).all()
    finally:
        await engine.dispose()
    assert [(k, t, p.get("channel")) for k, t, p in rows] == [("alert:campaign:a", "T0QUIET", "C2"),
                                                             ("alert:campaign:b", "default", None)]


async def test_every_campaign_post_is_owed_to_the_campaigns_workspace(db_url: str) -> None:
    """Progress (start, refreshes after statuses) and unknown notices: each is filed under the campaign's
    workspace, so it is paused, taken in turn and counted in /metrics with that workspace, not 'default'."""
    engine, sessions, run_id = await _seed(db_url)
    try:
        async with sessions() as s, s.begin():
            single = Campaign(name="single", channel_id=1, template_name="t", language="en", schedule_kind="now",
                              status="running", slack_channel="C1")  # single-workspace days: 'default'
            s.add(single)
            await s.flush()
            single_run = CampaignRun(campaign_id=single.id, scheduled_for=T0)
            s.add(single_run)
            await s.flush()
            await progress.enqueue(s, single_run.id, "start")
            unknown = CampaignRecipient(run_id=run_id, wa_id="919800000009", status="unknown", attempts=1,
                                        attempted_at=T0)
            s.add(unknown)
            await s.flush()
            newest = unknown.id
        async with sessions() as s, s.begin():
            # Delivered: a refresh owed while the start post is still unclaimed would ride on it instead.
            await s.execute(SlackOutbox.__table__.update().where(SlackOutbox.kind == "campaign_progress")
                            .values(done_at=T0))
            quiet = (await s.scalars(select(Campaign).where(Campaign.name == "c"))).one()
            quiet.slack_channel = "C2"  # where its unknown notice goes
            assert await progress_refresh.refresh(s, [run_id, single_run.id], "statuses:1") == 2
            settings = parse_settings({"meta": {"app_secret": "s", "verify_token": "v"},
                                       "slack": {"bot_token": "xoxb-1", "signing_secret": "x"}})
            assert (await check_unknowns(s, settings, T0 + timedelta(hours=1)))[0] == 1
        async with sessions() as s:
            rows = (await s.execute(select(SlackOutbox.dedupe_key, SlackOutbox.slack_team)
                                    .where(SlackOutbox.conversation_id.is_(None)))).tuples().all()
            owed = await owed_per_workspace(s)
    finally:
        await engine.dispose()
    assert dict(rows) == {f"campaign_progress:{run_id}:start": "T0QUIET",
                          f"campaign_progress:{run_id}:statuses:1": "T0QUIET",
                          f"campaign_unknown:{run_id}:{newest}": "T0QUIET",
                          f"campaign_progress:{single_run.id}:start": "default",
                          f"campaign_progress:{single_run.id}:statuses:1": "default"}
    assert owed == {"T0STORM": 30, "T0QUIET": 3, "default": 1}
