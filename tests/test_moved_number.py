"""A reply in a thread goes out from the number the thread was made for, whatever the Slack channel's number
is now; a thread whose number is no longer configured sends nothing and says so in the thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.bridge.reply_threads import NumberGone, lookup_thread
from bot.handlers import appkeys
from storage.models import Channel, Conversation
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, all_text, bridges, eventually, now_ts, thread_with
from tests.helpers import PNID, SLACK_CHANNEL, WA_TOKEN, WABA, inbound_text

OTHER_PNID = "100000000000002"
MOVED_TO = "C0MOVED"


def _number(name: str, pnid: str, slack_channel: str, display: str) -> dict[str, Any]:
    return {"name": name, "phone_number_id": pnid, "waba_id": WABA, "display_phone_number": display,
            "mode": "coexistence", "access_token": WA_TOKEN, "slack_channel": slack_channel}


LUCKNOW = _number("lucknow", PNID, SLACK_CHANNEL, "+91 522 400 0000")
KANPUR = _number("kanpur", OTHER_PNID, SLACK_CHANNEL, "+91 512 400 0000")


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _thread_then_reconfigure(make: BridgeFactory, channels: list[dict[str, Any]]) -> tuple[Bridge, str]:
    """A thread made for lucknow; then the bridge restarted with `channels` (same database, same Slack)."""
    first = await make()
    first.slack.add_channel(MOVED_TO, "lucknow-moved")
    await first.webhook(inbound_text("wamid.IN1", "Is the Monday batch full?", ts=now_ts(-60)))
    parent, _ = await thread_with(first, 1)
    second = await make(slack=first.slack, graph=first.graph, channels=channels, run_migrations=False)
    return second, str(parent["ts"])


async def _reply(b: Bridge, thread_ts: str, text: str, event_id: str) -> dict[str, Any]:
    event = b.slack.user_message(SLACK_CHANNEL, STAFF, text, thread_ts=thread_ts)
    assert await b.event(event, event_id=event_id) == 200
    return event


async def test_a_number_moved_to_another_channel_still_answers_its_old_threads(make: BridgeFactory) -> None:
    bridge, thread_ts = await _thread_then_reconfigure(make, [{**LUCKNOW, "slack_channel": MOVED_TO}])
    await _reply(bridge, thread_ts, "Yes, two seats left", "EvMOVED")
    sent = await eventually(lambda: bridge.graph.sends_to(WA_ID))
    assert [(s.phone_number_id, s.payload["text"]["body"]) for s in sent] == [(PNID, "Yes, two seats left")]


async def test_another_number_on_the_channel_never_answers_a_thread_of_a_number_gone(make: BridgeFactory) -> None:
    bridge, thread_ts = await _thread_then_reconfigure(make, [KANPUR])
    event = await _reply(bridge, thread_ts, "Yes, two seats left", "EvGONE")
    note = await eventually(lambda: [m for m in bridge.slack.thread(SLACK_CHANNEL, thread_ts)
                                     if "no longer configured" in all_text(m)])
    assert "lucknow" in all_text(note[0]) and "+91 522 400 0000" in all_text(note[0])
    assert bridge.graph.sends_to(WA_ID) == []
    reply = next(m for m in bridge.slack.thread(SLACK_CHANNEL, thread_ts) if m["ts"] == event["ts"])
    assert "no_entry_sign" in [r["name"] for r in reply.get("reactions", [])]
    # Slack delivering the event again tells nobody twice.
    assert await bridge.event(event, event_id="EvGONE", retry_num=1) == 200
    assert len([m for m in bridge.slack.thread(SLACK_CHANNEL, thread_ts)
                if "no longer configured" in all_text(m)]) == 1


async def test_a_name_given_to_a_new_number_does_not_take_the_old_numbers_threads(make: BridgeFactory) -> None:
    bridge, thread_ts = await _thread_then_reconfigure(make, [{**LUCKNOW, "phone_number_id": OTHER_PNID}])
    found = await lookup_thread(bridge.app[appkeys.DEPS], SLACK_CHANNEL, thread_ts)
    assert isinstance(found, NumberGone) and PNID in found.number
    await _reply(bridge, thread_ts, "Yes, two seats left", "EvRENAMED")
    await eventually(lambda: [m for m in bridge.slack.thread(SLACK_CHANNEL, thread_ts)
                              if "no longer configured" in all_text(m)])
    assert bridge.graph.sends_to(WA_ID) == []
    # The new number's customers get threads of their own, on a channel row of its own.
    old = await bridge.one(Conversation, Conversation.slack_thread_ts == thread_ts)
    new_row = await bridge.one(Channel, Channel.phone_number_id == OTHER_PNID)
    assert old.channel_id != new_row.id and new_row.name == "lucknow"
