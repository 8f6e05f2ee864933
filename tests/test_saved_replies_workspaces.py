"""Saved replies with two businesses on one deployment: each workspace keeps its own library, and one's saved
reply, named from the other, is refused (and logged) and sends nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.handlers import appkeys
from bot.handlers.slack_saved_replies import NOT_HERE, SHORTCUT
from bot.slack import saved_replies as ui
from storage.models import Conversation, SavedReply
from tests.harness import eventually
from tests.helpers import SIGNING_SECRET
from tests.workspaces_harness import ALPHA, BETA, STAFF, Deployment, deployment_of


@pytest.fixture
async def deployment(aiohttp_client: Any, db_url: str) -> AsyncIterator[Deployment]:
    async with deployment_of(aiohttp_client, db_url) as d:
        yield d


async def _from(d: Deployment, team: str, payload: dict[str, Any]) -> tuple[int, str]:
    return await d.slack.send_interaction(d.events_url, {"user": {"id": STAFF[team]}, **payload}, SIGNING_SECRET,
                                          team_id=team)


async def test_each_workspace_has_its_own_library_and_cannot_use_anothers(deployment: Deployment,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    d = deployment
    assert await d.install("T0ALPHA") == 200 and await d.install("T0BETA") == 200
    for team in ("T0ALPHA", "T0BETA"):  # members of their own workspace, as users.info says
        d.slack.add_user(STAFF[team], STAFF[team].lower(), team_id=team)
    # Alpha adds a saved reply from its library.
    status_, said = await d.slack.send_slash_command(d.events_url, "/wabridge", "replies", user_id=STAFF["T0ALPHA"],
                                                  channel_id=ALPHA[1], signing_secret=SIGNING_SECRET,
                                                  team_id="T0ALPHA")
    assert (status_, said) == (200, "")
    library = await eventually(lambda: next(iter(d.slack.views.values()), None))
    await _from(d, "T0ALPHA", {"type": "block_actions", "view": library,
                               "container": {"type": "view", "view_id": library["id"]},
                               "actions": [{"action_id": ui.ADD_ACTION, "block_id": "b", "type": "button",
                                            "value": "new", "action_ts": "1"}]})
    editor = await eventually(lambda: (v := d.slack.views[library["id"]])["callback_id"] == ui.EDIT_CALLBACK and v)
    values = {ui.NAME_BLOCK: {ui.VALUE_ACTION: {"type": "plain_text_input", "value": "Bank"}},
              ui.BODY_BLOCK: {ui.VALUE_ACTION: {"type": "plain_text_input", "value": "Alpha's bank: 0001"}},
              ui.NUMBER_BLOCK: {ui.VALUE_ACTION: {"type": "static_select", "selected_option": {"value": "*"}}}}
    status_, _ = await _from(d, "T0ALPHA", {"type": "view_submission",
                                            "view": {**editor, "state": {"values": values}}})
    assert status_ == 200
    async with d.client.app[appkeys.SESSIONS]() as s:
        row = (await s.scalars(select(SavedReply))).one()
    assert row.slack_team == "T0ALPHA"

    # Beta's staff, in Beta's thread: the picker offers nothing of Alpha's, and Alpha's id is refused.
    await d.customer_writes(BETA, "wamid.B1", "Beta's customer asks", wa_id="919800000077", name="Zubin")
    parent = (await eventually(lambda: d.slack.messages(BETA[1], top_level_only=True)))[0]

    async def recorded() -> bool:  # the thread is recorded just after Slack answers its parent's post
        async with d.client.app[appkeys.SESSIONS]() as s:
            return bool(await s.scalar(select(Conversation.id).where(Conversation.slack_thread_ts == parent["ts"])))

    await eventually(recorded)
    await _from(d, "T0BETA", {"type": "message_action", "callback_id": SHORTCUT, "channel": {"id": BETA[1]},
                              "message": parent, "message_ts": parent["ts"], "action_ts": "2.1",
                              "response_url": f"{d.slack.base_url}/response-url/x"})
    picker = await eventually(lambda: next((v for v in d.slack.views.values()
                                            if v["callback_id"] == ui.PICKER_CALLBACK), None))
    assert "No saved replies for this number yet" in json.dumps(picker)
    picked = {ui.REPLY_BLOCK: {ui.REPLY_SELECT: {"type": "external_select",
                                                 "selected_option": {"value": str(row.id)}}},
              f"{ui.TEXT_PREFIX}{row.id}": {ui.VALUE_ACTION: {"type": "plain_text_input", "value": "Alpha's bank"}}}
    with caplog.at_level(logging.WARNING):
        status_, answer = await _from(d, "T0BETA", {"type": "view_submission",
                                                    "view": {**picker, "state": {"values": picked}}})
    assert status_ == 200 and json.loads(answer) == {"response_action": "errors", "errors": {ui.REPLY_BLOCK: NOT_HERE}}
    assert any(f"from workspace T0BETA names saved reply {row.id} of workspace T0ALPHA: refused" in r.getMessage()
               for r in caplog.records)
    assert d.graph.sends_to("919800000077") == []
