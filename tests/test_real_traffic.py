"""Real WhatsApp traffic end to end: edits, deletions, usernames (BSUID), number changes, Flow answers,
calls, errors and alerts, posted as signed webhooks from the public fixtures into the real app, against the
Slack and Graph stand-ins, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.handlers import appkeys
from bot.slack import render
from bot.slack.pacer import Pacer
from storage.models import Contact, ContactIdentity, Conversation, Message, SlackOutbox
from tests.harness import Bridge, BridgeFactory, all_text, eventually, thread_posts, thread_with
from tests.helpers import SLACK_CHANNEL

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
BSUID = "user.4f1c2b9a7d3e8f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


async def settled(b: Bridge) -> None:
    """Every delivery processed and every Slack post owed made."""
    async def done() -> bool:
        from storage.models import WebhookLog

        return (await b.count(WebhookLog, WebhookLog.processed_at.is_(None)) == 0
                and await b.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0)

    await eventually(done, timeout=20)


# ---- edits and deletions ----------------------------------------------------------------------------


async def test_customer_edit_updates_the_mirrored_post_and_keeps_every_version(bridge: Bridge) -> None:
    await bridge.webhook(fixture("text"))
    _, replies = await thread_with(bridge, 1)
    original_ts = replies[0]["ts"]
    assert "Hazratganj" in all_text(replies[0]) and "3 BHK" not in all_text(replies[0])

    await bridge.webhook(fixture("edit"))
    await bridge.webhook(fixture("edit"))  # Meta retries: the second delivery changes nothing
    await settled(bridge)

    updated = await eventually(lambda: (r := thread_posts(bridge, bridge.parents()[0])) and
                               "Or the 3 BHK" in all_text(r[0]) and r)
    assert len(updated) == 1 and updated[0]["ts"] == original_ts  # the same post, revised
    assert "Edited by the customer" in all_text(updated[0])
    assert len(bridge.slack.calls_to("chat.update")) >= 1
    msg = await bridge.one(Message, Message.wamid == fixture("text")["entry"][0]["changes"][0]["value"]
                           ["messages"][0]["id"])
    versions = msg.content["versions"]
    assert len(versions) == 1  # the redelivered edit was not applied twice
    assert versions[0]["content"]["text"] != msg.text and "Or the 3 BHK" in msg.text


async def test_audit_export_keeps_every_version_the_deletion_and_flow_answers(bridge: Bridge) -> None:
    from bot.ops.export import load_transcript

    for name in ("text", "edit", "revoke", "interactive_nfm_reply"):
        await bridge.webhook(fixture(name))
    await settled(bridge)
    t = await load_transcript(bridge.app[appkeys.SESSIONS], "lucknow", "919812345678")
    texts = [line.text for line in t.lines]
    edited = next(x for x in texts if "Or the 3 BHK" in x)
    assert edited.startswith("[deleted by the sender at ")
    earlier = edited.split("[edited; earlier versions: ")[1]
    assert earlier.endswith("Namaste, is the 2 BHK on Hazratganj still available?]")
    assert any(x.startswith("[form] Budget: 45L; Bhk: 2") for x in texts)


async def test_edit_of_an_unknown_message_is_posted_marked_edited(bridge: Bridge) -> None:
    await bridge.webhook(fixture("edit"))
    _, replies = await thread_with(bridge, 1)
    assert "Or the 3 BHK" in all_text(replies[0]) and "Edited by the customer" in all_text(replies[0])
    await bridge.webhook(fixture("text"))  # the original, delivered late: not a second post
    await bridge.webhook(fixture("edit"))
    await settled(bridge)
    assert len(thread_posts(bridge, bridge.parents()[0])) == 1 and await bridge.count(Message) == 1


async def test_customer_deletion_marks_the_post_and_keeps_the_text_for_audit(bridge: Bridge) -> None:
    await bridge.webhook(fixture("text"))
    _, replies = await thread_with(bridge, 1)
    before = all_text(replies[0])
    await bridge.webhook(fixture("revoke"))
    await settled(bridge)
    post = await eventually(lambda: (r := thread_posts(bridge, bridge.parents()[0])) and
                            "Deleted by the customer at" in all_text(r[0]) and r[0])
    assert post["ts"] == replies[0]["ts"] and len(thread_posts(bridge, bridge.parents()[0])) == 1
    assert "~" in all_text(post)  # still shown to staff, struck through (the default)
    msg = await bridge.one(Message, Message.slack_ts == post["ts"])
    assert msg.content["revoked_at"] and msg.text and msg.text in before


async def test_phone_app_edit_and_deletion_revise_the_echo(bridge: Bridge) -> None:
    await bridge.webhook(fixture("smb_message_echoes"))
    await settled(bridge)
    await bridge.webhook(fixture("echo_edit"))
    await settled(bridge)
    ravi = next(p for p in bridge.parents() if "98123" in all_text(p))
    post = await eventually(lambda: (r := thread_posts(bridge, _fresh(bridge, ravi))) and "(edited)" in all_text(r[0])
                            and r[0])
    assert "Edited by the phone app" in all_text(post)
    await bridge.webhook(fixture("echo_revoke"))
    await settled(bridge)
    post = await eventually(lambda: (r := thread_posts(bridge, _fresh(bridge, ravi))) and "Deleted by the phone app" in
                            all_text(r[0]) and r[0])
    assert len(thread_posts(bridge, _fresh(bridge, ravi))) == 1


# ---- thread upkeep ------------------------------------------------------------------------------------


async def test_header_follows_the_window_when_the_customer_writes_again_inside_it(bridge: Bridge) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.harness import now_ts
    from tests.helpers import inbound_text

    first, second = now_ts(-3 * 3600), now_ts(-60)
    await bridge.webhook(inbound_text("wamid.W1", "hi", ts=first))
    await thread_with(bridge, 1)
    await bridge.webhook(inbound_text("wamid.W2", "still there?", ts=second))
    await thread_with(bridge, 2)
    tz = "Asia/Kolkata"
    expected = render.format_time(datetime.fromtimestamp(second, UTC) + timedelta(hours=24), tz)
    await eventually(lambda: expected in all_text(bridge.parents()[0]))


async def test_a_burst_in_one_minute_leaves_the_parent_alone_and_a_later_minute_refreshes_it(
        bridge: Bridge) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.harness import now_ts
    from tests.helpers import inbound_text

    minute = now_ts(-3 * 3600) // 60 * 60  # three messages within one minute, two hours later one more
    for i, second in enumerate((5, 25, 45)):
        await bridge.webhook(inbound_text(f"wamid.B{i}", f"part {i}", ts=minute + second))
        await thread_with(bridge, i + 1)  # one at a time, as a customer types them
    await settled(bridge)
    # The parent was posted with the first message; the window's end it shows is the same minute for all three.
    assert bridge.slack.calls_to("chat.update") == []
    later = minute + 2 * 3600 + 5
    await bridge.webhook(inbound_text("wamid.B3", "anyone?", ts=later))
    await thread_with(bridge, 4)
    expected = render.format_time(datetime.fromtimestamp(later, UTC) + timedelta(hours=24), "Asia/Kolkata")
    await eventually(lambda: expected in all_text(bridge.parents()[0]))
    assert len(bridge.slack.calls_to("chat.update")) == 1


async def test_reply_refused_outside_the_window_is_marked_in_the_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("text"))  # written in 2025: the window is long closed
    parent, _ = await thread_with(bridge, 1)
    event = bridge.slack.user_message(SLACK_CHANNEL, "U0STAFF", "Yes, still available!", thread_ts=parent["ts"])
    assert await bridge.event(event, event_id="EvLATE") == 200
    mine = await eventually(lambda: next((m for m in bridge.slack.thread(SLACK_CHANNEL, parent["ts"])
                                          if m.get("user") == "U0STAFF" and m.get("reactions")), None))
    assert [r["name"] for r in mine["reactions"]] == [render.NOT_SENT_REACTION]
    told = await eventually(lambda: bridge.slack.ephemerals)
    assert told[0]["blocks"][1]["elements"][0]["text"]["text"] == "Send a template"
    assert bridge.graph.sends == []


# ---- usernames (BSUID) and number changes ------------------------------------------------------------


async def test_bsuid_then_phone_then_echo_to_user_id_is_one_contact_and_one_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_bsuid"))
    parent, _ = await thread_with(bridge, 1)
    shown = all_text(parent)
    assert "Meera" in shown and "number hidden" in shown and BSUID not in shown

    await bridge.webhook(fixture("inbound_phone_and_bsuid"))
    await bridge.webhook(fixture("echo_to_user_id"))
    await settled(bridge)
    _, replies = await thread_with(bridge, 3)

    assert len(bridge.parents()) == 1
    assert await bridge.count(Contact) == 1 and await bridge.count(Conversation) == 1
    contact = await bridge.one(Contact)
    assert contact.wa_id == "919876500142" and contact.username == "@meera.lko"
    async with bridge.app[appkeys.SESSIONS]() as s:
        kinds = {(i.kind, i.value) for i in (await s.scalars(select(ContactIdentity))).all()}
    assert ("user_id", BSUID) in kinds and ("phone", "919876500142") in kinds
    assert ("username", "@meera.lko") in kinds
    assert "parking spots" in all_text(replies[2])


async def test_ids_are_stored_at_full_length(bridge: Bridge) -> None:
    long_id = "user." + "a1" * 128  # Meta allows up to 256 alphanumerics
    payload = copy.deepcopy(fixture("inbound_bsuid"))
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = long_id
    value["messages"][0]["from_user_id"] = long_id
    await bridge.webhook(payload)
    await thread_with(bridge, 1)
    assert (await bridge.one(Contact)).wa_id == long_id


async def test_two_contacts_merge_into_one_thread_when_a_message_links_them(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_bsuid"))  # known by BSUID only
    phone_only = copy.deepcopy(fixture("text"))
    value = phone_only["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = value["messages"][0]["from"] = "919876500142"
    await bridge.webhook(phone_only)  # known by phone only: a second contact for now
    await settled(bridge)
    assert await bridge.count(Contact) == 2
    await bridge.webhook(fixture("inbound_phone_and_bsuid"))  # carries both ids
    await settled(bridge)
    assert await bridge.count(Contact) == 1 and await bridge.count(Conversation) == 1
    conv = await bridge.one(Conversation)
    assert await bridge.count(Message, Message.conversation_id == conv.id) == 3


async def test_number_change_moves_the_contact_and_keeps_the_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("text"))
    parent, _ = await thread_with(bridge, 1)
    await bridge.webhook(fixture("system"))  # 919812345678 -> 919900011122
    new_number = copy.deepcopy(fixture("text"))
    value = new_number["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = value["messages"][0]["from"] = "919900011122"
    value["messages"][0]["id"] = "wamid.after-the-number-change"
    await bridge.webhook(new_number)
    await settled(bridge)
    _, _replies = await thread_with(bridge, 3)
    assert len(bridge.parents()) == 1 and await bridge.count(Conversation) == 1
    assert (await bridge.one(Contact)).wa_id == "919900011122"
    header = await eventually(lambda: (p := bridge.parents()[0]) and "99000 11122" in all_text(p) and p)
    assert header["ts"] == parent["ts"]


async def test_reply_to_a_customer_known_only_by_user_id_uses_the_recipient_field(bridge: Bridge) -> None:
    await bridge.webhook(fixture("inbound_bsuid"))
    parent, _ = await thread_with(bridge, 1)
    # The customer wrote in 2025: make the window open by moving their message to now.
    async with bridge.app[appkeys.SESSIONS]() as s, s.begin():
        conv = (await s.scalars(select(Conversation))).one()
        from storage.models import utcnow

        conv.last_customer_message_at = utcnow()
    event = bridge.slack.user_message(SLACK_CHANNEL, "U0STAFF", "Yes, parking is included.", thread_ts=parent["ts"])
    assert await bridge.event(event, event_id="EvBSUID") == 200
    send = await eventually(lambda: bridge.graph.sends)
    assert send[0].payload.get("recipient") == BSUID and "to" not in send[0].payload
    await eventually(lambda: bridge.count(Message, Message.source == "slack"))
    assert (await bridge.one(Message, Message.source == "slack")).wamid == send[0].wamid


# ---- Flows, calls, errors ----------------------------------------------------------------------------


async def test_flow_answers_are_readable_fields_in_the_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("interactive_nfm_reply"))
    _, replies = await thread_with(bridge, 1)
    shown = all_text(replies[0])
    assert "*Budget:* 45L" in shown and "*Bhk:* 2" in shown
    assert "flow_token" not in shown.lower() and "Flow token" not in shown


async def test_call_permission_reply_and_calls_become_thread_notes(bridge: Bridge) -> None:
    await bridge.webhook(fixture("text"))
    await thread_with(bridge, 1)
    for name in ("call_permission_reply", "calls_connect", "calls_terminate", "calls_missed", "calls_status"):
        await bridge.webhook(fixture(name))
    await bridge.webhook(fixture("calls_terminate"))  # a retried delivery adds nothing
    await settled(bridge)
    _, replies = await thread_with(bridge, 6)
    texts = [all_text(r) for r in replies]
    assert any("Accepted calls from the business until 26 Jul" in t for t in texts)
    assert any("Incoming call ringing" in t for t in texts)
    assert any("Incoming call answered, lasted 1 min 30 s" in t for t in texts)
    assert any("Missed call from the customer" in t for t in texts)
    assert any("declined by the customer" in t for t in texts)
    assert len(replies) == 6


async def test_a_call_from_the_business_is_one_line_whatever_its_statuses(bridge: Bridge) -> None:
    await bridge.webhook(fixture("text"))
    await thread_with(bridge, 1)
    for name in ("calls_business_ringing", "calls_business_accepted", "calls_business_terminate",
                 "calls_business_ringing"):  # the last one redelivered late
        await bridge.webhook(fixture(name))
    await settled(bridge)
    await thread_with(bridge, 2)
    await asyncio.sleep(0.2)
    calls = [all_text(r) for r in thread_posts(bridge, bridge.parents()[0]) if "telephone_receiver" in all_text(r)]
    assert len(calls) == 1 and "Call from the business answered, lasted 2 min 30 s" in calls[0]


async def test_an_unsupported_message_is_one_line_in_the_thread_and_no_alert(bridge: Bridge) -> None:
    await bridge.webhook(fixture("unsupported"))
    await bridge.webhook(fixture("unknown_type"))
    await settled(bridge)
    _, replies = await thread_with(bridge, 2)
    await asyncio.sleep(0.2)
    assert len(thread_posts(bridge, bridge.parents()[0])) == 2  # one line per message, no extra notes
    assert "does not pass on to this app (*edit*)" in all_text(bridge.parents()[0])
    assert all("Open WhatsApp on the phone" in all_text(r) for r in replies)
    assert bridge.slack.messages("C0ALERTS") == []


async def test_an_interactive_message_meta_could_not_deliver_says_so(bridge: Bridge) -> None:
    await bridge.webhook(fixture("interactive_undeliverable"))
    await settled(bridge)
    parent, _ = await thread_with(bridge, 1)
    shown = all_text(parent) + "".join(all_text(r) for r in thread_posts(bridge, parent))
    assert "could not deliver here (Meta error 131000: Something went wrong)" in shown
    assert "retrying" not in shown and "object is missing" not in shown
    assert len(thread_posts(bridge, parent)) == 1 and bridge.slack.messages("C0ALERTS") == []


async def test_request_welcome_and_a_product_question_read_as_sentences(bridge: Bridge) -> None:
    await bridge.webhook(fixture("request_welcome"))
    await bridge.webhook(fixture("referred_product"))
    await settled(bridge)
    texts = [all_text(p) + "".join(all_text(r) for r in thread_posts(bridge, p)) for p in bridge.parents()]
    assert any("Opened the chat for the first time" in t and "Sunil Verma" in t for t in texts)
    assert any("Asked about product *di9ozbzfi4* from catalog 194836987003835" in t for t in texts)


async def test_echo_to_the_business_number_opens_no_thread(bridge: Bridge) -> None:
    await bridge.webhook(fixture("echo_to_self"))
    await settled(bridge)
    assert bridge.parents() == [] and await bridge.count(Conversation) == 0


# ---- alerts --------------------------------------------------------------------------------------------

_EPOCH = re.compile(r"(?<![\d.])1[5-9]\d{8}(?!\d)")  # a bare Unix timestamp (2017-2033)


async def test_every_alert_from_every_fixture_reads_as_sentences(make_bridge: BridgeFactory) -> None:
    # Dozens of alerts in one channel: paced at Slack's 1 post/s they would take a minute; the pacing is not
    # what this test is about.
    bridge = await make_bridge(outbox={"pacer": Pacer({})})
    for path in sorted(FIXTURES.glob("*.json")):
        await bridge.webhook(json.loads(path.read_text()))
    await settled(bridge)
    await asyncio.sleep(0.2)
    alerts = [m.get("text") or "" for m in bridge.slack.messages("C0ALERTS")]
    notes = [m.get("text") or "" for p in bridge.parents() for m in thread_posts(bridge, p)]
    assert len(alerts) >= 15
    for text in alerts + notes:
        assert "{'" not in text and "None" not in text, text
        assert not _EPOCH.search(text), text
    joined = "\n".join(alerts)
    assert "welcome_template (en-US) is UTILITY and becomes MARKETING on 2 May 2025: it will be billed as " \
           "marketing" in joined
    assert "welcome_template (en-US) changed category: UTILITY → MARKETING" in joined
    assert "visit_reminder (en) is UTILITY and becomes MARKETING" in joined
    assert ":chart_with_upwards_trend: 915224000000 can now send faster" in joined
    assert "(number 915224000000) broke a WhatsApp policy (scam)" in joined
    assert "Waba info" not in joined and "Violation info /" not in joined
    assert "visit_reminder (en) was edited" in joined
    assert "Meta error 131000 (Something went wrong)" in joined and "retrying" not in joined


def test_alert_post_escapes_and_uses_the_given_icon() -> None:
    post = render.alert_post({"alert": "quality", "icon": ":chart_with_upwards_trend:", "text": "<!channel> up"})
    assert post.text == ":chart_with_upwards_trend: &lt;!channel&gt; up"


async def test_marketing_stop_from_whatsapps_menu_is_a_note_in_the_customers_thread(bridge: Bridge) -> None:
    prefs = fixture("user_preferences")
    wa_id = prefs["entry"][0]["changes"][0]["value"]["user_preferences"][0]["wa_id"]
    first = copy.deepcopy(fixture("text"))
    value = first["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = value["messages"][0]["from"] = wa_id
    await bridge.webhook(first)
    await thread_with(bridge, 1)
    await bridge.webhook(prefs)
    await bridge.webhook(prefs)  # redelivered: one note
    await settled(bridge)
    _, replies = await thread_with(bridge, 2)
    assert len(replies) == 2
    assert "The customer stopped marketing messages from WhatsApp's menu on " in all_text(replies[1])
    assert (await bridge.one(Contact)).opted_out is True


def _fresh(bridge: Bridge, parent: dict[str, Any]) -> dict[str, Any]:
    """The parent as Slack holds it now (chat.update may have changed it since it was read)."""
    return next(p for p in bridge.parents() if p["ts"] == parent["ts"])
