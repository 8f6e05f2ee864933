"""A side failure never decides whether the work happens: Slack lookups answering a proxy's plain-text 503,
invalid JSON or nothing at all, across every listener family (staff replies with mentions, the Home tab,
`/campaign` from a user-group manager, the opt-out shortcut, `wabridge report`); and a bug inside a listener
is logged with its traceback, counted, and told to the person, never answered 400."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.app.factory import create_app
from bot.app.home_component import make_home_component
from bot.app.listener_errors import REPLY_FAILED, TRY_AGAIN
from bot.app.slack_component import make_slack_component
from bot.bridge import staff_replies
from bot.handlers import appkeys
from bot.handlers.slack_actions import SHORTCUT_OPT_OUT
from bot.slack import permissions
from bot.slack.permissions import UNCHECKED
from bot.standins import GraphStandin, SlackStandin
from storage.models import Contact, SlackAction
from tests.harness import FAST_OUTBOX, STAFF, WA_ID, Bridge, eventually, now_ts, thread_with, workspace_standin
from tests.helpers import SLACK_CHANNEL, inbound_text, make_settings

COLLEAGUE, TEACHER, GROUP = "U0RAVI", "U0TEACHER", "S0TEACHERS"
BROKEN = ["text_503", "invalid_json"]


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    """The app with Slack listeners, the Home tab and workers, between the two stand-ins."""
    slack = await workspace_standin()
    slack.add_user(COLLEAGUE, "ravi", real_name="Ravi Kumar")
    slack.add_user(TEACHER, "meena", real_name="Meena")
    slack.join(SLACK_CHANNEL, TEACHER)
    slack.add_usergroup(GROUP, "teachers", [TEACHER])
    graph = GraphStandin()
    await graph.start()
    settings = make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url)
    settings.slack.campaign_managers.append(GROUP)
    components = [make_slack_component(**FAST_OUTBOX), make_home_component(refresh_interval=3600)]
    client = await aiohttp_client(create_app(settings, components=components))
    try:
        yield Bridge(client, slack, graph)
    finally:
        await slack.stop()
        await graph.stop()


async def _thread(b: Bridge) -> str:
    await b.webhook(inbound_text("wamid.IN", "Is the Monday batch full?", ts=now_ts(-600)))
    parent, _ = await thread_with(b, 1)
    return str(parent["ts"])


async def _reply(b: Bridge, thread_ts: str, text: str, event_id: str) -> dict[str, Any]:
    event = b.slack.user_message(SLACK_CHANNEL, STAFF, text, thread_ts=thread_ts)
    assert await b.event(event, event_id=event_id) == 200
    return event


async def _ledger_closed(b: Bridge) -> list[Any]:
    async with b.app[appkeys.SESSIONS]() as s:
        from sqlalchemy import select
        rows = (await s.scalars(select(SlackAction).where(SlackAction.key.startswith("reply:")))).all()
    return [r.outcome.get("outcome") for r in rows if r.outcome.get("state") == "done"]


# ---- a staff reply that mentions a colleague --------------------------------------------------------


@pytest.mark.parametrize("kind", BROKEN)
async def test_a_reply_naming_a_colleague_goes_out_with_the_id_when_users_info_is_broken(
        bridge: Bridge, kind: str) -> None:
    thread_ts = await _thread(bridge)
    bridge.slack.break_answers("users.info", kind, times=None)
    bridge.slack.break_answers("usergroups.list", kind, times=None)
    bridge.slack.break_answers("conversations.info", kind, times=None)
    await _reply(bridge, thread_ts, f"<@{COLLEAGUE}> of <!subteam^{GROUP}> will call you from <#{SLACK_CHANNEL}>",
                 "EvMENTION")
    sends = await eventually(lambda: bridge.graph.sends_to(WA_ID))
    assert sends[0].payload["text"]["body"] == f"@{COLLEAGUE} of @{GROUP} will call you from #{SLACK_CHANNEL}"
    assert await eventually(lambda: _ledger_closed(bridge)) == ["sent"]
    bridge.slack.mend("users.info")  # a failed lookup is not remembered: the next reply names him
    await _reply(bridge, thread_ts, f"<@{COLLEAGUE}> again", "EvMENTION2")
    later = await eventually(lambda: [s for s in bridge.graph.sends_to(WA_ID) if "again" in s.payload["text"]["body"]])
    assert later[0].payload["text"]["body"] == "@ravi again"


async def test_a_hanging_lookup_holds_a_reply_only_for_the_lookup_timeout(bridge: Bridge) -> None:
    thread_ts = await _thread(bridge)
    bridge.slack.break_answers("users.info", "hang", times=None)
    bridge.slack.break_answers("usergroups.list", "hang", times=None)
    await _reply(bridge, thread_ts, f"<@{COLLEAGUE}> and <!subteam^{GROUP}> will call", "EvHANG")
    # Well inside the Slack client's own 30 s: only the lookups' few seconds can have let it through.
    sends = await eventually(lambda: bridge.graph.sends_to(WA_ID), timeout=20)
    assert sends[0].payload["text"]["body"] == f"@{COLLEAGUE} and @{GROUP} will call"
    assert bridge.slack.calls_to("users.info") and bridge.slack.calls_to("usergroups.list")


# ---- the Home tab -----------------------------------------------------------------------------------


async def _open_home(b: Bridge, user: str) -> None:
    url = str(b.client.make_url("/slack/events"))
    status, _ = await b.slack.send_event(url, {"type": "app_home_opened", "user": user, "channel": "D0HOME",
                                               "tab": "home", "event_ts": f"{time.time():.6f}"},
                                         b.app[appkeys.SETTINGS].slack.signing_secret)
    assert status == 200


@pytest.mark.parametrize("kind", BROKEN)
async def test_the_home_tab_is_published_when_names_and_groups_cannot_be_read(bridge: Bridge, kind: str) -> None:
    thread_ts = await _thread(bridge)
    await _reply(bridge, thread_ts, "Yes, seats left", "EvSEATS")
    await eventually(lambda: _ledger_closed(bridge))
    bridge.slack.break_answers("users.info", kind, times=None)
    bridge.slack.break_answers("usergroups.users.list", kind, times=None)
    await _open_home(bridge, "UMANAGER")  # a manager by id: the dashboard names responders
    view = await eventually(lambda: bridge.slack.home_views.get("UMANAGER"))
    assert STAFF in json.dumps(view["blocks"])  # the responder, by id, since Slack could not name her
    await _open_home(bridge, TEACHER)  # a manager through a group Slack cannot read: still a tab
    view = await eventually(lambda: bridge.slack.home_views.get(TEACHER))
    assert "Your replies" in json.dumps(view["blocks"])


# ---- /campaign from a member of a manager user group --------------------------------------------------


async def _campaign(b: Bridge, user: str, text: str = "") -> tuple[int, str]:
    form = {"token": "t", "team_id": b.slack.team_id, "channel_id": SLACK_CHANNEL, "user_id": user,
            "command": "/campaign", "text": text, "api_app_id": b.slack.app_id,
            "response_url": f"{b.slack.base_url}/response-url/x", "trigger_id": b.slack.issue_trigger_id()}
    return await b.slack_request(urlencode(form).encode(), "application/x-www-form-urlencoded")


@pytest.mark.parametrize("kind", BROKEN)
async def test_campaign_from_a_group_manager_is_told_not_refused_and_works_on_the_last_answer(
        bridge: Bridge, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bridge.slack.break_answers("usergroups.users.list", kind)
    status, body = await _campaign(bridge, TEACHER)
    assert status == 200 and UNCHECKED in body  # not 400, not "only campaign managers", and nothing opened
    assert bridge.slack.calls_to("views.open") == []
    status, _ = await _campaign(bridge, TEACHER)  # the failure was not kept: asked again, and she may
    await eventually(lambda: bridge.slack.calls_to("views.open"))
    monkeypatch.setattr(permissions, "CACHE_SECONDS", 0.0)  # every answer is stale from now on
    bridge.slack.break_answers("usergroups.users.list", kind, times=None)
    status, _ = await _campaign(bridge, TEACHER)
    assert status == 200
    await eventually(lambda: len(bridge.slack.calls_to("views.open")) == 2)


# ---- the opt-out shortcut ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BROKEN)
async def test_opt_out_shortcut_while_members_cannot_be_read(bridge: Bridge, kind: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    thread_ts = await _thread(bridge)
    message = bridge.slack.thread(SLACK_CHANNEL, thread_ts)[0]

    def shortcut(action_ts: str) -> dict[str, Any]:
        return {"type": "message_action", "callback_id": SHORTCUT_OPT_OUT, "user": {"id": STAFF},
                "channel": {"id": SLACK_CHANNEL}, "message": message, "message_ts": message["ts"],
                "action_ts": action_ts, "response_url": f"{bridge.slack.base_url}/response-url/x"}

    bridge.slack.break_answers("conversations.members", kind)
    status, _ = await bridge.interaction(shortcut("1.1"))
    assert status == 200
    told = await eventually(lambda: [e for e in bridge.slack.ephemerals if e["text"] == UNCHECKED])
    assert told[0]["user"] == STAFF
    assert not (await bridge.one(Contact, Contact.wa_id == WA_ID)).opted_out
    monkeypatch.setattr(permissions, "CACHE_SECONDS", 0.0)
    await bridge.interaction(shortcut("1.2"))  # asked again at once: the failure was not kept
    await eventually(lambda: _opted_out(bridge, True))
    bridge.slack.break_answers("conversations.members", kind, times=None)
    await bridge.interaction(shortcut("1.3"))  # Slack silent again: its last answer stands
    await eventually(lambda: _opted_out(bridge, False))


async def _opted_out(b: Bridge, expected: bool) -> bool:
    return bool((await b.one(Contact, Contact.wa_id == WA_ID)).opted_out) is expected


# ---- wabridge report ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BROKEN)
async def test_report_names_fall_back_to_ids_when_users_info_is_broken(
        tmp_path: Path, db_url: str, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_report import _run, _scenario

    async with SlackStandin(bot_token="xoxb-test", strict=True) as slack:
        slack.add_user("U0ASHA", "asha", real_name="Asha Verma")
        config = await _scenario(tmp_path, db_url, slack)
        slack.break_answers("users.info", kind, times=None)
        assert await _run(["--config", str(config), "report", "--format", "json"]) == 0
    replies = json.loads(capsys.readouterr().out)["replies"]
    assert {r["responder"] for r in replies} == {"U0ASHA", "U0BILAL", "phone app"}


# ---- a bug inside a listener ------------------------------------------------------------------------------


async def test_a_bug_in_the_reply_listener_is_logged_counted_and_told_to_the_author(
        bridge: Bridge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    thread_ts = await _thread(bridge)

    async def broken(*_: Any) -> Any:
        raise KeyError("a bug of ours")

    monkeypatch.setattr(staff_replies, "whatsapp_text", broken)  # the wing, called by the reply listener
    caplog.set_level(logging.ERROR, logger="bot.app.bolt")
    await _reply(bridge, thread_ts, "Yes, seats left", "EvBUG")
    told = await eventually(lambda: [e for e in bridge.slack.ephemerals if e["text"] == REPLY_FAILED])
    assert told[0]["user"] == STAFF and told[0]["thread_ts"] == thread_ts
    failed = [r for r in caplog.records if r.name == "bot.app.bolt" and r.exc_info]
    assert failed and failed[0].exc_info is not None and failed[0].exc_info[0] is KeyError
    assert bridge.app[appkeys.METRICS].listener_errors.labels("message")._value.get() == 1
    assert await _ledger_closed(bridge) == ["error"]  # closed, not left for the sweep to call a stop
    assert bridge.graph.sends_to(WA_ID) == []


async def test_a_bug_in_a_command_or_a_shortcut_is_told_not_answered_400(
        bridge: Bridge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from bot.handlers import slack_actions, slack_campaign

    async def broken(*_: Any, **__: Any) -> Any:
        raise AttributeError("a bug of ours")

    def broken_lines(*_: Any) -> str:
        raise AttributeError("a bug of ours")

    monkeypatch.setattr(slack_campaign, "campaign_lines", broken_lines)
    caplog.set_level(logging.ERROR, logger="bot.app.bolt")
    status, body = await _campaign(bridge, STAFF, "list")
    assert status == 200 and TRY_AGAIN in body
    thread_ts = await _thread(bridge)
    message = bridge.slack.thread(SLACK_CHANNEL, thread_ts)[0]
    monkeypatch.setattr(slack_actions, "first_delivery", broken)
    status, _ = await bridge.interaction({
        "type": "message_action", "callback_id": SHORTCUT_OPT_OUT, "user": {"id": STAFF},
        "channel": {"id": SLACK_CHANNEL}, "message": message, "message_ts": message["ts"], "action_ts": "9.9",
        "response_url": f"{bridge.slack.base_url}/response-url/x"})
    assert status == 200
    said = await eventually(lambda: bridge.slack.calls_to("response_url"))
    assert said[0].args["text"] == TRY_AGAIN and said[0].args["response_type"] == "ephemeral"
    logged = [r for r in caplog.records if r.name == "bot.app.bolt" and r.exc_info]
    assert [r.exc_info[0] for r in logged if r.exc_info] == [AttributeError, AttributeError]
    await asyncio.sleep(0)


async def test_socket_mode_requests_get_the_same_shape_check(bridge: Bridge) -> None:
    from slack_bolt.request.async_request import AsyncBoltRequest

    from bot.app.bolt import BOLT

    bolt = bridge.app[BOLT]
    body = {"type": "block_actions", "team": {"id": bridge.slack.team_id}, "api_app_id": bridge.slack.app_id,
            "user": {"id": STAFF}, "actions": [{"action_id": "wabridge_open_template_picker", "value": [1]}]}
    answer = await bolt.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    assert answer.status == 400 and "malformed" in answer.body


async def test_a_bug_in_the_home_tab_a_modal_or_a_button_is_logged_and_told(
        bridge: Bridge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from bot.app.home_component import HomePublisher
    from bot.app.listener_errors import HOME_FAILED
    from bot.handlers import slack_actions
    from bot.handlers.slack_actions import PICKER_CALLBACK, PickerTarget
    from bot.handlers.slack_messages import OPEN_PICKER_ACTION

    async def broken(*_: Any, **__: Any) -> Any:
        raise TypeError("a bug of ours")

    caplog.set_level(logging.ERROR, logger="bot.app.bolt")
    monkeypatch.setattr(HomePublisher, "view_for", broken)
    await _open_home(bridge, STAFF)
    home = await eventually(lambda: bridge.slack.home_views.get(STAFF))
    assert HOME_FAILED in json.dumps(home["blocks"])  # the tab says so rather than staying blank

    thread_ts = await _thread(bridge)
    monkeypatch.setattr(slack_actions, "thread_by_conversation", broken)
    target = PickerTarget(1, SLACK_CHANNEL, thread_ts).dump()
    status, text = await bridge.interaction({
        "type": "view_submission", "user": {"id": STAFF},
        "view": {"id": "V1", "type": "modal", "callback_id": PICKER_CALLBACK, "private_metadata": target,
                 "state": {"values": {}}}})
    assert status == 200
    answer = json.loads(text)
    assert answer["response_action"] == "update" and TRY_AGAIN in json.dumps(answer["view"])

    status, _ = await bridge.interaction({
        "type": "block_actions", "user": {"id": STAFF}, "channel": {"id": SLACK_CHANNEL},
        "response_url": f"{bridge.slack.base_url}/response-url/y",
        "actions": [{"action_id": OPEN_PICKER_ACTION, "block_id": "b", "type": "button",
                     "value": json.dumps({"conversation_id": 1}), "action_ts": "1"}]})
    assert status == 200
    said = await eventually(lambda: bridge.slack.calls_to("response_url"))
    assert said[0].args["text"] == TRY_AGAIN
    logged = [r.exc_info[0] for r in caplog.records if r.name == "bot.app.bolt" and r.exc_info]
    assert logged == [TypeError, TypeError, TypeError]
    errors = bridge.app[appkeys.METRICS].listener_errors
    assert [errors.labels(k)._value.get() for k in ("app_home_opened", "view_submission", "block_actions")] == [
        1, 1, 1]
