"""Staff replying from a bridged Slack thread: the window, retries, notes, the template picker, shortcuts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.handlers import appkeys
from bot.handlers.slack_actions import (
    PICKER_CALLBACK,
    SHORTCUT_EXPORT,
    SHORTCUT_OPT_OUT,
    TEMPLATE_BLOCK,
    TEMPLATE_SELECT,
    VALUE_ACTION,
    var_block_id,
)
from bot.handlers.slack_messages import OPEN_PICKER_ACTION
from bot.slack.display_names import isolate
from storage.models import Contact, Message, MessageStatus, Template
from tests.harness import (
    STAFF,
    WA_ID,
    Bridge,
    BridgeFactory,
    all_text,
    bridges,
    eventually,
    now_ts,
    thread_with,
)
from tests.helpers import PNID, SLACK_CHANNEL, WABA, envelope, inbound_text, metadata, status


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _open_thread(b: Bridge, *, customer_wrote_at: int) -> str:
    await b.webhook(inbound_text("wamid.IN", "Is the Monday batch full?", ts=customer_wrote_at))
    parent, _ = await thread_with(b, 1)
    return str(parent["ts"])


async def _reply(b: Bridge, thread_ts: str, text: str, *, event_id: str, user: str = STAFF) -> dict[str, Any]:
    event = b.slack.user_message(SLACK_CHANNEL, user, text, thread_ts=thread_ts)
    assert await b.event(event, event_id=event_id) == 200
    return event


async def test_reply_inside_the_window_is_sent_once_even_when_slack_retries(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-3600))
    event = await _reply(b, thread_ts, "Yes, 3 seats left &amp; the fee is <https://x.example/fees|here>",
                         event_id="EvREPLY")
    for retry in (1, 2):  # Slack did not hear our 200 in time and delivers the same event again
        assert await b.event(event, event_id="EvREPLY", retry_num=retry) == 200
    sends = await eventually(lambda: b.graph.sends_to(WA_ID))
    stored = await eventually(lambda: b.count(Message, Message.source == "slack"))
    await asyncio.sleep(0.5)  # a second send, had a retry slipped through, would show up now
    assert len(b.graph.sends_to(WA_ID)) == 1 and stored == 1
    assert sends[0].payload["text"]["body"] == "Yes, 3 seats left & the fee is here (https://x.example/fees)"
    msg = await b.one(Message, Message.source == "slack")
    assert (msg.slack_user, msg.slack_ts, msg.wamid, msg.direction) == (STAFF, event["ts"], sends[0].wamid,
                                                                         "outbound")


async def _thread_recorded(b: Bridge, thread_ts: str | None) -> None:
    from sqlalchemy import update

    from storage.models import Conversation

    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(update(Conversation).values(slack_thread_ts=thread_ts))


async def test_a_reply_typed_while_its_new_thread_is_being_recorded_is_sent_once_it_is(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-3600))
    # The parent is in Slack but its thread not yet in the database (its outcome is written a moment later,
    # longer while the database is slow): the reply arrives in that moment.
    await _thread_recorded(b, None)
    await _reply(b, thread_ts, "Yes, two seats left", event_id="EvEARLY")
    await asyncio.sleep(0.3)
    assert b.graph.sends_to(WA_ID) == []
    await _thread_recorded(b, thread_ts)
    sends = await eventually(lambda: b.graph.sends_to(WA_ID))
    assert [x.payload["text"]["body"] for x in sends] == ["Yes, two seats left"]


async def test_only_a_channel_the_bridge_opens_threads_in_waits_for_a_thread_being_recorded(
        make: BridgeFactory) -> None:
    from bot.bridge.reply_threads import lookup_thread_being_recorded

    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-3600))
    deps = b.app[appkeys.DEPS]
    # Elsewhere a thread is what it seems at once: no wait (the hour would time this out).
    assert await asyncio.wait_for(lookup_thread_being_recorded(deps, "C0ELSEWHERE", thread_ts, (3600.0,)), 30) is None
    # In the number's channel, a thread people started among themselves is looked for again, then left alone.
    people = b.slack.user_message(SLACK_CHANNEL, STAFF, "lunch at one?")
    assert await lookup_thread_being_recorded(deps, SLACK_CHANNEL, str(people["ts"]), (0.01, 0.01)) is None
    found = await lookup_thread_being_recorded(deps, SLACK_CHANNEL, thread_ts, (3600.0,))
    assert found is not None and found.thread_ts == thread_ts


async def test_statuses_show_as_reactions_on_the_reply(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-600))
    event = await _reply(b, thread_ts, "On it", event_id="EvSTATUS")
    sends = await eventually(lambda: b.graph.sends_to(WA_ID))
    await eventually(lambda: b.count(Message, Message.wamid == sends[0].wamid))
    for i, state in enumerate(("sent", "delivered", "read")):
        await b.webhook(status(sends[0].wamid, state, ts=now_ts(i)))

    def reactions() -> list[str]:
        mine = next(m for m in b.slack.thread(SLACK_CHANNEL, thread_ts) if m["ts"] == event["ts"])
        return [r["name"] for r in mine.get("reactions", [])]

    assert await eventually(lambda: len(reactions()) == 3 and reactions()) == [
        "heavy_check_mark", "ballot_box_with_check", "eyes"]


async def test_statuses_that_arrive_before_the_send_is_answered_all_show_on_the_reply(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-600))
    b.graph.hold_answers()  # Meta sends the message and reports it before answering the send call
    event = await _reply(b, thread_ts, "On it", event_id="EvEARLY")
    sends = await eventually(lambda: b.graph.sends_to(WA_ID))
    for i, state in enumerate(("sent", "delivered", "read")):
        await b.webhook(status(sends[0].wamid, state, ts=now_ts(i)))
    async def stored() -> bool:
        return await b.count(MessageStatus, MessageStatus.wamid == sends[0].wamid) == 3

    await eventually(stored)
    assert await b.count(Message, Message.wamid == sends[0].wamid) == 0  # the statuses came first
    b.graph.release_answers()

    def reactions() -> list[str]:
        mine = next(m for m in b.slack.thread(SLACK_CHANNEL, thread_ts) if m["ts"] == event["ts"])
        return [r["name"] for r in mine.get("reactions", [])]

    assert await eventually(lambda: len(reactions()) == 3 and reactions()) == [
        "heavy_check_mark", "ballot_box_with_check", "eyes"]


async def test_statuses_reported_in_one_second_and_one_delivery_all_show_in_order(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-600))
    event = await _reply(b, thread_ts, "On it", event_id="EvSAMESECOND")
    sends = await eventually(lambda: b.graph.sends_to(WA_ID))
    await eventually(lambda: b.count(Message, Message.wamid == sends[0].wamid))
    # Meta's clock a little behind ours, and the three states stamped with the same second.
    reports = [status(sends[0].wamid, state, ts=now_ts(-5)) for state in ("read", "sent", "delivered")]
    await b.webhook(envelope("messages", {"messaging_product": "whatsapp", "metadata": metadata(), "statuses": [
        r["entry"][0]["changes"][0]["value"]["statuses"][0] for r in reports]}))

    def reactions() -> list[str]:
        mine = next(m for m in b.slack.thread(SLACK_CHANNEL, thread_ts) if m["ts"] == event["ts"])
        return [r["name"] for r in mine.get("reactions", [])]

    assert await eventually(lambda: len(reactions()) == 3 and reactions()) == [
        "heavy_check_mark", "ballot_box_with_check", "eyes"]


async def test_reply_outside_the_window_offers_a_template_and_sends_it_from_the_modal(make: BridgeFactory) -> None:
    b = await make()
    body = "Hi {{1}}, your class is on {{2}}."
    b.graph.add_phone_number(PNID, WABA)
    b.graph.add_template(WABA, "class_reminder", "en", body=body)
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        tpl = Template(waba_id=WABA, name="class_reminder", language="en", category="UTILITY", status="APPROVED",
                       components=[{"type": "BODY", "text": body}])
        s.add(tpl)
        s.add(Template(waba_id=WABA, name="old_offer", language="en", status="REJECTED", components=[]))
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-26 * 3600))

    await _reply(b, thread_ts, "Are you still interested?", event_id="EvLATE")
    told = await eventually(lambda: b.slack.ephemerals)
    assert told[0]["user"] == STAFF and told[0]["thread_ts"] == thread_ts
    assert "24-hour window closed" in told[0]["text"]
    button = told[0]["blocks"][1]["elements"][0]
    assert button["action_id"] == OPEN_PICKER_ACTION
    assert b.graph.sends_to(WA_ID) == []

    await b.interaction({"type": "block_actions", "user": {"id": STAFF}, "channel": {"id": SLACK_CHANNEL},
                         "container": {"type": "message", "is_ephemeral": True, "channel_id": SLACK_CHANNEL},
                         "actions": [{"action_id": OPEN_PICKER_ACTION, "block_id": "b", "type": "button",
                                      "value": button["value"], "action_ts": "1"}]})
    view = await eventually(lambda: next(iter(b.slack.views.values()), None))
    assert view["blocks"][1]["element"]["type"] == "external_select"
    status_, answer = await b.interaction({"type": "block_suggestion", "user": {"id": STAFF}, "view": view,
                                          "action_id": TEMPLATE_SELECT, "block_id": TEMPLATE_BLOCK, "value": ""})
    options = json.loads(answer)["options"]
    assert [o["text"]["text"] for o in options] == ["class_reminder (en)"]  # approved ones only

    await b.interaction({"type": "block_actions", "user": {"id": STAFF}, "view": view,
                         "container": {"type": "view", "view_id": view["id"]},
                         "actions": [{"action_id": TEMPLATE_SELECT, "block_id": TEMPLATE_BLOCK,
                                      "type": "external_select", "selected_option": options[0], "action_ts": "2"}]})
    first, second = var_block_id("body", "1"), var_block_id("body", "2")
    view = await eventually(lambda: (v := b.slack.views[view["id"]]) and len(v["blocks"]) > 3 and v)
    assert [blk.get("block_id") for blk in view["blocks"]][-2:] == [first, second]

    def submission(one: str, two: str) -> dict[str, Any]:
        values = {TEMPLATE_BLOCK: {TEMPLATE_SELECT: {"type": "external_select", "selected_option": options[0]}},
                  first: {VALUE_ACTION: {"type": "plain_text_input", "value": one}},
                  second: {VALUE_ACTION: {"type": "plain_text_input", "value": two}}}
        return {"type": "view_submission", "user": {"id": STAFF},
                "view": {**view, "callback_id": PICKER_CALLBACK, "state": {"values": values}}}

    status_, answer = await b.interaction(submission("Ravi", " "))
    assert status_ == 200
    assert json.loads(answer) == {"response_action": "errors", "errors": {second: "Fill in {{2}}."}}
    assert b.graph.sends_to(WA_ID) == []

    status_, answer = await b.interaction(submission("Ravi", "Monday"))
    assert status_ == 200 and answer in ("", "{}")
    sends = b.graph.sends_to(WA_ID)
    assert len(sends) == 1
    template = sends[0].payload["template"]
    assert template["name"] == "class_reminder"
    assert template["components"] == [{"type": "body", "parameters": [{"type": "text", "text": "Ravi"},
                                                                       {"type": "text", "text": "Monday"}]}]
    posted = await eventually(lambda: [m for m in b.slack.thread(SLACK_CHANNEL, thread_ts)
                                       if "Template sent from Slack" in all_text(m)])
    assert "Hi Ravi, your class is on Monday." in all_text(posted[0]) and f"<@{STAFF}>" in all_text(posted[0])
    msg = await b.one(Message, Message.type == "template")
    assert (msg.source, msg.slack_user, msg.wamid) == ("slack", STAFF, sends[0].wamid)


async def test_a_note_stays_in_slack(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-60))
    event = await _reply(b, thread_ts, "note: he asked for a discount, check with Priya", event_id="EvNOTE")
    await _reply(b, thread_ts, "// also the Tuesday batch", event_id="EvNOTE2")

    async def both_notes_stored() -> bool:
        return await b.count(Message, Message.is_note.is_(True)) == 2

    await eventually(both_notes_stored)
    mine = next(m for m in b.slack.thread(SLACK_CHANNEL, thread_ts) if m["ts"] == event["ts"])
    await eventually(lambda: mine.get("reactions"))
    assert [r["name"] for r in mine["reactions"]] == ["lock"]
    assert b.graph.sends_to(WA_ID) == []


async def test_notes_only_channel_sends_nothing_and_tells_the_author(make: BridgeFactory) -> None:
    b = await make(channel_extra={"thread_replies": "notes_only"})
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-60))
    await _reply(b, thread_ts, "Sure, see you Monday", event_id="EvNO")
    told = await eventually(lambda: b.slack.ephemerals)
    assert "not sent to the customer" in told[0]["text"]
    assert await b.count(Message, Message.is_note.is_(True)) == 1
    assert b.graph.sends_to(WA_ID) == []


async def test_bot_posts_edits_top_level_and_foreign_threads_are_ignored(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-60))
    bot_post = b.slack.user_message(SLACK_CHANNEL, STAFF, "from another app", thread_ts=thread_ts)
    bot_post["bot_id"] = "B0OTHER"
    edit = {"type": "message", "subtype": "message_changed", "channel": SLACK_CHANNEL, "ts": "1700000999.000100",
            "message": {"text": "edited", "user": STAFF, "thread_ts": thread_ts}}
    top = b.slack.user_message(SLACK_CHANNEL, STAFF, "hello channel")
    other_parent = b.slack.user_message(SLACK_CHANNEL, STAFF, "unrelated thread")
    foreign = b.slack.user_message(SLACK_CHANNEL, STAFF, "reply there", thread_ts=other_parent["ts"])
    elsewhere_parent = b.slack.user_message("C0RANDOM", STAFF, "random")
    elsewhere = b.slack.user_message("C0RANDOM", STAFF, "hi", thread_ts=elsewhere_parent["ts"])
    for i, ev in enumerate((bot_post, edit, top, foreign, elsewhere)):
        assert await b.event(ev, event_id=f"EvIGN{i}") == 200
    await _reply(b, thread_ts, "the real reply", event_id="EvREAL")  # handled after the others
    await eventually(lambda: b.graph.sends_to(WA_ID))
    assert [s.payload["text"]["body"] for s in b.graph.sends_to(WA_ID)] == ["the real reply"]


async def test_shortcuts_mark_opted_out_and_export_the_thread(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-60))
    message = b.slack.thread(SLACK_CHANNEL, thread_ts)[0]  # the parent carries the customer's message

    def shortcut(callback_id: str, action_ts: str, user: str = STAFF) -> dict[str, Any]:
        return {"type": "message_action", "callback_id": callback_id, "user": {"id": user},
                "channel": {"id": SLACK_CHANNEL}, "message": message, "message_ts": message["ts"],
                "action_ts": action_ts, "response_url": f"{b.slack.base_url}/response-url/x"}

    await b.interaction(shortcut(SHORTCUT_OPT_OUT, "1.1"))
    note = await eventually(lambda: [m for m in b.slack.thread(SLACK_CHANNEL, thread_ts)
                                     if "opted out" in all_text(m)])
    assert f"<@{STAFF}>" in all_text(note[0])
    contact = await b.one(Contact, Contact.wa_id == WA_ID)
    assert contact.opted_out

    await b.interaction(shortcut(SHORTCUT_EXPORT, "1.2", user="UMANAGER"))  # campaign managers export
    shared = await eventually(lambda: [m for m in b.slack.thread(SLACK_CHANNEL, thread_ts) if m.get("files")])
    file = shared[0]["files"][0]
    transcript = b.slack._file_data[file["id"]].decode()
    assert file["name"] == f"transcript-{WA_ID}.txt"
    assert f"{isolate('Ravi')} (+91 98123 45678): Is the Monday batch full?" in transcript


async def test_picker_refused_by_slack_is_explained_to_the_person_who_asked(make: BridgeFactory) -> None:
    b = await make()
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        s.add(Template(waba_id=WABA, name="class_reminder", language="en", category="UTILITY", status="APPROVED",
                       components=[{"type": "BODY", "text": "Hi"}]))
    thread_ts = await _open_thread(b, customer_wrote_at=now_ts(-26 * 3600))
    await _reply(b, thread_ts, "Are you still interested?", event_id="EvREFUSED")
    told = await eventually(lambda: b.slack.ephemerals)
    button = told[0]["blocks"][1]["elements"][0]
    b.slack.fail_next("views.open", "invalid_arguments")

    await b.interaction({"type": "block_actions", "user": {"id": STAFF}, "channel": {"id": SLACK_CHANNEL},
                         "container": {"type": "message", "is_ephemeral": True, "channel_id": SLACK_CHANNEL},
                         "actions": [{"action_id": OPEN_PICKER_ACTION, "block_id": "b", "type": "button",
                                      "value": button["value"], "action_ts": "1"}]})
    said = await eventually(lambda: [e for e in b.slack.ephemerals if "picker did not open" in e["text"]])
    assert said[0]["user"] == STAFF and said[0]["thread_ts"] == thread_ts
    assert "invalid_arguments" in said[0]["text"] and b.slack.views == {}
