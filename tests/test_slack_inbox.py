"""The team inbox through the Slack stand-in: taking and assigning a conversation, resolving it by button, the
customer (and only the customer) reopening it, each change in the audit once, and refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.core.config import Role
from bot.handlers import appkeys
from bot.handlers.slack_actions import SHORTCUT_EXPORT
from bot.ops.insights_store import period_figures
from bot.slack.inbox_view import (
    ACTIONS_BLOCK,
    ASSIGN_ACTION,
    REOPEN_ACTION,
    RESOLVE_ACTION,
    TAKE_ACTION,
)
from bot.slack.permissions import Action, refusal
from storage.models import Conversation, ConversationEvent, Message, MessageStatus
from tests.harness import STAFF, Bridge, BridgeFactory, bridges, eventually, now_ts, thread_with
from tests.helpers import BOT_TOKEN, SLACK_CHANNEL, echo_text, inbound_text, status
from tests.workspaces_harness import ALPHA, BETA, Deployment, deployment_of
from tests.workspaces_harness import STAFF as WORKSPACE_STAFF

RAVI = "U0RAVI"  # a second member of the channel
OUTSIDER = "U0OUTSIDER"  # in the workspace, not in the number's channel


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _thread(b: Bridge) -> tuple[str, int]:
    """A customer's thread, with Ravi in the channel and an outsider in the workspace: (parent ts, conversation)."""
    b.slack.add_user(RAVI, "ravi", real_name="Ravi")
    b.slack.join(SLACK_CHANNEL, RAVI)
    b.slack.add_user(OUTSIDER, "outsider")
    await b.webhook(inbound_text("wamid.IN1", "about my fee refund", ts=now_ts(-120)))
    parent, _ = await thread_with(b, 1)
    return str(parent["ts"]), (await b.one(Conversation)).id


def click(action_id: str, user: str, conversation_id: int, action_ts: str, *, channel: str = SLACK_CHANNEL,
          selected_user: str | None = None) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for one of the parent's inbox elements."""
    action: dict[str, Any] = {"action_id": action_id, "action_ts": action_ts,
                              "block_id": f"{ACTIONS_BLOCK}:{conversation_id}"}
    if action_id == ASSIGN_ACTION:
        action.update(type="users_select", selected_user=selected_user)
    else:
        action.update(type="button", value=json.dumps({"conversation_id": conversation_id}))
    return {"type": "block_actions", "user": {"id": user}, "channel": {"id": channel}, "actions": [action]}


def parent_of(b: Bridge, ts: str) -> dict[str, Any]:
    return next(m for m in b.slack.messages(SLACK_CHANNEL, top_level_only=True) if m["ts"] == ts)


def inbox_line(b: Bridge, ts: str) -> str:
    """The parent's owner and status line."""
    for block in parent_of(b, ts).get("blocks") or []:
        for element in block.get("elements") or []:
            if "Owner:" in str(element.get("text", "")):
                return str(element["text"])
    return ""


def buttons(b: Bridge, ts: str) -> list[str]:
    """The first row of inbox buttons (the snooze row is tests/test_inbox_snooze.py's)."""
    return [e["action_id"] for block in parent_of(b, ts).get("blocks") or [] if block["type"] == "actions"
            and str(block.get("block_id", "")).startswith(f"{ACTIONS_BLOCK}:")
            for e in block["elements"] if str(e.get("action_id", "")).startswith("wabridge_inbox")]


def notes(b: Bridge, ts: str) -> list[str]:
    return [json.dumps(r.get("blocks")) for r in b.replies(ts) if "this" in json.dumps(r.get("blocks"))
            or "Reopened" in json.dumps(r.get("blocks"))]


async def events(b: Bridge) -> list[tuple[str, str, str | None]]:
    async with b.app[appkeys.SESSIONS]() as s:
        rows = (await s.scalars(select(ConversationEvent).order_by(ConversationEvent.id))).all()
    return [(r.action, r.actor, r.assignee) for r in rows]


