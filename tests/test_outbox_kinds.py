"""Typed outbox kinds: each class stores the payload rows always had, so rows queued before an upgrade still go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from bot.app.slack_component import OUTBOX
from bot.handlers import appkeys
from bot.slack.outbox import ItemContext
from bot.slack.outbox_handlers import handle, kinds
from bot.slack.render import Post
from storage.models import Conversation, Message, SlackOutbox
from storage.outbox_kinds import (
    Alert,
    BadPayload,
    CampaignProgress,
    CampaignUnknown,
    HistoryPost,
    HistoryProgress,
    MessagePost,
    Note,
    OnboardingNotice,
    OutboxKind,
    ParentRefresh,
    Revision,
    StatusMark,
    enqueue,
    run_of_thread,
)
from tests.harness import all_text, bridges, eventually, now_ts, thread_posts
from tests.helpers import SLACK_CHANNEL, inbound_text, owe_raw

# Payloads exactly as the previous version wrote them (bot/bridge, bot/handlers, scheduler before the classes),
# with the row's conversation column, and the item each must be read as.
PREVIOUS_ROWS: list[tuple[str, dict[str, Any], int | None, OutboxKind]] = [
    ("message", {"message_id": 7}, 3, MessagePost(7, 3)),
    ("status", {"message_id": 7, "status": "failed", "error_code": 131026, "error_title": "Undeliverable"}, 3,
     StatusMark(7, "failed", 3, 131026, "Undeliverable")),
    ("status", {"message_id": 7, "status": "read", "error_code": None, "error_title": None}, 3,
     StatusMark(7, "read", 3)),
    ("note", {"text": "Opted out of marketing campaigns.", "conversation_id": 3}, 3,
     Note(3, "Opted out of marketing campaigns.")),
    ("note", {"text": ":warning: *x*", "conversation_id": 3, "mrkdwn": True}, 3, Note(3, ":warning: *x*", True)),
    ("alert", {"alert": "quality", "subject": "100", "state": "RED", "text": "Quality is low"}, None,
     Alert("quality", "100", "RED", "Quality is low")),
    ("alert", {"alert": "campaign", "subject": "c", "state": "s", "text": "t", "icon": ":x:", "channel": "C1"},
     None, Alert("campaign", "c", "s", "t", icon=":x:", channel="C1")),
    ("revision", {"message_id": 7}, 3, Revision(7, 3)),
    ("history", {"conversation_id": 3, "requested_by": "U1"}, 3, HistoryPost(3, "U1")),
    ("history_progress", {"sync_id": 4}, None, HistoryProgress(4)),
    ("thread_parent", {"conversation_id": 3}, 3, ParentRefresh(3)),
    ("onboarding_notice", {"text": "Done", "slack_channel": "C2"}, None, OnboardingNotice("Done", "C2")),
    ("campaign_progress", {"run_id": 5}, None, CampaignProgress(5)),
    ("campaign_unknown", {"run_id": 5, "channel": "C3", "campaign_id": 2, "name": "Diwali", "created_by": "U2",
                          "count": 3, "newest_id": 9}, None, CampaignUnknown(5, "C3", 2, "Diwali", 3, 9, "U2")),
]
CLASSES = {type(item).KIND: type(item) for _, _, _, item in PREVIOUS_ROWS}


@pytest.mark.parametrize(("kind", "payload", "conversation_id", "expected"), PREVIOUS_ROWS,
                         ids=[f"{k}-{i}" for i, (k, *_rest) in enumerate(PREVIOUS_ROWS)])
def test_a_row_written_by_the_previous_version_reads_as_its_class(
        kind: str, payload: dict[str, Any], conversation_id: int | None, expected: OutboxKind) -> None:
    cls = CLASSES[kind]
    assert cls.KIND == kind
    assert cls.from_row(payload, conversation_id) == expected
    # What is stored now reads back the same, and keeps every key the previous version's handlers read.
    assert cls.from_row(expected.payload(), expected.conversation) == expected
    assert {k for k, v in payload.items() if v is not None} <= set(expected.payload())


def test_each_kind_names_its_thread_as_the_previous_version_did() -> None:
    assert MessagePost(7, 3).thread_key == StatusMark(7, "read", 3).thread_key == Note(3, "x").thread_key == "conv:3"
    assert Revision(7, 3).thread_key == HistoryPost(3).thread_key == "conv:3"
    assert ParentRefresh(3).thread_key == "parent:3"
    assert Alert("a", "s", "st", "t").thread_key == "alerts"
    assert HistoryProgress(4).thread_key == "sync:4"
    assert OnboardingNotice("t", link_id=6).thread_key == "onboarding:6"
    assert CampaignProgress(5).thread_key == CampaignUnknown(5, "C", 1, "n", 1, 1).thread_key == "campaign:5"
    assert run_of_thread("campaign:5") == 5 and run_of_thread("conv:5") is None and run_of_thread("campaign:x") is None
    # The conversation column: a conversation's items carry it (its workspace delivers them), others do not.
    assert MessagePost(7, 3).conversation == ParentRefresh(3).conversation == 3
    assert Alert("a", "s", "st", "t").conversation is None and "conversation_id" not in MessagePost(7, 3).payload()


def test_a_payload_missing_what_its_handler_needs_is_refused() -> None:
    with pytest.raises(BadPayload):
        MessagePost.from_row({}, 3)
    with pytest.raises(BadPayload):
        Note.from_row({"text": "no conversation"}, None)
    # A newer version's extra key is left aside rather than refused.
    assert Note.from_row({"text": "x", "conversation_id": 1, "colour": "red"}, None) == Note(1, "x")


async def test_rows_queued_by_the_previous_version_are_delivered_after_the_upgrade(
        aiohttp_client: Any, db_url: str) -> None:
    async with bridges(aiohttp_client, db_url) as build:
        # The previous version stored a customer's message and queued its post; it never ran its outbox.
        before = await build(with_slack=False)
        await before.webhook(inbound_text("wamid.old.1", "Hello from before", ts=now_ts(-60)))

        async def stored() -> bool:
            return await before.count(Message, Message.wamid == "wamid.old.1") == 1

        await eventually(stored)
        msg = await before.one(Message, Message.wamid == "wamid.old.1")
        async with _sessions(before) as s, s.begin():
            # Queued by the previous version after the message, in its own words (no `mrkdwn` key, no icon).
            await owe_raw(s, kind="note", payload={"text": "Opted out of <marketing> campaigns.",
                                                   "conversation_id": msg.conversation_id},
                          dedupe_key=f"optout:{msg.id}", thread_key=f"conv:{msg.conversation_id}",
                          conversation_id=msg.conversation_id)
            await owe_raw(s, kind="alert", payload={"alert": "quality", "subject": "100", "state": "RED",
                                                    "text": "Quality rating is RED"},
                          dedupe_key="alert:quality:100:RED", thread_key="alerts")
        # The upgraded process delivers them all.
        after = await build(with_slack=True)

        async def delivered() -> bool:
            return await after.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

        await eventually(delivered, timeout=30)
        async with _sessions(after) as s:
            errors = (await s.scalars(select(SlackOutbox.last_error))).all()
        assert errors == [None, None, None]
        parent = (await eventually(lambda: after.parents()))[0]
        posts = thread_posts(after, parent)
        assert "Hello from before" in all_text(posts[0])
        # Not mrkdwn: the previous version's note is escaped, as it was then.
        assert any("Opted out of &lt;marketing&gt; campaigns." in all_text(p) for p in posts[1:])
        alerts = after.slack.messages("C0ALERTS")
        assert len(alerts) == 1 and "Quality rating is RED" in all_text(alerts[0])


async def test_a_row_that_fits_no_class_is_given_up_and_its_thread_goes_on(aiohttp_client: Any,
                                                                          db_url: str) -> None:
    async with bridges(aiohttp_client, db_url) as build:
        b = await build(with_slack=False)
        await b.webhook(inbound_text("wamid.bad.1", "Still delivered", ts=now_ts(-60)))

        async def stored() -> bool:
            return await b.count(Message, Message.wamid == "wamid.bad.1") == 1

        await eventually(stored)
        msg = await b.one(Message, Message.wamid == "wamid.bad.1")
        async with _sessions(b) as s, s.begin():
            conv = await s.get(Conversation, msg.conversation_id)
            assert conv is not None
            # Ahead of the message in its thread, a note that names no text.
            await owe_raw(s, kind="note", payload={"conversation_id": conv.id}, dedupe_key="bad-note",
                          thread_key=f"conv:{conv.id}", conversation_id=conv.id, order_ts=msg.wa_timestamp.replace(
                              year=msg.wa_timestamp.year - 1))
        after = await build(with_slack=True)

        async def delivered() -> bool:
            return await after.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

        await eventually(delivered, timeout=30)
        bad = await after.one(SlackOutbox, SlackOutbox.dedupe_key == "bad-note")
        assert bad.last_error is not None and "note payload" in bad.last_error
        parent = (await eventually(lambda: after.parents()))[0]
        assert "Still delivered" in all_text(thread_posts(after, parent)[0])


@dataclass(frozen=True)
class Progress(OutboxKind):
    """A kind another component adds: its own class, its own thread."""

    KIND: ClassVar[str] = "test_progress"
    name: str

    @property
    def thread_key(self) -> str:
        return f"test:{self.name}"


async def test_another_component_adds_a_kind_by_its_class(aiohttp_client: Any, db_url: str) -> None:
    seen: list[Progress] = []

    async def deliver(ctx: ItemContext, item: Progress) -> None:
        seen.append(item)
        await ctx.post(SLACK_CHANNEL, Post(text=f"Campaign {item.name}: 3/10 sent"))

    async with bridges(aiohttp_client, db_url) as build:
        b = await build(outbox={"kinds": kinds(handle(Progress, deliver))})
        async with _sessions(b) as s, s.begin():
            assert await enqueue(s, Progress("Diwali offer"), dedupe_key="progress:1")
            assert not await enqueue(s, Progress("Diwali offer"), dedupe_key="progress:1")  # once per key
        posted = await eventually(lambda: b.parents())
        assert posted[0]["text"] == "Campaign Diwali offer: 3/10 sent"
        assert seen == [Progress("Diwali offer")]
        assert "message" in b.app[OUTBOX].kinds  # the built-in kinds stay
        row = await b.one(SlackOutbox, SlackOutbox.dedupe_key == "progress:1")
        assert (row.kind, row.thread_key, row.payload) == ("test_progress", "test:Diwali offer",
                                                            {"name": "Diwali offer"})


def test_a_kind_is_registered_once() -> None:
    async def a(ctx: ItemContext, item: Note) -> None: ...

    with pytest.raises(ValueError, match="registered twice"):
        kinds(handle(Note, a), handle(Note, a))


def _sessions(b: Any) -> Any:
    return b.app[appkeys.SESSIONS]()
