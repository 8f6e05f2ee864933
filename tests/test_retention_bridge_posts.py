"""Retention and the posts in a thread that are not the customer's own message: the bridge's copies of staff
replies, phone-app echoes, reactions told in words and the files it uploaded are redacted (they are the bridge's
posts, recorded with their message, so this holds after the outbox's record aged out); what staff typed in Slack
is theirs and stays. Media past `retention.media_days` loses its Slack file, once, while the post's words stay."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from bot.core.config import RetentionSettings
from bot.core.origin import Source
from bot.handlers import appkeys
from bot.ops.retention_redaction import REDACTED
from bot.ops.retention_worker import RetentionWorker
from storage import redactions
from storage.models import Message, SlackOutbox, SlackRedaction, utcnow
from storage.redactions import bridge_posts, posts_of
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, all_text, eventually, now_ts, thread_with
from tests.helpers import SLACK_CHANNEL, echo_text, envelope, inbound_text, metadata

PHOTO = b"\xff\xd8\xff\xe0" + b"jpeg-bytes" * 100


def _image(b: Bridge, wamid: str, caption: str, ts: int) -> dict[str, Any]:
    media_id = b.graph.add_media(PHOTO, "image/jpeg")
    return envelope("messages", {
        "messaging_product": "whatsapp", "metadata": metadata(),
        "contacts": [{"profile": {"name": "Ravi"}, "wa_id": WA_ID}],
        "messages": [{"from": WA_ID, "id": wamid, "timestamp": str(ts), "type": "image",
                      "image": {"id": media_id, "mime_type": "image/jpeg", "sha256": "x", "caption": caption}}]})


async def _staff(b: Bridge, thread_ts: str, text: str, event_id: str) -> dict[str, Any]:
    event = b.slack.user_message(SLACK_CHANNEL, STAFF, text, thread_ts=thread_ts)
    assert await b.event(event, event_id=event_id) == 200
    return event


def _post(b: Bridge, thread_ts: str, ts: str) -> dict[str, Any]:
    return next(m for m in b.slack.thread(SLACK_CHANNEL, thread_ts) if m["ts"] == ts)


async def _age(b: Bridge, days: int, *where: Any) -> None:
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(update(Message).where(*where).values(wa_timestamp=utcnow() - timedelta(days=days)))


async def _settled(b: Bridge) -> list[tuple[str, bool, str | None]]:
    """Every redaction owed, once all are done (ts, files only, outcome)."""
    async def done() -> list[tuple[str, bool, str | None]] | None:
        async with b.app[appkeys.SESSIONS]() as s:
            if await redactions.pending(s):
                return None
            r = SlackRedaction
            return [(t, bool(f), o) for t, f, o in (await s.execute(
                select(r.ts, r.files_only, r.outcome).order_by(r.id))).tuples().all()]
    return await eventually(done)


async def test_the_bridges_posts_in_a_thread_are_redacted_and_staffs_own_are_left(make_bridge: BridgeFactory
                                                                                   ) -> None:
    b = await make_bridge()
    await b.webhook(inbound_text("wamid.IN1", "my address is 12 Baker Street", ts=now_ts(-600)))
    parent, _ = await thread_with(b, 1)
    thread_ts = str(parent["ts"])
    await b.webhook(_image(b, "wamid.IMG", "my receipt", now_ts(-500)))
    await b.webhook(echo_text("wamid.ECHO", "Noted, Baker Street it is", ts=now_ts(-400)))
    # Mentions change on the way to WhatsApp: the thread gets the bridge's copy of what the customer read.
    await _staff(b, thread_ts, "<!here> we deliver to Baker Street tomorrow", "EvCOPY")
    own = await _staff(b, thread_ts, "see you at Baker Street", "EvSAME")
    note = await _staff(b, thread_ts, "note: he lives at Baker Street", "EvNOTE")
    sessions = b.app[appkeys.SESSIONS]

    async def recorded() -> list[Message] | None:
        async with sessions() as s:
            rows = list((await s.scalars(select(Message).order_by(Message.id))).all())
        copy = [m for m in rows if m.source == "slack" and m.slack_posts and m.slack_posts["posts"]]
        img = [m for m in rows if m.type == "image" and m.slack_posts and m.slack_posts["files"]]
        echoed = [m for m in rows if m.wamid == "wamid.ECHO" and m.slack_ts]
        return rows if len(rows) == 6 and copy and img and echoed else None

    rows = await eventually(recorded)
    copy_ts = next(m.slack_posts["posts"][0] for m in rows if m.source == "slack" and m.slack_posts)
    assert copy_ts not in (own["ts"], note["ts"]) and _post(b, thread_ts, copy_ts).get("bot_id")
    file_id = next(m.slack_posts["files"][0] for m in rows if m.type == "image")
    assert file_id in b.slack.files
    echo_ts = next(m.slack_ts for m in rows if m.wamid == "wamid.ECHO")
    assert "Baker Street" in all_text(_post(b, thread_ts, echo_ts))

    await b.webhook(inbound_text("wamid.NEW", "what are the fees?", ts=now_ts(-60)))
    await eventually(lambda: "what are the fees?" in json.dumps(b.slack.thread(SLACK_CHANNEL, thread_ts)))
    async with sessions() as s, s.begin():  # the outbox's records aged out long before the messages do
        await s.execute(delete(SlackOutbox))
    await _age(b, 400, Message.wamid.is_distinct_from("wamid.NEW"))
    deleted = await RetentionWorker(sessions, RetentionSettings(messages_days=365)).prune_once()
    assert deleted["messages"] == 6
    outcomes = await _settled(b)
    # The parent (refreshed), the image's post, the echo and the bridge's copy: nothing for staff's own posts.
    assert len(outcomes) == 4 and all(not files_only for _, files_only, _ in outcomes)
    assert sorted(str(o) for *_, o in outcomes) == ["parent refreshed", "redacted", "redacted", "redacted"]

    assert _post(b, thread_ts, copy_ts)["text"] == REDACTED
    assert _post(b, thread_ts, echo_ts)["text"] == REDACTED
    assert file_id not in b.slack.files and file_id in b.slack.deleted_files
    # Staff's own messages are theirs (Slack lets an app edit only its own): no call was made for them.
    assert _post(b, thread_ts, own["ts"])["text"] == "see you at Baker Street"
    assert _post(b, thread_ts, note["ts"])["text"] == "note: he lives at Baker Street"
    updated = {c.args.get("ts") for c in b.slack.calls_to("chat.update")}
    assert own["ts"] not in updated and note["ts"] not in updated
    shown = json.dumps(b.slack.thread(SLACK_CHANNEL, thread_ts))
    assert "what are the fees?" in shown  # younger than a year: kept
    await eventually(lambda: "12 Baker Street" not in json.dumps(b.slack.thread(SLACK_CHANNEL, thread_ts)[0]))


async def test_media_past_its_age_loses_its_slack_file_once_and_its_post_later(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    await b.webhook(inbound_text("wamid.IN1", "hello", ts=now_ts(-600)))
    parent, _ = await thread_with(b, 1)
    thread_ts = str(parent["ts"])
    await b.webhook(_image(b, "wamid.IMG", "my receipt", now_ts(-500)))
    sessions = b.app[appkeys.SESSIONS]

    async def uploaded() -> Message | None:
        async with sessions() as s:
            msg = await s.scalar(select(Message).where(Message.wamid == "wamid.IMG"))
        return msg if msg is not None and msg.slack_posts and msg.slack_posts["files"] else None

    msg = await eventually(uploaded)
    file_id, post_ts = msg.slack_posts["files"][0], msg.slack_ts
    await _age(b, 100, Message.wamid == "wamid.IMG")
    settings = RetentionSettings(messages_days=365, media_days=90)
    assert (await RetentionWorker(sessions, settings).prune_once()).get("media") == 1
    assert (await RetentionWorker(sessions, settings).prune_once())["media"] == 0  # each file is owed once
    assert await _settled(b) == [(file_id, True, "files deleted")]
    assert file_id not in b.slack.files
    assert "my receipt" in all_text(_post(b, thread_ts, post_ts))  # the words stay until the message ages out
    metrics = b.app[appkeys.METRICS]
    assert await eventually(lambda: metrics.registry.get_sample_value(
        "wabridge_retention_rows_total", {"table": "slack_files"}) == 1)

    await _age(b, 400, Message.wamid == "wamid.IMG")
    assert (await RetentionWorker(sessions, settings).prune_once())["messages"] == 1
    outcomes = await _settled(b)
    assert outcomes[1:] == [(post_ts, False, "redacted")]
    assert _post(b, thread_ts, post_ts)["text"] == REDACTED
    assert len(b.slack.calls_to("files.delete")) == 1  # the file was deleted once, not again with its post


def test_what_the_bridge_posted_is_read_from_an_items_parts_in_order() -> None:
    parts = {str(n): f"1.{n:06d}" for n in range(12)} | {
        "parent": "1.000000", "parent_name": "abc", "file": "F0PHOTO", "reaction:C0:1.000001:eyes": "eyes"}
    made = bridge_posts(parts)
    assert made == {"posts": [f"1.{n:06d}" for n in range(12)], "files": ["F0PHOTO"]}  # "10" after "9"
    # A line in place of media (no file was uploaded) is a post of its own.
    assert bridge_posts({"0": "1.1", "file": "1.2"}) == {"posts": ["1.1", "1.2"], "files": []}
    # A staff member's own message is theirs; the bridge's copy of it is owed.
    assert posts_of(Source.SLACK, "9.000001", {"posts": ["9.000002"], "files": []}, None) == (["9.000002"], [])
    assert posts_of(Source.SLACK, "9.000001", None, None) == ([], [])
    # A customer's message: its first post, then the rest; from the outbox item when nothing was recorded.
    assert posts_of(Source.CUSTOMER, "2.1", None, {"parts": {"0": "2.1", "1": "2.2", "file": "F0X"}}) == (
        ["2.1", "2.2"], ["F0X"])
    assert posts_of(Source.PHONE_APP, "3.1", None, None) == (["3.1"], [])
    # A reaction told in words has no slack_ts of its own: its post is in the record.
    assert posts_of(Source.CUSTOMER, None, {"posts": ["4.1"], "files": []}, None) == (["4.1"], [])