async def test_take_and_assign_show_the_owner_and_leave_notes(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    assert inbox_line(b, ts).startswith("Owner: nobody yet")
    assert buttons(b, ts) == [TAKE_ACTION, ASSIGN_ACTION, RESOLVE_ACTION]

    assert (await b.interaction(click(TAKE_ACTION, STAFF, conv_id, "1.1")))[0] == 200
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{STAFF}>"))
    await eventually(lambda: any(f"<@{STAFF}> took this conversation." in n for n in notes(b, ts)))

    await b.interaction(click(ASSIGN_ACTION, STAFF, conv_id, "1.2", selected_user=RAVI))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{RAVI}>"))
    await eventually(lambda: any(f"<@{STAFF}> assigned this to <@{RAVI}>." in n for n in notes(b, ts)))
    assert await events(b) == [("take", STAFF, None), ("assign", STAFF, RAVI)]
    conv = await b.one(Conversation)
    assert conv.owner == RAVI and conv.inbox_status == "open"


async def test_resolved_by_button_and_reopened_by_the_customer_not_by_an_echo_or_a_status(make: BridgeFactory
                                                                                          ) -> None:
    b = await make()
    ts, conv_id = await _thread(b)

    async def waiting() -> list[int]:
        found = await period_figures(b.app[appkeys.SESSIONS], since=datetime.now(UTC) - timedelta(days=1))
        return [w.conversation_id for w in found.waiting]

    assert await waiting() == [conv_id]
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "2.1"))
    await eventually(lambda: f"*Resolved* by <@{RAVI}>" in inbox_line(b, ts))
    assert await waiting() == []  # the Home tab, reminders and the report wait on nobody here
    assert buttons(b, ts) == [TAKE_ACTION, ASSIGN_ACTION, REOPEN_ACTION]
    await eventually(lambda: any(f"<@{RAVI}> resolved this conversation." in n for n in notes(b, ts)))

    # The phone app answers, a status arrives, and a message the customer wrote before the resolve comes late:
    # none of them reopens it.
    await b.webhook(echo_text("wamid.ECHO1", "you're welcome", ts=now_ts()))
    await b.webhook(status("wamid.ECHO1", "delivered", ts=now_ts()))
    await b.webhook(inbound_text("wamid.LATE", "thanks", ts=now_ts(-100)))
    async def both_stored() -> bool:
        return await b.count(Message, Message.wamid.in_(["wamid.ECHO1", "wamid.LATE"])) == 2

    await eventually(both_stored)
    await eventually(lambda: b.count(MessageStatus, MessageStatus.wamid == "wamid.ECHO1"))
    await eventually(lambda: len(b.replies(ts)) >= 3)  # the note, the echo and the late message are posted
    assert (await b.one(Conversation)).inbox_status == "resolved"

    await b.webhook(inbound_text("wamid.IN2", "one more question", ts=now_ts()))
    await eventually(lambda: "Reopened by the customer" in inbox_line(b, ts))
    assert "*Open*" in inbox_line(b, ts) and buttons(b, ts) == [TAKE_ACTION, ASSIGN_ACTION, RESOLVE_ACTION]
    await eventually(lambda: any("Reopened by the customer" in n for n in notes(b, ts)))
    conv = await b.one(Conversation)
    assert (conv.inbox_status, conv.status_by) == ("open", "customer")
    assert await waiting() == [conv_id]
    assert await events(b) == [("resolve", RAVI, None), ("reopen", "customer", None)]
    # Staff may resolve it again and reopen it themselves.
    await b.interaction(click(RESOLVE_ACTION, STAFF, conv_id, "2.2"))
    await eventually(lambda: f"*Resolved* by <@{STAFF}>" in inbox_line(b, ts))
    await b.interaction(click(REOPEN_ACTION, STAFF, conv_id, "2.3"))
    await eventually(lambda: f"Reopened by <@{STAFF}>" in inbox_line(b, ts))
    assert [e[0] for e in await events(b)] == ["resolve", "reopen", "resolve", "reopen"]
    # /metrics counts the changes made from Slack, and how long each resolved conversation had been open.
    metrics = await (await b.client.get("/metrics")).text()
    assert 'wabridge_inbox_changes_total{action="resolve"} 2.0' in metrics
    assert 'wabridge_inbox_changes_total{action="reopen"} 1.0' in metrics
    assert "wabridge_time_to_resolve_seconds_count 2.0" in metrics


def reaction(user: str, ts: str, name: str = "white_check_mark") -> dict[str, Any]:
    return {"type": "reaction_added", "user": user, "reaction": name, "event_ts": f"{now_ts()}.000100",
            "item": {"type": "message", "channel": SLACK_CHANNEL, "ts": ts}}


