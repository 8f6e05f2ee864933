"""Saved replies: the library from `/wabridge replies`, and a saved reply sent from a thread's shortcut as the
person's own reply (variables filled, edited before sending, window, once, workspace scope)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import update

from bot.handlers import appkeys
from bot.handlers.slack_messages import OPEN_PICKER_ACTION
from bot.handlers.slack_saved_replies import LIBRARY_REFUSED, NOT_HERE, SHORTCUT
from bot.slack import reply_ledger
from bot.slack import saved_replies as ui
from storage.models import Conversation, Message, SavedReply, SlackAction, utcnow
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, all_text, bridges, eventually, now_ts, thread_with
from tests.helpers import PNID, SLACK_CHANNEL, inbound_text


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _command(b: Bridge, text: str, user: str = STAFF) -> tuple[int, str]:
    form = {"token": "t", "team_id": b.slack.team_id, "channel_id": SLACK_CHANNEL, "user_id": user,
            "command": "/wabridge", "text": text, "api_app_id": b.slack.app_id,
            "response_url": f"{b.slack.base_url}/response-url/x", "trigger_id": b.slack.issue_trigger_id()}
    return await b.slack_request(urlencode(form).encode(), "application/x-www-form-urlencoded")


def _click(view: dict[str, Any], action_id: str, value: str) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": STAFF}, "view": view,
            "container": {"type": "view", "view_id": view["id"]},
            "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value,
                         "action_ts": "1"}]}


def _edit_values(name: str, text: str, number: str = ui.EVERY_NUMBER) -> dict[str, Any]:
    return {ui.NAME_BLOCK: {ui.VALUE_ACTION: {"type": "plain_text_input", "value": name}},
            ui.BODY_BLOCK: {ui.VALUE_ACTION: {"type": "plain_text_input", "value": text}},
            ui.NUMBER_BLOCK: {ui.VALUE_ACTION: {"type": "static_select", "selected_option": {"value": number}}}}


async def _save(b: Bridge, view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    status_, answer = await b.interaction({"type": "view_submission", "user": {"id": STAFF},
                                           "view": {**view, "state": {"values": values}}})
    assert status_ == 200
    return dict(json.loads(answer)) if answer else {}


def _library_text(view: dict[str, Any]) -> str:
    return " ".join(str(blk.get("text", {}).get("text", "")) for blk in view["blocks"])


async def test_the_library_adds_edits_and_deletes_saved_replies(make: BridgeFactory) -> None:
    b = await make()
    status_, usage = await _command(b, "help")
    assert status_ == 200 and "/wabridge replies" in usage and b.slack.views == {}
    b.slack.add_user("U0GUEST", "guest", is_restricted=True)
    assert await _command(b, "replies", user="U0GUEST") == (200, LIBRARY_REFUSED)  # a guest keeps none
    assert b.slack.views == {}
    status_, _ = await _command(b, "replies")
    assert status_ == 200
    library = await eventually(lambda: next(iter(b.slack.views.values()), None))
    assert library["callback_id"] == ui.LIBRARY_CALLBACK and "No saved replies yet" in _library_text(library)
    assert "one image or document" in json.dumps(library)

    await b.interaction(_click(library, ui.ADD_ACTION, "new"))
    editor = await eventually(lambda: (v := b.slack.views[library["id"]])["callback_id"] == ui.EDIT_CALLBACK and v)
    answer = await _save(b, editor, _edit_values("Fees", " "))
    assert answer == {"response_action": "errors", "errors": {ui.BODY_BLOCK: "Write the reply."}}
    answer = await _save(b, editor, _edit_values("Fees", "Hi {first_name}, fees are due on the 5th.", PNID))
    assert answer["response_action"] == "update" and "Fees" in _library_text(answer["view"])
    again = await _save(b, editor, _edit_values("Fees", "Hi {first_name}, fees are due on the 5th.", PNID))
    assert again == {}  # the same submission delivered twice adds one saved reply
    row = await b.one(SavedReply)
    assert (row.slack_team, row.phone_number_id, row.created_by) == ("default", PNID, STAFF)

    await b.interaction(_click(library, ui.EDIT_ACTION, str(row.id)))
    editor = await eventually(lambda: (v := b.slack.views[library["id"]])["callback_id"] == ui.EDIT_CALLBACK
                              and ui.BODY_BLOCK in json.dumps(v) and "fees are due" in json.dumps(v) and v)
    answer = await _save(b, editor, _edit_values("Fee dates", "Fees are due on the 10th."))
    assert "Fee dates" in _library_text(answer["view"])
    row = await b.one(SavedReply)
    assert (row.name, row.text, row.phone_number_id) == ("Fee dates", "Fees are due on the 10th.", None)

    await b.interaction(_click(b.slack.views[library["id"]], ui.DELETE_ACTION, str(row.id)))
    await eventually(lambda: "No saved replies yet" in _library_text(b.slack.views[library["id"]]))
    assert await b.count(SavedReply) == 0


async def _thread(b: Bridge, *, customer_wrote_at: int) -> dict[str, Any]:
    await b.webhook(inbound_text("wamid.IN", "When are the fees due?", ts=customer_wrote_at))
    parent, _ = await thread_with(b, 1)
    return parent


async def _add(b: Bridge, text: str, *, team: str = "default", name: str = "Fees") -> int:
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        row = SavedReply(slack_team=team, name=name, text=text, created_by=STAFF)
        s.add(row)
        await s.flush()
        return row.id


async def _shortcut(b: Bridge, parent: dict[str, Any]) -> None:
    await b.interaction({"type": "message_action", "callback_id": SHORTCUT, "user": {"id": STAFF},
                         "channel": {"id": SLACK_CHANNEL}, "message": parent, "message_ts": parent["ts"],
                         "action_ts": "2.1", "response_url": f"{b.slack.base_url}/response-url/x"})


async def _picker(b: Bridge, parent: dict[str, Any]) -> dict[str, Any]:
    await _shortcut(b, parent)
    return dict(await eventually(lambda: next((v for v in b.slack.views.values()
                                               if v["callback_id"] == ui.PICKER_CALLBACK), None)))


def _send_values(reply_id: int, text: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {ui.REPLY_BLOCK: {ui.REPLY_SELECT: {"type": "external_select",
                                                                 "selected_option": {"value": str(reply_id)}}}}
    if text is not None:
        values[f"{ui.TEXT_PREFIX}{reply_id}"] = {ui.VALUE_ACTION: {"type": "plain_text_input", "value": text}}
    return values


async def test_a_saved_reply_is_filled_in_edited_and_sent_once_as_the_persons_reply(make: BridgeFactory) -> None:
    b = await make()
    parent = await _thread(b, customer_wrote_at=now_ts(-600))
    reply_id = await _add(b, "Hi {first_name} ({name}, {number}), {agent} from {business} here: fees are due on "
                             "the 5th. {unknown} stays.")
    view = await _picker(b, parent)
    status_, answer = await b.interaction({"type": "block_suggestion", "user": {"id": STAFF}, "view": view,
                                          "action_id": ui.REPLY_SELECT, "block_id": ui.REPLY_BLOCK, "value": "fee"})
    options = json.loads(answer)["options"]
    assert [o["text"]["text"] for o in options] == ["Fees"]

    await b.interaction({"type": "block_actions", "user": {"id": STAFF}, "view": view,
                         "container": {"type": "view", "view_id": view["id"]},
                         "actions": [{"action_id": ui.REPLY_SELECT, "block_id": ui.REPLY_BLOCK,
                                      "type": "external_select", "selected_option": options[0],
                                      "action_ts": "3"}]})
    view = await eventually(lambda: (v := b.slack.views[view["id"]]) and len(v["blocks"]) > 2 and v)
    preview = view["blocks"][2]["element"]["initial_value"]
    assert preview == ("Hi Ravi (Ravi, +91 98123 45678), asha from lucknow here: fees are due on the 5th. "
                       "{unknown} stays.")

    edited = preview.replace("the 5th", "the 7th")
    submission = {"type": "view_submission", "user": {"id": STAFF},
                  "view": {**view, "state": {"values": _send_values(reply_id, edited)}}}
    for _ in range(3):  # Slack retries, or someone replays the signed request
        status_, answer = await b.interaction(submission)
        assert status_ == 200
    sends = await eventually(lambda: b.graph.sends_to(WA_ID))
    await eventually(lambda: b.count(Message, Message.source == "slack"))
    await asyncio.sleep(0.5)  # a second send, had a replay slipped through, would show up now
    assert [s.payload["text"]["body"] for s in b.graph.sends_to(WA_ID)] == [edited]
    msg = await b.one(Message, Message.source == "slack")
    assert (msg.slack_user, msg.wamid, msg.text) == (STAFF, sends[0].wamid, edited)
    assert msg.content["saved_reply"]["id"] == reply_id
    assert (await b.one(SavedReply)).uses == 1
    copy = await eventually(lambda: [m for m in b.slack.thread(SLACK_CHANNEL, parent["ts"])
                                     if "the 7th" in all_text(m)])
    assert f"<@{STAFF}>" in all_text(copy[0])
    ledger = await _ledger(b)
    assert [a.outcome for a in ledger] == [{"state": "done", "outcome": "sent"}]  # on record like a typed reply
    # Had the process stopped after storing the reply and before closing its record, the sweep finds it sent;
    # one stopped before anything was stored is noted in the thread.
    deps = b.app[appkeys.DEPS]
    pending = {"state": "sending", "conversation_id": msg.conversation_id, "user": STAFF, "ts": ""}
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(update(SlackAction).where(SlackAction.key == ledger[0].key).values(outcome=pending))
    assert await reply_ledger.sweep(deps, older_than=timedelta(0)) == 0
    assert [a.outcome for a in await _ledger(b)] == [{"state": "done", "outcome": "sent"}]
    await reply_ledger.begin(deps.sessions, reply_ledger.reply_key(SLACK_CHANNEL, "saved:stopped"),
                             conversation_id=msg.conversation_id, user=STAFF, ts="")
    assert await reply_ledger.sweep(deps, older_than=timedelta(0)) == 1


async def _ledger(b: Bridge) -> list[SlackAction]:
    from sqlalchemy import select

    async with b.app[appkeys.SESSIONS]() as s:
        return list((await s.scalars(select(SlackAction).where(SlackAction.key.startswith("reply:")))).all())


async def test_outside_the_window_the_template_picker_is_offered_instead(make: BridgeFactory) -> None:
    b = await make()
    parent = await _thread(b, customer_wrote_at=now_ts(-600))
    reply_id = await _add(b, "Fees are due on the 5th.")
    view = await _picker(b, parent)  # opened while the window was open …
    async with b.app[appkeys.SESSIONS]() as s, s.begin():  # … and sent after it closed
        await s.execute(update(Conversation).values(last_customer_message_at=utcnow() - timedelta(hours=25)))
    status_, answer = await b.interaction({"type": "view_submission", "user": {"id": STAFF},
                                          "view": {**view, "state": {"values": _send_values(reply_id, "Fees?")}}})
    assert status_ == 200 and answer in ("", "{}")  # the modal closes; the thread says why nothing went
    told = await eventually(lambda: b.slack.ephemerals)
    assert "24-hour window closed" in told[0]["text"] and told[0]["user"] == STAFF
    assert told[0]["blocks"][1]["elements"][0]["action_id"] == OPEN_PICKER_ACTION

    b.slack.ephemerals.clear()
    await _shortcut(b, parent)  # the shortcut itself offers the template picker once the window is closed
    told = await eventually(lambda: b.slack.ephemerals)
    assert told[0]["blocks"][1]["elements"][0]["action_id"] == OPEN_PICKER_ACTION
    await asyncio.sleep(0.3)
    assert b.graph.sends_to(WA_ID) == [] and (await b.one(SavedReply)).uses == 0
    assert [v for v in b.slack.views.values() if v["callback_id"] == ui.PICKER_CALLBACK] == [view]


async def test_another_workspaces_saved_reply_is_refused_and_logged(make: BridgeFactory,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    b = await make()
    parent = await _thread(b, customer_wrote_at=now_ts(-600))
    await _add(b, "Ours", name="Ours")
    theirs = await _add(b, "Their bank details are …", team="T0OTHER", name="Bank")
    view = await _picker(b, parent)
    _, answer = await b.interaction({"type": "block_suggestion", "user": {"id": STAFF}, "view": view,
                                    "action_id": ui.REPLY_SELECT, "block_id": ui.REPLY_BLOCK, "value": ""})
    assert [o["text"]["text"] for o in json.loads(answer)["options"]] == ["Ours"]
    with caplog.at_level(logging.WARNING):
        status_, answer = await b.interaction({"type": "view_submission", "user": {"id": STAFF}, "view": {
            **view, "state": {"values": _send_values(theirs, "Their bank details are …")}}})
        await b.interaction(_click(view, ui.EDIT_ACTION, str(theirs)))
        await b.interaction(_click(view, ui.DELETE_ACTION, str(theirs)))
        await eventually(lambda: sum(f"saved reply {theirs} of workspace T0OTHER: refused" in r.getMessage()
                                     for r in caplog.records) >= 3)
    assert status_ == 200 and json.loads(answer) == {"response_action": "errors", "errors": {ui.REPLY_BLOCK: NOT_HERE}}
    await asyncio.sleep(0.3)
    assert b.graph.sends_to(WA_ID) == [] and await b.count(SavedReply) == 2
    assert b.slack.views[view["id"]]["callback_id"] == ui.PICKER_CALLBACK  # no editor opened on their reply


async def test_the_thread_parents_saved_reply_button_opens_the_picker(make: BridgeFactory) -> None:
    b = await make()
    parent = await _thread(b, customer_wrote_at=now_ts(-600))
    await _add(b, "Fees are due on the 5th.")
    parent = await eventually(lambda: next((m for m in b.parents() if ui.OPEN_ACTION in json.dumps(m)), None))
    button = next(e for blk in parent["blocks"] if blk["type"] == "actions" for e in blk["elements"]
                  if e.get("action_id") == ui.OPEN_ACTION)
    await b.interaction({"type": "block_actions", "user": {"id": STAFF}, "channel": {"id": SLACK_CHANNEL},
                         "container": {"type": "message", "channel_id": SLACK_CHANNEL, "message_ts": parent["ts"]},
                         "message": parent, "actions": [{**button, "block_id": "b", "action_ts": "4"}]})
    view = await eventually(lambda: next(iter(b.slack.views.values()), None))
    assert view["callback_id"] == ui.PICKER_CALLBACK
    assert json.loads(view["private_metadata"])["thread_ts"] == parent["ts"]
