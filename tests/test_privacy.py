"""A customer's data on request: the export holds everything about them and nothing about anyone else; after
an erasure no table holds their number, ids, username or words, their Slack thread is redacted, campaigns
keep their counts and never reach them again, and a later message starts a fresh contact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import MetaData, func, select

from bot.core.config import ConfigError
from bot.core.identity_hash import salt_of
from bot.handlers import appkeys
from bot.ops.privacy import PersonNotFound, export_person, forget, one_client, resume
from bot.ops.privacy_export import render_html, render_json
from bot.ops.slack_redaction import ERASURE_PRIORITY, redacted_text
from bot.slack.pacer import URGENT_BELOW, Pacer
from scheduler.campaigns.queue import RecipientQueue
from storage.models import (
    AudienceMember,
    Campaign,
    CampaignRecipient,
    CampaignRun,
    Channel,
    Contact,
    Conversation,
    Erasure,
    Message,
    MessageStatus,
    WebhookLog,
    utcnow,
)
from tests.harness import STAFF, Bridge, BridgeFactory, eventually, now_ts, thread_with
from tests.helpers import SLACK_CHANNEL, envelope, metadata, status

RAVI, RAVI_BSUID, RAVI_USERNAME = "919812345678", "US.13491208655302741918", "ravi_k"
PRIYA = "919800000001"
RAVI_WORDS = ("my address is 12 Baker Street", "passport scan attached", "we will check your address")
PRIYA_WORDS = "hello from priya"
PRIVACY = {"privacy": {"salt": "test-privacy-salt-0123456789"}}


def _inbound(wamid: str, body: dict[str, Any], *, wa_id: str, name: str, user_id: str | None = None,
             username: str | None = None) -> dict[str, Any]:
    profile: dict[str, Any] = {"name": name}
    contact: dict[str, Any] = {"profile": profile, "wa_id": wa_id}
    msg: dict[str, Any] = {"from": wa_id, "id": wamid, "timestamp": str(now_ts(-60)), **body}
    if user_id:
        contact["user_id"], msg["from_user_id"] = user_id, user_id
    if username:
        profile["username"] = username
    return envelope("messages", {"messaging_product": "whatsapp", "metadata": metadata(), "contacts": [contact],
                                 "messages": [msg]})


async def _two_customers(b: Bridge) -> dict[str, Any]:
    """Ravi (text, an image, a staff reply and its status) and Priya; both in one sent campaign."""
    photo = b"\xff\xd8\xff\xe0" + b"jpeg" * 50
    media_id = b.graph.add_media(photo, "image/jpeg")
    await b.webhook(_inbound("wamid.R1", {"type": "text", "text": {"body": RAVI_WORDS[0]}}, wa_id=RAVI,
                             name="Ravi", user_id=RAVI_BSUID, username=RAVI_USERNAME))
    await b.webhook(_inbound("wamid.R2", {"type": "image", "image": {"id": media_id, "mime_type": "image/jpeg",
                                                                      "caption": RAVI_WORDS[1]}},
                             wa_id=RAVI, name="Ravi", user_id=RAVI_BSUID, username=RAVI_USERNAME))
    parent, _ = await thread_with(b, 3)  # the text, the caption and the file
    event = b.slack.user_message(SLACK_CHANNEL, STAFF, RAVI_WORDS[2], thread_ts=parent["ts"])
    assert await b.event(event, event_id="EvRAVI") == 200
    reply = await eventually(lambda: b.count(Message, Message.source == "slack"))
    assert reply == 1
    sent = await b.one(Message, Message.source == "slack")
    await b.webhook(status(sent.wamid, "delivered", recipient=RAVI, ts=now_ts()))
    await eventually(lambda: b.count(MessageStatus))
    await b.webhook(_inbound("wamid.P1", {"type": "text", "text": {"body": PRIYA_WORDS}}, wa_id=PRIYA,
                             name="Priya"))
    await eventually(lambda: len(b.parents()) == 2)
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        channel_id = await s.scalar(select(Channel.id))
        campaign = Campaign(name="Diwali", channel_id=channel_id, template_name="offer", language="en",
                            category="MARKETING", schedule_kind="now", status="completed")
        s.add(campaign)
        await s.flush()
        run = CampaignRun(campaign_id=campaign.id, scheduled_for=utcnow(), status="done")
        s.add(run)
        await s.flush()
        for wa_id, name, state in ((RAVI, "Ravi", "read"), (PRIYA, "Priya", "delivered")):
            s.add(AudienceMember(campaign_id=campaign.id, wa_id=wa_id, fields={"name": name}))
            s.add(CampaignRecipient(run_id=run.id, wa_id=wa_id, fields={"name": name}, status=state,
                                    wamid=f"wamid.C{wa_id}", attempts=1))
    return {"parent": parent, "campaign_id": campaign.id, "run_id": run.id, "channel_id": channel_id}


async def _scan(b: Bridge) -> str:
    """Every value of every column of every table, as one text."""
    engine = b.app[appkeys.DEPS].sessions.kw["bind"]
    meta = MetaData()
    async with engine.connect() as conn:
        await conn.run_sync(meta.reflect)
        parts = []
        for table in meta.sorted_tables:
            for row in (await conn.execute(table.select())).all():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("utf-8", "replace")
                    parts.append(json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str)
                                 else value)
    return "\n".join(parts)


async def _counts(b: Bridge, run_id: int) -> dict[str, int]:
    async with b.app[appkeys.SESSIONS]() as s:
        rows = await s.execute(select(CampaignRecipient.status, func.count()).where(CampaignRecipient.run_id == run_id)
                               .group_by(CampaignRecipient.status))
        return dict(rows.tuples().all())


async def test_export_holds_the_person_and_no_one_else(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    await _two_customers(b)
    deps = b.app[appkeys.DEPS]
    doc = await export_person(deps.sessions, deps.settings, "@" + RAVI_USERNAME, exported_by="UMANAGER")
    body = render_json(doc)
    for needle in (RAVI, RAVI_BSUID, RAVI_USERNAME, *RAVI_WORDS):
        assert needle in body
    assert PRIYA not in body and PRIYA_WORDS not in body and "Priya" not in body
    assert [m["text"] for m in doc["messages"] if m["direction"] == "inbound"] == list(RAVI_WORDS[:2])
    assert {i["kind"] for i in doc["identities"]} >= {"phone", "user_id", "username"}
    assert len(doc["media"]) == 1 and doc["media"][0]["mime_type"] == "image/jpeg"
    assert [s["status"] for s in doc["statuses"]] == ["delivered"]
    assert [(c["campaign"], c["status"]) for c in doc["campaign_sends"]] == [("Diwali", "read")]
    assert [a["campaign"] for a in doc["audiences"]] == ["Diwali"]
    assert doc["opt_outs"][0]["opted_out"] is False
    page = render_html(doc)
    assert RAVI_WORDS[0] in page and PRIYA not in page and "<script" not in page
    for query in ("+91 98123 45678", "Ravi_K", RAVI_BSUID):
        same = await export_person(deps.sessions, deps.settings, query)
        assert same["messages"] == doc["messages"], query
    with pytest.raises(PersonNotFound):
        await export_person(deps.sessions, deps.settings, "+44 7700 900123")


async def test_forget_erases_the_person_everywhere_and_keeps_them_opted_out(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    seeded = await _two_customers(b)
    deps = b.app[appkeys.DEPS]
    before = await _counts(b, seeded["run_id"])
    assert RAVI in await _scan(b)  # the scan sees what it looks for

    # A delivery naming them may still be queued: the erasure waits for it to be applied, then erases that too.
    await b.webhook(status(f"wamid.C{RAVI}", "read", recipient=RAVI, ts=now_ts()))
    outcome = await forget(deps.sessions, deps.settings, one_client(deps.slack), RAVI_BSUID, requested_by="UMANAGER")

    assert outcome.state == "done" and outcome.counts["messages"] == 3 and outcome.counts["contacts"] == 1
    found = await _scan(b)
    for needle in (RAVI, RAVI_BSUID, RAVI_USERNAME, *RAVI_WORDS, "Ravi"):
        assert needle not in found, needle
    assert PRIYA in found and PRIYA_WORDS in found
    assert await _counts(b, seeded["run_id"]) == before  # campaign counters unchanged

    # Slack: every post of the thread says so, the image is gone, the teammate's own reply is listed.
    erased = redacted_text(datetime.now(UTC).astimezone(ZoneInfo("Asia/Kolkata")))
    thread = b.slack.thread(SLACK_CHANNEL, seeded["parent"]["ts"])
    bot_posts = [m for m in thread if m.get("bot_id")]
    assert bot_posts and all(m["text"] == erased and not m.get("blocks") for m in bot_posts)
    assert all(f.get("mode") == "tombstone" for m in thread for f in m.get("files") or [])
    assert b.slack.deleted_files and not b.slack.deleted_files & set(b.slack.files)
    assert [r["error"] for r in outcome.slack_refused] == ["cant_update_message"]
    priya_parent = next(p for p in b.parents() if p["ts"] != seeded["parent"]["ts"])
    assert PRIYA_WORDS in json.dumps(priya_parent)

    # The audit record names no one; a second run finds nothing to erase.
    async with deps.sessions() as s:
        record = (await s.scalars(select(Erasure))).one()
    assert record.requested_by == "UMANAGER" and len(record.identity_hashes) == 3 and record.finished_at
    with pytest.raises(PersonNotFound):
        await forget(deps.sessions, deps.settings, one_client(deps.slack), RAVI, requested_by="UMANAGER")

    # A later message starts a fresh contact and thread; campaigns still leave them out.
    await b.webhook(_inbound("wamid.R9", {"type": "text", "text": {"body": "hi again"}}, wa_id=RAVI, name="Ravi"))
    await eventually(lambda: len(b.parents()) == 3)
    fresh = await b.one(Contact, Contact.wa_id == RAVI)
    assert fresh.opted_out and "erased on request" in (fresh.opt_out_reason or "")
    assert fresh.id not in (await b.one(Erasure, Erasure.id == record.id)).contact_ids
    assert await b.count(Conversation, Conversation.contact_id == fresh.id) == 1
    async with deps.sessions() as s, s.begin():
        run = CampaignRun(campaign_id=seeded["campaign_id"], scheduled_for=utcnow(), status="running")
        s.add(run)
        await s.flush()
        s.add_all([CampaignRecipient(run_id=run.id, wa_id=w, fields={}, status="pending", attempts=0)
                   for w in (RAVI, PRIYA)])
    queue = RecipientQueue(deps.sessions, 30.0, salt=salt_of(deps.settings))
    claimed = await queue.claim(run.id, 10, marketing=True)
    assert [c.wa_id for c in claimed] == [PRIYA]
    assert (await b.one(CampaignRecipient, CampaignRecipient.run_id == run.id,
                        CampaignRecipient.wa_id == RAVI)).status == "skipped"

    # START opts them back in: the next campaign may reach them.
    await b.webhook(_inbound("wamid.R10", {"type": "text", "text": {"body": "START"}}, wa_id=RAVI, name="Ravi"))

    async def opted_in() -> bool:
        return not (await b.one(Contact, Contact.wa_id == RAVI)).opted_out

    await eventually(opted_in)
    async with deps.sessions() as s, s.begin():
        later = CampaignRun(campaign_id=seeded["campaign_id"], scheduled_for=utcnow(), status="running")
        s.add(later)
        await s.flush()
        s.add(CampaignRecipient(run_id=later.id, wa_id=RAVI, fields={}, status="pending", attempts=0))
    assert [c.wa_id for c in await queue.claim(later.id, 10, marketing=True)] == [RAVI]


class _SeenPacer(Pacer):
    """The process's pacer, noting who asked it for a slot and which buckets were paused."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, int, str]] = []
        self.paused: list[tuple[str, float, str]] = []

    async def acquire(self, method: str, channel: str | None, priority: int = 0, workspace: str = "") -> None:
        self.asked.append((method, priority, workspace))
        await super().acquire(method, channel, priority, workspace)

    async def pause(self, method: str, channel: str | None, seconds: float, workspace: str = "") -> None:
        self.paused.append((method, seconds, workspace))
        await super().pause(method, channel, seconds, workspace)