async def test_a_check_mark_on_the_parent_resolves_once_and_only_for_members(make: BridgeFactory) -> None:
    b = await make()
    ts, _ = await _thread(b)
    await b.webhook(inbound_text("wamid.IN2", "second message", ts=now_ts(-60)))
    reply_ts = (await eventually(lambda: b.replies(ts)))[0]["ts"]
    assert await b.event(reaction(STAFF, reply_ts), event_id="EvR1") == 200  # on a reply: not the parent
    assert await b.event(reaction(STAFF, ts, "eyes"), event_id="EvR2") == 200  # another reaction
    assert await b.event(reaction(OUTSIDER, ts), event_id="EvR3") == 200
    told = await eventually(lambda: b.slack.ephemerals)
    assert (told[0]["user"], told[0]["text"]) == (OUTSIDER, refusal(Action.INBOX, Role.CHANNEL_MEMBERS))
    assert (await b.one(Conversation)).inbox_status == "open" and await events(b) == []
    for retry in (None, 1, 2):  # Slack retries an event it thinks was not acknowledged
        assert await b.event(reaction(RAVI, ts), event_id="EvR4", retry_num=retry) == 200
    await eventually(lambda: f"*Resolved* by <@{RAVI}>" in inbox_line(b, ts))
    await eventually(lambda: any(f"<@{RAVI}> resolved this conversation." in n for n in notes(b, ts)))
    assert await events(b) == [("resolve", RAVI, None)]
    assert len(notes(b, ts)) == 1


async def _reply(b: Bridge, ts: str, user: str, text: str, event_id: str) -> None:
    assert await b.event(b.slack.user_message(SLACK_CHANNEL, user, text, thread_ts=ts), event_id=event_id) == 200


@pytest.mark.parametrize("auto_assign", ["first_reply", "off"])
async def test_the_first_reply_from_slack_takes_ownership_when_configured(make: BridgeFactory,
                                                                          auto_assign: str) -> None:
    b = await make(settings_extra={"inbox": {"auto_assign": auto_assign}})
    ts, _ = await _thread(b)
    await b.webhook(echo_text("wamid.ECHO1", "answered from the phone", ts=now_ts(-30)))  # answers, does not take
    await eventually(lambda: len(b.replies(ts)) >= 1)
    await _reply(b, ts, STAFF, "Yes, the refund is on its way", "EvA1")
    await eventually(lambda: len(b.graph.sends_to("919812345678")) == 1)
    await _reply(b, ts, RAVI, "It takes three days", "EvA2")
    await eventually(lambda: len(b.graph.sends_to("919812345678")) == 2)
    if auto_assign == "off":
        async def both_stored() -> bool:
            return await b.count(Message, Message.source == "slack") == 2

        await eventually(both_stored)
        assert (await b.one(Conversation)).owner is None and await events(b) == []
        return
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{STAFF}>"))
    await eventually(lambda: any(f"<@{STAFF}> answered first and owns this conversation now." in n
                                 for n in notes(b, ts)))
    assert (await b.one(Conversation)).owner == STAFF and await events(b) == [("take", STAFF, None)]


async def test_the_thread_export_includes_the_inbox_changes(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    await b.interaction(click(ASSIGN_ACTION, STAFF, conv_id, "6.1", selected_user=RAVI))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{RAVI}>"))
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "6.2"))
    await eventually(lambda: "*Resolved*" in inbox_line(b, ts))
    message = b.slack.thread(SLACK_CHANNEL, ts)[0]
    await b.interaction({"type": "message_action", "callback_id": SHORTCUT_EXPORT, "user": {"id": "UMANAGER"},
                         "channel": {"id": SLACK_CHANNEL}, "message": message, "message_ts": message["ts"],
                         "action_ts": "6.3", "response_url": f"{b.slack.base_url}/response-url/x"})
    await eventually(lambda: b.slack.files)
    [file] = b.slack.files.values()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as http, \
            http.get(file["url_private_download"]) as resp:
        body = await resp.text()
    lines = body.splitlines()
    asked = next(i for i, line in enumerate(lines) if "about my fee refund" in line)
    assigned = next(i for i, line in enumerate(lines) if f"inbox: {STAFF} assigned this to {RAVI}" in line)
    resolved = next(i for i, line in enumerate(lines) if f"inbox: {RAVI} resolved this conversation" in line)
    assert asked < assigned < resolved


async def test_replayed_actions_are_processed_once(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    take = click(TAKE_ACTION, STAFF, conv_id, "3.1")
    resolve = click(RESOLVE_ACTION, STAFF, conv_id, "3.2")
    for payload in (take, take, take, resolve, resolve):
        assert (await b.interaction(payload))[0] == 200
    await eventually(lambda: "*Resolved*" in inbox_line(b, ts))
    # Ravi assigns, then an old take by Asha is replayed: the replay does not take it back.
    await b.interaction(click(ASSIGN_ACTION, RAVI, conv_id, "3.3", selected_user=RAVI))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{RAVI}>"))
    await b.interaction(take)
    await eventually(lambda: len(notes(b, ts)) >= 3)
    # Listeners run after their ack, so the take and the resolve may be applied in either order.
    assert sorted(await events(b)) == [("assign", RAVI, RAVI), ("resolve", STAFF, None), ("take", STAFF, None)]
    assert (await b.one(Conversation)).owner == RAVI
    assert len(notes(b, ts)) == 3
    # A new click that changes nothing is told so, privately, and leaves no audit row.
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "3.4"))
    told = await eventually(lambda: b.slack.ephemerals)
    assert told[0]["user"] == RAVI and "already resolved" in told[0]["text"]
    assert len(await events(b)) == 3


