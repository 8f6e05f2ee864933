"""Erasure covers every post the bridge made about the person, whatever made it: in their own thread the
bridge's copies of staff replies, phone-app echoes and uploaded files are redacted (staff's own replies are
listed for a person to remove); in a WhatsApp group's thread each post of their messages and each file the
bridge uploaded for them goes, found from what each message recorded after its outbox record aged out."""

from __future__ import annotations

import copy
import json
from typing import Any

from sqlalchemy import delete, select

from bot.handlers import appkeys
from bot.ops.privacy import forget, one_client
from storage.models import Message, SlackOutbox
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, eventually, now_ts, thread_with
from tests.helpers import SLACK_CHANNEL, echo_text, envelope, inbound_text, metadata
from tests.test_real_traffic import fixture, settled

PRIVACY = {"privacy": {"salt": "test-privacy-salt-0123456789"}}
PHOTO = b"\xff\xd8\xff\xe0" + b"jpeg-bytes" * 100


async def _forget_outbox(b: Bridge) -> None:
    """The Slack outbox's records age out long before the messages do (retention.days)."""
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(delete(SlackOutbox).where(SlackOutbox.done_at.is_not(None)))


async def test_erasure_redacts_echoes_copies_of_staff_replies_and_files_in_their_thread(
        make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    await b.webhook(inbound_text("wamid.IN1", "my address is 12 Baker Street", ts=now_ts(-600)))
    parent, _ = await thread_with(b, 1)
    thread_ts = str(parent["ts"])
    media_id = b.graph.add_media(PHOTO, "image/jpeg")
    await b.webhook(envelope("messages", {
        "messaging_product": "whatsapp", "metadata": metadata(),
        "contacts": [{"profile": {"name": "Ravi"}, "wa_id": WA_ID}],
        "messages": [{"from": WA_ID, "id": "wamid.IMG", "timestamp": str(now_ts(-500)), "type": "image",
                      "image": {"id": media_id, "mime_type": "image/jpeg", "sha256": "x", "caption": "my passport"}}]}))
    await b.webhook(echo_text("wamid.ECHO", "Baker Street noted", ts=now_ts(-400)))
    copied = b.slack.user_message(SLACK_CHANNEL, STAFF, "<!here> Baker Street delivery tomorrow", thread_ts=thread_ts)
    assert await b.event(copied, event_id="EvCOPY") == 200
    await settled(b)
    thread = b.slack.thread(SLACK_CHANNEL, thread_ts)
    uploaded = [f["id"] for m in thread for f in m.get("files") or []]
    bot_posts = [m["ts"] for m in thread if m.get("bot_id")]
    assert len(uploaded) == 1 and len(bot_posts) == 5  # parent, caption, file, echo, the reply's copy
    await _forget_outbox(b)

    deps = b.app[appkeys.DEPS]
    outcome = await forget(deps.sessions, deps.settings, one_client(deps.slack), WA_ID, requested_by="UMANAGER")
    assert outcome.state == "done"
    thread = b.slack.thread(SLACK_CHANNEL, thread_ts)
    # What the bridge's posts say (the author name of a post made under the customer's name is Slack's to keep).
    shown = json.dumps([[m.get("text"), m.get("blocks")] for m in thread if m.get("bot_id")])
    for words in ("Baker Street", "my passport", "Ravi"):
        assert words not in shown, words
    assert uploaded[0] in b.slack.deleted_files and uploaded[0] not in b.slack.files
    # The staff member's own message is theirs: Slack refuses, and the outcome says which for a person to remove.
    assert [(r["ts"], r["error"]) for r in outcome.slack_refused] == [(copied["ts"], "cant_update_message")]


def _group_image(media_id: str) -> dict[str, Any]:
    payload = copy.deepcopy(fixture("group_message"))
    msg = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    msg.pop("text")
    msg.update(id="wamid.GROUPIMG", type="image",
               image={"id": media_id, "mime_type": "image/jpeg", "sha256": "x", "caption": "my passport photo"})
    return payload


async def test_erasure_deletes_their_group_posts_every_part_and_the_files_uploaded_for_them(
        make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    for payload in (fixture("group_create"), fixture("group_message_other"),
                    _group_image(b.graph.add_media(PHOTO, "image/jpeg"))):
        await b.webhook(payload)
        await settled(b)
    group_ts = b.parents()[0]["ts"]
    async with b.app[appkeys.SESSIONS]() as s:
        theirs = await s.scalar(select(Message).where(Message.wamid == "wamid.GROUPIMG"))
    assert theirs is not None and theirs.slack_posts is not None
    [file_id] = theirs.slack_posts["files"]
    assert file_id in b.slack.files
    await _forget_outbox(b)

    deps = b.app[appkeys.DEPS]
    outcome = await forget(deps.sessions, deps.settings, deps.slack_for, WA_ID, requested_by="UMANAGER")
    assert outcome.state == "done" and outcome.counts["group_messages"] == 1 and outcome.slack_refused == []
    assert file_id in b.slack.deleted_files and file_id not in b.slack.files

    def shown() -> str:  # what the posts say (the author name of a post made under a name is Slack's to keep)
        return json.dumps([[m.get("text"), m.get("blocks"), m.get("files")]
                           for m in b.slack.thread(SLACK_CHANNEL, group_ts)])

    # Their post says so, and the parent is refreshed by the outbox without them among the participants.
    texts = await eventually(lambda: (t := shown()) and "Erased on request on " in t
                             and "my passport photo" not in t and "Ravi Kumar" not in t and t)
    assert "I can come at 11" in texts  # the other participant's message stays
