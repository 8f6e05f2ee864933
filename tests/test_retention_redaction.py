"""Retention redacts the Slack posts of the messages it deletes: recorded with the delete, worked off behind each
workspace's live posts with that workspace's token, resumed after a stop, what Slack refuses recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.core.config import RetentionSettings
from bot.core.metrics import Metrics
from bot.handlers import appkeys
from bot.ops.retention_redaction import OWN_SHARE, REDACTED, RedactionWorker, _own_pacer
from bot.ops.retention_worker import RetentionWorker
from bot.slack.pacer import Pacer
from bot.slack.pacing import SLACK_LIMITS
from bot.standins import SlackStandin
from storage import redactions
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Channel, Contact, Conversation, Message, SlackOutbox, SlackRedaction, utcnow
from storage.outbox_kinds import MessagePost, enqueue
from storage.workspaces import record_removal
from tests.harness import BridgeFactory, eventually, now_ts, thread_with
from tests.helpers import SLACK_CHANNEL, inbound_text

TOKENS = {"T0ALPHA": "xoxb-alpha", "T0BETA": "xoxb-beta"}
CHANNELS = {"T0ALPHA": "C0ALPHA", "T0BETA": "C0BETA"}


@dataclass
class World:
    slack: SlackStandin
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    clients: dict[str, AsyncWebClient]
    threads: dict[str, str]  # workspace -> its thread's parent ts
    posts: dict[str, list[str]]  # workspace -> ts of its messages' posts, oldest first

    async def client_for(self, team: str) -> AsyncWebClient | None:
        return self.clients.get(team)

    def worker(self, metrics: Metrics | None = None) -> RedactionWorker:
        # All of Slack's allowance here: the half kept for live edits is about time, not what is redacted.
        return RedactionWorker(self.sessions, self.client_for, Pacer(), metrics=metrics, idle=0.01, share=1.0)

    def text(self, team: str, ts: str) -> str:
        return next(str(m.get("text")) for m in self.slack.messages(CHANNELS[team]) if m["ts"] == ts)


async def _thread(world: World, team: str, contact: Contact, channel: Channel, days_old: list[int]) -> None:
    """A conversation of `team` whose parent carries its first message, then one post per later message."""
    client = world.clients[team]
    now = utcnow()
    parent = await client.chat_postMessage(channel=CHANNELS[team], text="Ravi (+91 98123 45678): first message")
    ts = str(parent["ts"])
    world.threads[team] = ts
    async with world.sessions() as s, s.begin():
        conv = Conversation(channel_id=channel.id, contact_id=contact.id, slack_channel=CHANNELS[team],
                            slack_thread_ts=ts, slack_team=team)
        s.add(conv)
        await s.flush()
        for i, age in enumerate(days_old):
            post_ts = ts
            if i:
                post = await client.chat_postMessage(channel=CHANNELS[team], thread_ts=ts, text=f"{team} message {i}")
                post_ts = str(post["ts"])
            world.posts.setdefault(team, []).append(post_ts)
            s.add(Message(conversation_id=conv.id, direction="inbound", source="customer", type="text",
                          text=f"{team} message {i}", wamid=f"wamid.{team}.{i}", slack_ts=post_ts,
                          wa_timestamp=now - timedelta(days=age)))


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    await migrate(db_url)
    engine = make_engine(db_url)
    slack = SlackStandin(bot_token="xoxb-standin")
    await slack.start()
    for team, channel in CHANNELS.items():
        slack.oauth.add_workspace(team, team.title())
        slack.oauth.add_token(TOKENS[team], team)
        slack.add_channel(channel, channel.lower(), team_id=team)
    clients = {team: AsyncWebClient(token=token, base_url=slack.api_url) for team, token in TOKENS.items()}
    w = World(slack, make_sessionmaker(engine), engine, clients, {}, {})
    try:
        async with w.sessions() as s, s.begin():
            contact = Contact(wa_id="919812345678")
            channels = [Channel(name=t.lower(), phone_number_id=str(n), waba_id=str(n), mode="coexistence", mps=5,
                                slack_channel=CHANNELS[t], slack_team=t) for n, t in enumerate(TOKENS, 1)]
            s.add_all([contact, *channels])
        # Alpha: the first two messages (the parent's and one post) are past a year, the third is not.
        await _thread(w, "T0ALPHA", contact, channels[0], [400, 400, 10])
        await _thread(w, "T0BETA", contact, channels[1], [400, 400])
        yield w
    finally:
        await slack.stop()
        await engine.dispose()


async def _prune(world: World, redact: bool = True) -> dict[str, int]:
    settings = RetentionSettings(messages_days=365, batch_size=1, redact_slack=redact)
    return await RetentionWorker(world.sessions, settings).prune_once()


async def _rows(world: World) -> list[tuple[str, str, bool, str | None]]:
    async with world.sessions() as s:
        r = SlackRedaction
        rows = (await s.execute(select(r.slack_team, r.ts, r.parent, r.outcome).order_by(r.id))).tuples().all()
    return [(team, ts, parent, outcome) for team, ts, parent, outcome in rows]


async def test_the_posts_of_deleted_messages_are_recorded_with_the_delete(world: World) -> None:
    assert (await _prune(world, redact=False))["messages"] == 4
    assert await _rows(world) == []  # retention.redact_slack: false leaves Slack to its own retention
    async with world.sessions() as s, s.begin():
        await s.execute(update(Message).values(wa_timestamp=utcnow() - timedelta(days=500)))
    assert (await _prune(world))["messages"] == 1  # batches of one: the record and the delete go together
    assert await _rows(world) == [("T0ALPHA", world.posts["T0ALPHA"][2], False, None)]


async def test_posts_are_redacted_with_their_workspaces_token_and_the_parent_refreshed(world: World) -> None:
    assert (await _prune(world))["messages"] == 4
    alpha, beta = world.posts["T0ALPHA"], world.posts["T0BETA"]
    assert sorted(await _rows(world)) == sorted([("T0ALPHA", alpha[0], True, None), ("T0ALPHA", alpha[1], False, None),
                                                 ("T0BETA", beta[0], True, None), ("T0BETA", beta[1], False, None)])
    metrics = Metrics()
    assert await world.worker(metrics).pass_once() == 4
    assert world.text("T0ALPHA", alpha[1]) == REDACTED and world.text("T0BETA", beta[1]) == REDACTED
    assert world.text("T0ALPHA", alpha[2]) == "T0ALPHA message 2"  # younger than a year: kept
    updates = world.slack.calls_to("chat.update")
    assert {(c.team, c.args.get("channel")) for c in updates} == {("T0ALPHA", "C0ALPHA"), ("T0BETA", "C0BETA")}
    async with world.sessions() as s:
        refreshes = (await s.scalars(select(SlackOutbox.conversation_id).where(SlackOutbox.kind == "thread_parent")
                                     )).all()
        assert await redactions.pending(s) == 0
    assert len(refreshes) == 2  # the parents are re-rendered by the outbox, without the deleted message
    assert metrics.registry.get_sample_value("wabridge_retention_rows_total", {"table": "slack_posts"}) == 4
    assert await world.worker().pass_once() == 0 and len(world.slack.calls_to("chat.update")) == 2


async def test_a_workspace_owing_a_live_post_gets_no_redaction_until_it_is_posted(world: World) -> None:
    await _prune(world)
    async with world.sessions() as s, s.begin():
        conv = (await s.scalars(select(Conversation).where(Conversation.slack_team == "T0ALPHA"))).one()
        await enqueue(s, MessagePost(10**6, conv.id), dedupe_key="msg:live")
    assert await world.worker().pass_once() == 2  # Beta's only
    assert {c.team for c in world.slack.calls_to("chat.update")} == {"T0BETA"}
    assert world.text("T0ALPHA", world.posts["T0ALPHA"][1]) == "T0ALPHA message 1"
    async with world.sessions() as s, s.begin():
        await s.execute(update(SlackOutbox).where(SlackOutbox.dedupe_key == "msg:live").values(done_at=utcnow()))
    assert await world.worker().pass_once() == 2
    assert world.text("T0ALPHA", world.posts["T0ALPHA"][1]) == REDACTED


async def test_a_stop_mid_pass_is_resumed_and_slacks_refusals_are_recorded(world: World) -> None:
    await _prune(world)
    # A process claimed everything and stopped before settling any: nothing is done until its lease ends.
    assert len(await redactions.claim(world.sessions, 10, timedelta(seconds=1))) == 4
    assert await world.worker().pass_once() == 0 and not world.slack.calls_to("chat.update")
    async with world.sessions() as s, s.begin():
        await s.execute(update(SlackRedaction).values(claimed_until=utcnow() - timedelta(seconds=1)))
    # Slack busy once (tried again later), then a post someone deleted (already gone), then a channel gone.
    world.slack.fail_next("chat.update", "service_unavailable")
    assert await world.worker().pass_once() == 3
    async with world.sessions() as s, s.begin():
        await s.execute(update(SlackRedaction).values(next_attempt_at=None))
    world.slack.fail_next("chat.update", "channel_not_found")
    assert await world.worker().pass_once() == 1
    outcomes = sorted(str(o) for *_, o in await _rows(world))
    assert outcomes == ["channel_not_found", "parent refreshed", "parent refreshed", "redacted"]


async def test_a_workspace_without_a_token_keeps_its_redactions_for_the_reinstall(world: World) -> None:
    await _prune(world)
    async with world.sessions() as s, s.begin():
        await record_removal(s, "T0BETA", "uninstalled")
    assert await world.worker().pass_once() == 2
    async with world.sessions() as s:
        assert await redactions.pending(s) == 2
    assert {c.team for c in world.slack.calls_to("chat.update")} == {"T0ALPHA"}


async def test_a_running_bridge_redacts_what_retention_deleted(make_bridge: BridgeFactory) -> None:
    """End to end: messages mirrored into Slack, aged out by the retention pass, redacted by the server's worker;
    the parent keeps its header and buttons but no longer quotes the deleted first message."""
    b = await make_bridge()
    await b.webhook(inbound_text("wamid.OLD1", "my old address is 12 Baker Street", ts=now_ts(-60)))
    await b.webhook(inbound_text("wamid.OLD2", "and my old phone is 98765", ts=now_ts(-50)))
    await b.webhook(inbound_text("wamid.NEW", "what are the fees?", ts=now_ts(-40)))
    parent, _ = await thread_with(b, 3)
    sessions = b.app[appkeys.SESSIONS]
    async with sessions() as s, s.begin():
        await s.execute(update(Message).where(Message.wamid.in_(["wamid.OLD1", "wamid.OLD2"]))
                        .values(wa_timestamp=utcnow() - timedelta(days=400)))
    metrics = b.app[appkeys.METRICS]
    deleted = await RetentionWorker(sessions, RetentionSettings(messages_days=365), metrics=metrics).prune_once()
    assert deleted["messages"] == 2

    def texts() -> list[str]:
        return [json.dumps([m.get("text"), m.get("blocks")]) for m in b.slack.thread(SLACK_CHANNEL, parent["ts"])]

    done = await eventually(lambda: (t := texts()) and "Baker Street" not in t[0] and REDACTED in json.dumps(t)
                            and "98765" not in json.dumps(t) and t)
    assert "what are the fees?" in json.dumps(done)  # younger than a year: untouched
    assert "Take it" in done[0]  # the parent keeps its header and the inbox's buttons
    # Counted once each redaction is recorded, which follows its chat.update: wait for the records too.
    await eventually(lambda: (metrics.registry.get_sample_value(
        "wabridge_retention_rows_total", {"table": "slack_posts"}) or 0) >= 2)
    assert metrics.registry.get_sample_value("wabridge_retention_rows_total", {"table": "slack_posts"}) == 2


async def test_a_parent_whose_conversation_was_erased_since_is_left_alone(world: World) -> None:
    await _prune(world)
    async with world.sessions() as s, s.begin():  # an erasure took Beta's conversation meanwhile
        conv = (await s.scalars(select(Conversation).where(Conversation.slack_team == "T0BETA"))).one()
        await s.delete(conv)
    assert await world.worker().pass_once() == 4
    async with world.sessions() as s:
        refreshed = (await s.scalars(select(SlackOutbox.conversation_id).where(SlackOutbox.kind == "thread_parent")
                                     )).all()
    assert len(refreshed) == 1
    assert sorted(str(o) for *_, o in await _rows(world)).count("conversation gone") == 1


def test_the_worker_leaves_half_of_slacks_allowance_to_live_edits() -> None:
    own = _own_pacer(OWN_SHARE)
    assert own is not None and OWN_SHARE == 0.5
    for method in ("chat.update", "files.delete"):
        assert own.limits[method].per_second == SLACK_LIMITS[method].per_second / 2
        assert own.limits[method].burst == 1  # no burst of its own: one call at a time
    assert _own_pacer(1.0) is None


async def test_media_files_are_deleted_in_batches_once_retried_while_slack_is_down(world: World) -> None:
    """Past retention.media_days the files the bridge uploaded go (files only: the post stays); Slack down is
    tried again, a file Slack refuses for good (a person's upload) is recorded, and nothing is asked twice."""
    bot_files = [world.slack.add_file(f"photo {n}".encode(), f"photo-{n}.jpg")["id"] for n in range(3)]
    staff_file = world.slack.add_file(b"theirs", "theirs.pdf", user="U0STAFF")["id"]
    async with world.sessions() as s, s.begin():
        conv = (await s.scalars(select(Conversation).where(Conversation.slack_team == "T0ALPHA"))).one()
        for n, files in enumerate([[bot_files[0]], [bot_files[1], staff_file], [bot_files[2]]]):
            s.add(Message(conversation_id=conv.id, direction="inbound", source="customer", type="image",
                          media_id=f"media.{n}", media_mime="image/jpeg", wamid=f"wamid.IMG{n}",
                          slack_ts=world.posts["T0ALPHA"][2], slack_posts={"posts": [], "files": files},
                          wa_timestamp=utcnow() - timedelta(days=100 if n < 2 else 10)))
    settings = RetentionSettings(media_days=90, batch_size=1)
    assert (await RetentionWorker(world.sessions, settings).prune_once())["media"] == 2
    assert (await RetentionWorker(world.sessions, settings).prune_once())["media"] == 0
    async with world.sessions() as s:
        rows = (await s.execute(select(SlackRedaction.ts, SlackRedaction.files, SlackRedaction.files_only)
                                .order_by(SlackRedaction.id))).tuples().all()
        kept = await s.scalar(select(Message.slack_posts).where(Message.wamid == "wamid.IMG2"))
    assert [tuple(r) for r in rows] == [(bot_files[0], [bot_files[0]], True),
                                        (bot_files[1], [bot_files[1], staff_file], True)]
    assert kept == {"posts": [], "files": [bot_files[2]]}  # younger than 90 days: its file stays

    world.slack.fail_next("files.delete", "internal_error")
    assert await world.worker().pass_once() == 1  # the first waits for Slack; the second went
    assert bot_files[0] in world.slack.files and bot_files[1] not in world.slack.files
    async with world.sessions() as s, s.begin():
        await s.execute(update(SlackRedaction).values(next_attempt_at=None))
    assert await world.worker().pass_once() == 1
    assert not world.slack.calls_to("chat.update")  # the posts keep their words
    assert set(bot_files[:2]) & set(world.slack.files) == set() and bot_files[2] in world.slack.files
    assert staff_file in world.slack.files
    assert sorted(str(o) for *_, o in await _rows(world)) == ["cant_delete_file", "files deleted"]
    calls = len(world.slack.calls_to("files.delete"))
    assert await world.worker().pass_once() == 0 and len(world.slack.calls_to("files.delete")) == calls


async def test_a_parent_that_carried_media_is_refreshed_and_its_file_deleted(world: World) -> None:
    """A conversation opened by an image: its parent carries the caption and the file is a post of its own; the
    parent is refreshed (not overwritten) and the file still goes."""
    photo = world.slack.add_file(b"photo", "photo.jpg")["id"]
    async with world.sessions() as s, s.begin():
        await s.execute(update(Message).where(Message.wamid == "wamid.T0ALPHA.0").values(
            slack_posts={"posts": [world.threads["T0ALPHA"]], "files": [photo]}))
    await _prune(world)
    assert await world.worker().pass_once() == 4
    assert photo not in world.slack.files and photo in world.slack.deleted_files
    parent = next(r for r in await _rows(world) if r[1] == world.threads["T0ALPHA"])
    assert parent[2:] == (True, "parent refreshed")
    assert world.text("T0ALPHA", world.threads["T0ALPHA"]).startswith("Ravi")  # the outbox re-renders it