async def test_people_outside_the_channel_are_refused(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    await b.interaction(click(TAKE_ACTION, OUTSIDER, conv_id, "4.1"))
    await b.interaction(click(ASSIGN_ACTION, STAFF, conv_id, "4.2", selected_user=OUTSIDER))
    told = await eventually(lambda: len(b.slack.ephemerals) >= 2 and b.slack.ephemerals)
    assert sorted((e["user"], e["text"]) for e in told) == sorted([
        (OUTSIDER, refusal(Action.INBOX, Role.CHANNEL_MEMBERS)),
        (STAFF, f":no_entry: <@{OUTSIDER}> is not a member of this channel, so cannot own this.")])
    assert await events(b) == []
    conv = await b.one(Conversation)
    assert conv.owner is None and inbox_line(b, ts).startswith("Owner: nobody yet")


@pytest.fixture
async def deployment(aiohttp_client: Any, db_url: str) -> AsyncIterator[Deployment]:
    async with deployment_of(aiohttp_client, db_url) as d:
        yield d


async def test_a_forged_action_naming_another_workspaces_conversation_is_refused(
        deployment: Deployment, caplog: pytest.LogCaptureFixture) -> None:
    d = deployment
    asha = WORKSPACE_STAFF["T0ALPHA"]
    assert await d.install("T0ALPHA") == 200
    assert await d.install("T0BETA") == 200
    await d.customer_writes(BETA, "wamid.B1", "Beta's customer", wa_id="919800000077", name="Zubin")
    await d.customer_writes(ALPHA, "wamid.A1", "Alpha's customer")
    beta_ts = (await eventually(lambda: d.slack.messages(BETA[1], top_level_only=True)))[0]["ts"]
    await eventually(lambda: d.slack.messages(ALPHA[1], top_level_only=True))
    async with d.client.app[appkeys.SESSIONS]() as s:
        convs = {c.slack_team: c.id for c in (await s.scalars(select(Conversation))).all()}

    async def recorded() -> bool:
        async with d.client.app[appkeys.SESSIONS]() as s:
            return (await s.scalar(select(Conversation.slack_thread_ts).where(
                Conversation.id == convs["T0BETA"]))) is not None

    await eventually(recorded)
    # Alpha's staff member sends Beta's conversation id from Alpha's channel, then from Beta's.
    for n, (action_id, channel) in enumerate([(TAKE_ACTION, ALPHA[1]), (RESOLVE_ACTION, ALPHA[1]),
                                              (RESOLVE_ACTION, BETA[1])]):
        status_, _ = await d.slack.send_interaction(d.events_url, click(action_id, asha, convs["T0BETA"],
                                                                        f"5.{n}", channel=channel),
                                                    "test-slack-signing-secret", team_id="T0ALPHA")
        assert status_ == 200
    # Alpha's own conversation can be taken: the refusals are about Beta's only.
    await d.slack.send_interaction(d.events_url, click(TAKE_ACTION, asha, convs["T0ALPHA"], "5.9",
                                                       channel=ALPHA[1]),
                                   "test-slack-signing-secret", team_id="T0ALPHA")

    async def alpha_taken() -> bool:
        async with d.client.app[appkeys.SESSIONS]() as s:
            return await s.scalar(select(Conversation.owner).where(Conversation.id == convs["T0ALPHA"])) == asha

    await eventually(alpha_taken)

    def refused() -> list[str]:
        return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]

    # Listeners answer after their ack: each refusal is logged once its lookup ran.
    await eventually(lambda: sum(f"names the thread {BETA[1]}/{beta_ts} of workspace T0BETA" in m
                                 for m in refused()) == 2)
    assert sum("from workspace T0ALPHA names channel C0BETA of workspace T0BETA" in m for m in refused()) == 1
    async with d.client.app[appkeys.SESSIONS]() as s:
        beta = await s.get(Conversation, convs["T0BETA"])
        audit = (await s.scalars(select(ConversationEvent))).all()
    assert beta is not None and (beta.owner, beta.inbox_status) == (None, "open")
    assert [(e.conversation_id, e.slack_team, e.action) for e in audit] == [(convs["T0ALPHA"], "T0ALPHA", "take")]
