"""A customer's data and consent stay with the workspace's own members: a Slack Connect user (another
organisation's, in a shared channel) is refused the opt-out, the thread export and the customer's export and
erasure, even where slack.permissions lets channel members or lists them as a campaign manager."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.handlers import appkeys
from bot.handlers.slack_actions import SHORTCUT_EXPORT, SHORTCUT_OPT_OUT
from bot.handlers.slack_privacy import FORGET_CONFIRM, SHORTCUT_EXPORT_CUSTOMER, SHORTCUT_FORGET_CUSTOMER
from storage.models import Contact, Conversation, Message
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, eventually, now_ts, thread_with, workspace_standin
from tests.helpers import BOT_TOKEN, SIGNING_SECRET, SLACK_CHANNEL, inbound_text

PARTNER, PARTNER_TEAM = "U0PARTNER", "T0PARTNER"  # a Slack Connect user from another organisation
MANAGER = "UMANAGER"
SLACK = {"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET, "alerts_channel": "C0ALERTS",
         # the partner listed by mistake, and channel members allowed to export: still refused
         "campaign_managers": [MANAGER, PARTNER], "permissions": {"export": "channel_members"}}


def _shortcut(b: Bridge, thread_ts: str, callback_id: str, user: dict[str, Any], action_ts: str) -> dict[str, Any]:
    message = b.slack.thread(SLACK_CHANNEL, thread_ts)[0]
    return {"type": "message_action", "callback_id": callback_id, "user": user, "channel": {"id": SLACK_CHANNEL},
            "message": message, "message_ts": message["ts"], "action_ts": action_ts,
            "response_url": f"{b.slack.base_url}/response-url/x"}


async def test_a_slack_connect_user_gets_no_customer_data_and_changes_no_consent(
        make_bridge: BridgeFactory) -> None:
    slack = await workspace_standin()
    try:
        await _refused_then_members_may(await make_bridge(slack=slack, settings_extra={
            "privacy": {"salt": "outsiders-salt-0123456789"}, "slack": {**SLACK, "api_url": slack.api_url}}))
    finally:
        await slack.stop()


async def _refused_then_members_may(b: Bridge) -> None:
    b.slack.add_user(PARTNER, "partner", team_id=PARTNER_TEAM)
    b.slack.add_user(MANAGER, "manager")
    b.slack.join(SLACK_CHANNEL, PARTNER, MANAGER)
    await b.webhook(inbound_text("wamid.R1", "my address is 12 Baker Street", ts=now_ts(-60)))
    parent, _ = await thread_with(b, 1)
    ts = str(parent["ts"])

    # The payload names the partner's team, or (an org the payload does not name) users.info says it.
    said, unsaid = {"id": PARTNER, "team_id": PARTNER_TEAM}, {"id": PARTNER}
    for n, (callback, user) in enumerate(((SHORTCUT_OPT_OUT, said), (SHORTCUT_OPT_OUT, unsaid),
                                          (SHORTCUT_EXPORT, said), (SHORTCUT_EXPORT, unsaid),
                                          (SHORTCUT_EXPORT_CUSTOMER, said), (SHORTCUT_FORGET_CUSTOMER, unsaid))):
        status, _ = await b.interaction(_shortcut(b, ts, callback, user, f"400.{n}"))
        assert status == 200
    told = await eventually(lambda: len(e := [x for x in b.slack.ephemerals if x["user"] == PARTNER]) == 6 and e)
    assert all("Slack Connect" in t["text"] for t in told), told
    # A confirmation submitted by the partner (the dialog opened by someone else, or forged): refused too.
    confirm = {"id": "VFORGET1", "type": "modal", "callback_id": FORGET_CONFIRM, "state": {"values": {}},
               "private_metadata": json.dumps({"conversation_id": await _conversation_id(b)})}
    status, _ = await b.interaction({"type": "view_submission", "user": said, "view": confirm})
    assert status == 200
    dm = await eventually(lambda: b.slack.messages("D" + PARTNER[1:]) if "D" + PARTNER[1:] in b.slack.channels
                          else None)
    assert "Slack Connect" in dm[0]["text"]

    assert not b.slack.calls_to("views.open") and not b.slack.calls_to("files.completeUploadExternal")
    assert await b.count(Contact, Contact.wa_id == WA_ID, Contact.opted_out.is_(False)) == 1
    assert await b.count(Message) >= 1

    # This workspace's members still may: the opt-out by a channel member, the export by a manager.
    await b.interaction(_shortcut(b, ts, SHORTCUT_OPT_OUT, {"id": STAFF}, "401.1"))
    await eventually(lambda: b.count(Contact, Contact.wa_id == WA_ID, Contact.opted_out.is_(True)))
    await b.interaction(_shortcut(b, ts, SHORTCUT_EXPORT_CUSTOMER, {"id": MANAGER}, "401.2"))
    await eventually(lambda: b.slack.calls_to("files.completeUploadExternal"))


async def _conversation_id(b: Bridge) -> int:
    async with b.app[appkeys.SESSIONS]() as s:
        return int((await s.scalars(select(Conversation.id))).one())
