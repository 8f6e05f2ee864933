"""Slack interactions act once however often they arrive, and only for the people allowed to do them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.config import Role
from bot.handlers import appkeys
from bot.handlers.slack_actions import (
    ALREADY_SENDING,
    PICKER_CALLBACK,
    SHORTCUT_EXPORT,
    SHORTCUT_OPT_OUT,
    SHORTCUT_SEND_TEMPLATE,
    TEMPLATE_BLOCK,
    TEMPLATE_SELECT,
    PickerTarget,
)
from bot.handlers.slack_messages import OPEN_PICKER_ACTION
from bot.slack.permissions import Action, refusal
from storage.models import Contact, Conversation, Message, SlackOutbox, Template
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, bridges, eventually, now_ts, thread_with
from tests.helpers import PNID, SLACK_CHANNEL, WABA, inbound_text

OUTSIDER = "U0OUTSIDER"  # in the workspace, not in the number's channel
MANAGER = "UMANAGER"


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _thread(b: Bridge) -> tuple[str, int, int]:
    """A bridged thread with an approved template: (thread_ts, conversation id, template id)."""
    b.slack.add_user(OUTSIDER, "outsider")
    b.slack.add_user(MANAGER, "manager")
    b.graph.add_phone_number(PNID, WABA)
    b.graph.add_template(WABA, "hello", "en", body="Hello!")
    await b.webhook(inbound_text("wamid.IN", "hi", ts=now_ts(-60)))
    parent, _ = await thread_with(b, 1)
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        tpl = Template(waba_id=WABA, name="hello", language="en", category="UTILITY", status="APPROVED",
                       components=[{"type": "BODY", "text": "Hello!"}])
        s.add(tpl)
        await s.flush()
        template_id = tpl.id
    conv = await b.one(Conversation)
    return str(parent["ts"]), conv.id, template_id


def _submission(user: str, conversation_id: int, thread_ts: str, template_id: int) -> dict[str, Any]:
    meta = PickerTarget(conversation_id, SLACK_CHANNEL, thread_ts).dump()
    values = {TEMPLATE_BLOCK: {TEMPLATE_SELECT: {"type": "static_select",
                                                 "selected_option": {"value": str(template_id)}}}}
    return {"type": "view_submission", "user": {"id": user},
            "view": {"id": "VPICK1", "type": "modal", "callback_id": PICKER_CALLBACK, "private_metadata": meta,
                     "state": {"values": values}}}


def _shortcut(b: Bridge, thread_ts: str, callback_id: str, user: str, action_ts: str) -> dict[str, Any]:
    message = b.slack.thread(SLACK_CHANNEL, thread_ts)[0]
    return {"type": "message_action", "callback_id": callback_id, "user": {"id": user},
            "channel": {"id": SLACK_CHANNEL}, "message": message, "message_ts": message["ts"],
            "action_ts": action_ts, "response_url": f"{b.slack.base_url}/response-url/x"}


async def test_a_replayed_template_submission_sends_one_template(make: BridgeFactory) -> None:
    b = await make()
    thread_ts, conv_id, template_id = await _thread(b)
    submission = _submission(STAFF, conv_id, thread_ts, template_id)
    answers = [await b.interaction(submission) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(text in ("", "{}") or json.loads(text)["errors"][TEMPLATE_BLOCK] == ALREADY_SENDING
               for _, text in answers)
    assert len(b.graph.sends_to(WA_ID)) == 1
    assert await b.count(Message, Message.type == "template") == 1


async def test_a_submission_checked_slowly_and_sent_slowly_is_still_answered_within_slacks_3_seconds(
        make: BridgeFactory) -> None:
    b = await make()
    thread_ts, conv_id, template_id = await _thread(b)
    b.slack.set_latency(0.5)  # the lookups before the send (Slack's answers on who may send) take a while
    b.graph.set_latency(4.0)  # and Meta answers after Slack has stopped waiting
    status, text = await b.interaction(_submission(STAFF, conv_id, thread_ts, template_id))
    assert (status, text in ("", "{}")) == (200, True)  # the modal closes; the send goes on
    b.slack.set_latency(0)
    await eventually(lambda: b.graph.sends_to(WA_ID))
    assert await eventually(lambda: b.count(Message, Message.type == "template")) == 1


async def test_a_submission_meta_refused_may_be_sent_again(make: BridgeFactory) -> None:
    b = await make()
    thread_ts, conv_id, template_id = await _thread(b)
    b.graph.fail_next(to=WA_ID, code=131000, http_status=500)
    submission = _submission(STAFF, conv_id, thread_ts, template_id)
    status, text = await b.interaction(submission)
    assert status == 200 and "131000" in json.loads(text)["errors"][TEMPLATE_BLOCK]
    status, text = await b.interaction(submission)
    assert status == 200 and text in ("", "{}")
    assert len(b.graph.sends_to(WA_ID)) == 1


async def test_replayed_shortcuts_act_once(make: BridgeFactory) -> None:
    b = await make()
    thread_ts, _, _ = await _thread(b)
    optout = _shortcut(b, thread_ts, SHORTCUT_OPT_OUT, STAFF, "100.1")
    for _ in range(2):
        await b.interaction(optout)
    await eventually(lambda: b.count(SlackOutbox, SlackOutbox.kind == "note"))
    contact = await b.one(Contact, Contact.wa_id == WA_ID)
    assert contact.opted_out  # two flips would have left the customer opted in
    assert await b.count(SlackOutbox, SlackOutbox.kind == "note") == 1
    export = _shortcut(b, thread_ts, SHORTCUT_EXPORT, MANAGER, "100.2")
    for _ in range(3):
        await b.interaction(export)
    await eventually(lambda: b.slack.calls_to("files.completeUploadExternal"))
    await b.interaction(_shortcut(b, thread_ts, SHORTCUT_OPT_OUT, STAFF, "100.3"))  # a new click acts again

    async def two_notes() -> bool:
        return await b.count(SlackOutbox, SlackOutbox.kind == "note") == 2

    await eventually(two_notes)
    assert len(b.slack.calls_to("files.completeUploadExternal")) == 1


async def test_people_outside_the_channel_are_refused_privately(make: BridgeFactory) -> None:
    b = await make()
    thread_ts, conv_id, template_id = await _thread(b)
    await b.interaction(_shortcut(b, thread_ts, SHORTCUT_OPT_OUT, OUTSIDER, "200.1"))
    await b.interaction(_shortcut(b, thread_ts, SHORTCUT_SEND_TEMPLATE, OUTSIDER, "200.2"))
    await b.interaction({"type": "block_actions", "user": {"id": OUTSIDER}, "channel": {"id": SLACK_CHANNEL},
                         "actions": [{"action_id": OPEN_PICKER_ACTION, "type": "button", "action_ts": "200.3",
                                      "value": json.dumps({"conversation_id": conv_id})}]})
    await b.interaction(_shortcut(b, thread_ts, SHORTCUT_EXPORT, STAFF, "200.4"))  # a member, not a manager
    told = await eventually(lambda: len(b.slack.ephemerals) >= 4 and b.slack.ephemerals)
    # Listeners answer after their ack, so the refusals may arrive in any order.
    assert sorted((e["user"], e["text"]) for e in told) == sorted([
        (OUTSIDER, refusal(Action.OPT_OUT, Role.CHANNEL_MEMBERS)),
        (OUTSIDER, refusal(Action.SEND_TEMPLATES, Role.CHANNEL_MEMBERS)),
        (OUTSIDER, refusal(Action.SEND_TEMPLATES, Role.CHANNEL_MEMBERS)),
        (STAFF, refusal(Action.EXPORT, Role.CAMPAIGN_MANAGERS))])
    status, text = await b.interaction(_submission(OUTSIDER, conv_id, thread_ts, template_id))  # forged
    assert status == 200
    assert json.loads(text)["errors"][TEMPLATE_BLOCK] == refusal(Action.SEND_TEMPLATES, Role.CHANNEL_MEMBERS)
    assert b.slack.calls_to("views.open") == [] and b.graph.sends_to(WA_ID) == []
    assert not (await b.one(Contact, Contact.wa_id == WA_ID)).opted_out
    assert b.slack.calls_to("files.completeUploadExternal") == []


async def test_roles_are_configurable(aiohttp_client: Any, db_url: str) -> None:
    from bot.app.factory import create_app
    from bot.app.slack_component import make_slack_component
    from bot.standins import GraphStandin, SlackStandin
    from tests.harness import FAST_OUTBOX
    from tests.helpers import BOT_TOKEN, make_settings

    slack, graph = SlackStandin(bot_token=BOT_TOKEN), GraphStandin()
    await slack.start()
    await graph.start()
    try:
        slack.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
        settings = make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url)
        raw = settings.model_dump()
        raw["slack"]["permissions"] = {"export": "anyone", "opt_out": "campaign_managers"}
        settings = type(settings).model_validate(raw)
        client = await aiohttp_client(create_app(settings, components=[make_slack_component(**FAST_OUTBOX)]))
        b = Bridge(client, slack, graph)
        thread_ts, _, _ = await _thread(b)
        await b.interaction(_shortcut(b, thread_ts, SHORTCUT_EXPORT, OUTSIDER, "300.1"))
        await eventually(lambda: b.slack.calls_to("files.completeUploadExternal"))
        await b.interaction(_shortcut(b, thread_ts, SHORTCUT_OPT_OUT, STAFF, "300.2"))
        told = await eventually(lambda: b.slack.ephemerals)
        assert told[0]["text"] == refusal(Action.OPT_OUT, Role.CAMPAIGN_MANAGERS)
    finally:
        await slack.stop()
        await graph.stop()
