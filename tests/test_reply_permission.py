"""Who may reply to customers: members of the app's workspace by default, not Slack Connect users or guests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.bridge.staff_replies import Outcome
from bot.core.config import ConfigError, ReplyRole
from bot.handlers import appkeys
from bot.handlers.slack_actions import PICKER_CALLBACK, TEMPLATE_BLOCK, TEMPLATE_SELECT, PickerTarget
from bot.handlers.slack_messages import handle_thread_message
from bot.slack.reply_gate import EXTERNAL, GUEST, ReplyGate, home_teams, verdict_from_event, verdict_from_user
from bot.standins import SlackStandin
from storage.models import Conversation, Template
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, bridges, eventually, now_ts, thread_with
from tests.helpers import BOT_TOKEN, SLACK_CHANNEL, WABA, inbound_text, make_settings

PARTNER, GUEST_USER = "U0PARTNER", "U0GUEST"
PARTNER_TEAM = "T0PARTNER"


def test_home_is_the_installation_its_org_and_the_channel_workspace() -> None:
    body = {"team_id": "T0SENDER", "authorizations": [{"team_id": "T0HOME", "enterprise_id": "E0ORG"}]}
    assert home_teams(body) == {"T0HOME", "E0ORG"}  # authorizations first, as bolt reads shared channels
    assert home_teams({"team_id": "T0HOME"}, "T0CHANNEL") == {"T0HOME", "T0CHANNEL"}
    assert home_teams({}) == frozenset()


def test_the_event_says_when_its_author_is_from_another_organisation() -> None:
    home = frozenset({"T0HOME"})
    assert verdict_from_event({"user": "U1", "user_team": PARTNER_TEAM, "team": PARTNER_TEAM}, home) == EXTERNAL
    assert verdict_from_event({"user": "U1", "team": PARTNER_TEAM}, home) == EXTERNAL
    assert verdict_from_event({"user": "U1", "user_team": "T0HOME", "source_team": PARTNER_TEAM}, home) is None
    assert verdict_from_event({"user": "U1"}, home) is None  # nothing said: users.info decides
    # In an Enterprise Grid org, another workspace's T… id may be the same org: users.info decides.
    assert verdict_from_event({"user": "U1", "user_team": "T0OTHERWS"}, frozenset({"T0HOME", "E0ORG"})) is None


def test_users_info_says_who_is_a_stranger_or_a_guest() -> None:
    home = frozenset({"T0HOME", "E0ORG"})
    assert verdict_from_user({"id": "U1", "team_id": "T0HOME"}, home) is None
    assert verdict_from_user({"id": "U1", "team_id": "T0HOME", "is_stranger": True}, home) == EXTERNAL
    assert verdict_from_user({"id": "U1", "team_id": PARTNER_TEAM}, home) == EXTERNAL
    assert verdict_from_user({"id": "U1", "team_id": "T0OTHERWS", "enterprise_user": {"enterprise_id": "E0ORG"}},
                             home) is None  # another workspace of the same Enterprise Grid org
    assert verdict_from_user({"id": "U1", "team_id": "T0HOME", "is_restricted": True}, home) == GUEST
    assert verdict_from_user({"id": "U1", "team_id": "T0HOME", "is_ultra_restricted": True}, home) == GUEST


def test_the_setting_is_checked_in_one_line() -> None:
    settings = make_settings("sqlite+aiosqlite:///x.db")
    assert settings.slack.permissions.reply_to_customers is ReplyRole.WORKSPACE_MEMBERS
    with pytest.raises(ConfigError) as err:
        make_settings("sqlite+aiosqlite:///x.db", slack={"bot_token": "xoxb-1", "signing_secret": "s",
                                                         "permissions": {"reply_to_customers": "everyone"}})
    assert str(err.value).startswith("slack.permissions.reply_to_customers: ")
    assert "'workspace_members' or 'anyone'" in str(err.value) and "\n" not in str(err.value)


async def test_a_failed_users_info_leaves_the_team_check_to_decide() -> None:
    async with SlackStandin(bot_token=BOT_TOKEN) as slack:
        slack.add_user(GUEST_USER, "guest", is_restricted=True)
        gate = ReplyGate(ReplyRole.WORKSPACE_MEMBERS, AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url))
        body = {"team_id": slack.team_id}
        event = {"user": GUEST_USER, "team": slack.team_id}
        slack.fail_next("users.info", "internal_error")
        assert await gate.refusal(body, event) is None  # a Slack hiccup never holds a reply back
        assert await gate.refusal(body, event) == GUEST  # the failure was not remembered as an answer
        assert await gate.refusal(body, event) == GUEST
        assert len(slack.calls_to("users.info")) == 2  # the answer is cached
        anyone = ReplyGate(ReplyRole.ANYONE, AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url))
        assert await anyone.refusal(body, {"user": PARTNER, "user_team": PARTNER_TEAM}) is None


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _thread(b: Bridge) -> str:
    b.slack.add_user(PARTNER, "partner", team_id=PARTNER_TEAM)
    b.slack.add_user(GUEST_USER, "guest", is_restricted=True)
    await b.webhook(inbound_text("wamid.IN", "Is the Monday batch full?", ts=now_ts(-600)))
    parent, _ = await thread_with(b, 1)
    return str(parent["ts"])


def _sent_texts(b: Bridge) -> list[str]:
    return [s.payload.get("text", {}).get("body") for s in b.graph.sends_to(WA_ID)]


async def test_slack_connect_users_and_guests_are_refused_and_told_why(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _thread(b)
    external = b.slack.user_message(SLACK_CHANNEL, PARTNER, "from the partner", thread_ts=thread_ts)
    assert external["user_team"] == PARTNER_TEAM  # the shape Slack gives a Slack Connect user's message
    assert await b.event(external, event_id="EvPARTNER") == 200
    guest = b.slack.user_message(SLACK_CHANNEL, GUEST_USER, "from a guest", thread_ts=thread_ts)
    assert await b.event(guest, event_id="EvGUEST") == 200
    member = b.slack.user_message(SLACK_CHANNEL, STAFF, "from staff", thread_ts=thread_ts)
    assert await b.event(member, event_id="EvSTAFF") == 200
    await eventually(lambda: "from staff" in _sent_texts(b))
    notes = await eventually(lambda: (e := [x for x in b.slack.ephemerals if x["user"] in (PARTNER, GUEST_USER)])
                             and len(e) == 2 and e)
    assert {n["user"]: "Slack Connect" in n["text"] for n in notes} == {PARTNER: True, GUEST_USER: False}
    assert "guests of this workspace" in next(n["text"] for n in notes if n["user"] == GUEST_USER)
    assert _sent_texts(b) == ["from staff"]


async def test_anyone_lets_slack_connect_users_reply(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _thread(b)
    deps = b.app[appkeys.DEPS]
    external = b.slack.user_message(SLACK_CHANNEL, PARTNER, "partner may", thread_ts=thread_ts)
    body = {"team_id": b.slack.team_id, "event_id": "EvANY"}
    outcome = await handle_thread_message(deps, body, external, ReplyGate(ReplyRole.ANYONE, deps.slack))
    assert outcome is Outcome.SENT and _sent_texts(b) == ["partner may"]


async def test_a_slack_connect_user_in_the_channel_cannot_send_a_template(make: BridgeFactory) -> None:
    b = await make()
    thread_ts = await _thread(b)
    b.slack.join(SLACK_CHANNEL, PARTNER, GUEST_USER)  # members: send_templates (channel_members) alone lets them
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        template = Template(waba_id=WABA, name="hello", language="en", category="UTILITY", status="APPROVED",
                            components=[{"type": "BODY", "text": "Hello!"}])
        s.add(template)
        await s.flush()
        template_id = template.id
    async with b.app[appkeys.SESSIONS]() as s:
        conversation_id = (await s.scalars(select(Conversation.id))).one()
    target = PickerTarget(conversation_id, SLACK_CHANNEL, thread_ts).dump()
    values = {TEMPLATE_BLOCK: {TEMPLATE_SELECT: {"type": "static_select",
                                                 "selected_option": {"value": str(template_id)}}}}

    def submission(user: str, team: str, view_id: str) -> dict[str, Any]:
        return {"type": "view_submission", "user": {"id": user, "team_id": team}, "view": {
            "id": view_id, "type": "modal", "callback_id": PICKER_CALLBACK, "private_metadata": target,
            "state": {"values": values}}}

    status, answer = await b.interaction(submission(PARTNER, PARTNER_TEAM, "VPARTNER"))
    assert status == 200 and json.loads(answer)["errors"][TEMPLATE_BLOCK] == EXTERNAL
    status, answer = await b.interaction(submission(GUEST_USER, b.slack.team_id, "VGUEST"))
    assert status == 200 and json.loads(answer)["errors"][TEMPLATE_BLOCK] == GUEST
    assert b.graph.sends_to(WA_ID) == []
    status, _ = await b.interaction(submission(STAFF, b.slack.team_id, "VSTAFF"))
    assert status == 200
    await eventually(lambda: b.graph.sends_to(WA_ID))