async def test_an_erasure_waits_its_turn_in_the_pacer_the_outbox_uses(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    seeded = await _two_customers(b)
    deps = b.app[appkeys.DEPS]
    assert deps.pacer is b.app[appkeys.PACER]  # the outbox's, unless a test hands the outbox its own
    pacer = _SeenPacer()
    b.slack.rate_limit("chat.update", times=1, retry_after=1)
    before = len(b.slack.calls)
    outcome = await forget(deps.sessions, deps.settings, one_client(deps.slack), RAVI_BSUID, requested_by="UMANAGER",
                           pacer=pacer)
    assert outcome.state == "done"
    made = [c.method for c in b.slack.calls[before:]
            if c.method in ("conversations.replies", "chat.update", "files.delete")]
    # Every call of the erasure asked for its slot first (the refused one twice), behind live work.
    assert sorted(m for m, _, _ in pacer.asked) == sorted(made)
    assert {(p, w) for _, p, w in pacer.asked} == {(ERASURE_PRIORITY, "default")}
    assert ERASURE_PRIORITY >= URGENT_BELOW
    # Slack's 429 paused chat.update in that pacer: the outbox's own edits wait it out too.
    assert pacer.paused == [("chat.update", 1.0, "default")]
    thread = b.slack.thread(SLACK_CHANNEL, seeded["parent"]["ts"])
    erased = redacted_text(datetime.now(UTC).astimezone(ZoneInfo("Asia/Kolkata")))
    assert all(m["text"] == erased for m in thread if m.get("bot_id"))


async def test_forget_needs_a_salt_and_says_which_key(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    deps = b.app[appkeys.DEPS]
    await b.webhook(_inbound("wamid.R1", {"type": "text", "text": {"body": "hi"}}, wa_id=RAVI, name="Ravi"))
    await eventually(lambda: b.count(Message))
    with pytest.raises(ConfigError) as raised:
        await forget(deps.sessions, deps.settings, one_client(deps.slack), RAVI, requested_by="UMANAGER")
    assert raised.value.key == "privacy.salt" and "\n" not in str(raised.value)
    assert await b.count(Contact, Contact.wa_id == RAVI) == 1


async def test_an_erasure_stopped_part_way_is_resumed(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    seeded = await _two_customers(b)
    deps = b.app[appkeys.DEPS]
    outcome = await forget(deps.sessions, deps.settings, None, RAVI, requested_by="cli:ops")  # no Slack yet
    assert outcome.state == "redacting" and RAVI not in await _scan(b)
    young = await resume(deps.sessions, deps.settings, one_client(deps.slack), idle=timedelta(minutes=30))
    assert young == []  # left to the process that took the request
    other = await resume(deps.sessions, deps.settings, one_client(deps.slack, team="T0OTHER"))
    assert other[0].state == "redacting"  # no client of the thread's own workspace: it waits
    thread = b.slack.thread(SLACK_CHANNEL, seeded["parent"]["ts"])
    assert not any(m.get("text", "").startswith("Erased") for m in thread)
    for error in ("fatal_error", "invalid_auth"):  # Slack down, or a token to fix: left for the next pass
        b.slack.fail_next("conversations.replies", error)
        first = await resume(deps.sessions, deps.settings, one_client(deps.slack))
        assert first[0].state == "redacting" and first[0].slack_refused == [], error
    again = await resume(deps.sessions, deps.settings, deps.slack_for)  # what the retention pass uses
    assert again[0].state == "done"
    assert all(m["text"].startswith("Erased on request on ")
               for m in b.slack.thread(SLACK_CHANNEL, seeded["parent"]["ts"]) if m.get("bot_id"))
    assert await resume(deps.sessions, deps.settings, one_client(deps.slack)) == []


async def test_erasure_in_one_workspace_leaves_the_other_workspaces_conversation(db_url: str) -> None:
    from storage.db import make_engine, make_sessionmaker, migrate
    from storage.erasure import workspace_channels
    from tests.helpers import make_settings

    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    settings = make_settings(db_url, **PRIVACY)
    try:
        async with sessions() as s, s.begin():
            ours = Channel(name="a", phone_number_id="1", waba_id="w", mode="coexistence", mps=5, slack_team="T0A")
            theirs = Channel(name="b", phone_number_id="2", waba_id="w", mode="coexistence", mps=5, slack_team="T0B")
            contact = Contact(wa_id=RAVI)
            s.add_all([ours, theirs, contact])
            await s.flush()
            for channel, words in ((ours, "said to A"), (theirs, "said to B")):
                conv = Conversation(channel_id=channel.id, contact_id=contact.id, slack_team=channel.slack_team)
                s.add(conv)
                await s.flush()
                s.add(Message(conversation_id=conv.id, direction="inbound", source="customer", type="text",
                              text=words, wa_timestamp=utcnow()))
                body = json.dumps({"metadata": {"phone_number_id": channel.phone_number_id}, "from": RAVI,
                                   "text": words})
                s.add(WebhookLog(raw_body=body.encode(), event_type="message", processed_at=utcnow()))
            s.add(MessageStatus(wamid="wamid.B", status="read", wa_timestamp=utcnow(), recipient_id=RAVI))
        async with sessions() as s:
            team_a, team_b = await workspace_channels(s, "T0A"), await workspace_channels(s, "T0B")
        doc = await export_person(sessions, settings, RAVI, channel_ids=team_b)
        assert [m["text"] for m in doc["messages"]] == ["said to B"]
        outcome = await forget(sessions, settings, None, RAVI, requested_by="UA", channel_ids=team_a)
        assert outcome.counts["messages"] == 1 and "contacts" not in outcome.counts
        async with sessions() as s:
            assert (await s.scalars(select(Message.text))).all() == ["said to B"]
            assert (await s.scalars(select(Contact.wa_id))).all() == [RAVI]  # still B's customer
            logs = (await s.scalars(select(WebhookLog.raw_body))).all()
            assert len(logs) == 1 and b"said to B" in logs[0]  # B's delivery is B's
            assert (await s.scalars(select(MessageStatus.wamid))).all() == ["wamid.B"]
    finally:
        await engine.dispose()


async def test_a_contact_made_from_an_erased_user_id_starts_opted_out(db_url: str) -> None:
    from bot.core.identity_hash import wa_id_hash
    from storage.db import make_engine, make_sessionmaker, migrate
    from storage.identities import Identity, resolve_contact
    from storage.models import SuppressedIdentity

    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    salt = b"unit-salt"
    try:
        async with sessions() as s, s.begin():
            s.add(SuppressedIdentity(hash=wa_id_hash(salt, RAVI_BSUID)))
        async with sessions() as s, s.begin():
            back = await resolve_contact(s, Identity(user_id=RAVI_BSUID), "Ravi", salt=salt)
            other = await resolve_contact(s, Identity(phone=PRIYA), "Priya", salt=salt)
            unsalted = await resolve_contact(s, Identity(user_id="US.1"), "Someone")
        assert back.opted_out and not other.opted_out and not unsalted.opted_out
    finally:
        await engine.dispose()


async def test_deliveries_still_queued_are_waited_for_not_deleted(db_url: str) -> None:
    from storage.db import make_engine, make_sessionmaker, migrate
    from storage.erasure import erase_logs

    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            for body, done in ((RAVI, True), (PRIYA, True), (RAVI, False)):
                s.add(WebhookLog(raw_body=json.dumps({"from": body}).encode(), event_type="message",
                                 processed_at=utcnow() if done else None))
        async with sessions() as s, s.begin():
            scan = await erase_logs(s, [RAVI], 0, 2)
            rest = await erase_logs(s, [RAVI], scan.last_id, 2)
        assert (scan.deleted, scan.first_waiting) == (1, None)
        assert rest.deleted == 0 and rest.first_waiting == rest.last_id == 3
        async with sessions() as s:
            left = (await s.execute(select(WebhookLog.id, WebhookLog.processed_at).order_by(WebhookLog.id))).all()
        assert [(r.id, r.processed_at is None) for r in left] == [(2, False), (3, True)]
    finally:
        await engine.dispose()


async def test_a_group_participant_is_erased_from_the_group_and_nothing_else(make_bridge: BridgeFactory) -> None:
    from storage.models import WhatsAppGroup
    from tests.test_real_traffic import fixture, settled

    b = await make_bridge(settings_extra=PRIVACY)
    for name in ("group_create", "group_message", "group_message_other"):
        await b.webhook(fixture(name))
        await settled(b)
    deps = b.app[appkeys.DEPS]
    doc = await export_person(deps.sessions, deps.settings, "+91 98123 45678")
    assert [m["text"] for g in doc["groups"] for m in g["messages"]] == ["Is the Saturday visit still on?"]
    assert "919876543210" not in render_json(doc)  # the other participant is not theirs to see

    outcome = await forget(deps.sessions, deps.settings, deps.slack_for, RAVI, requested_by="UMANAGER")
    assert outcome.state == "done" and outcome.counts["group_messages"] == 1
    assert outcome.counts["group_memberships"] == 1
    found = await _scan(b)
    assert RAVI not in found and "Saturday visit still on" not in found and "Ravi Kumar" not in found
    assert "919876543210" in found  # the other participant and their message stay
    group = await b.one(WhatsAppGroup)
    assert [p["wa_id"] for p in group.participants] == ["919876543210"]
    posts = b.slack.thread(SLACK_CHANNEL, b.parents()[0]["ts"])
    texts = json.dumps(posts)
    assert "Saturday visit still on" not in texts and "Erased on request on " in texts
    assert await b.count(Message) == 1
