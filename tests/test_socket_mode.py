"""Socket Mode end to end: the app connects to the Slack stand-in's WebSocket with its app-level token, and
events, interactions and slash commands arriving as envelopes are acknowledged and acted on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.factory import create_app
from bot.app.slack_component import make_slack_component
from bot.handlers.slack_actions import PICKER_CALLBACK, STALE_FORM, TEMPLATE_BLOCK, TEMPLATE_SELECT
from bot.standins import GraphStandin, SlackStandin
from storage.models import Message
from tests.harness import FAST_OUTBOX, STAFF, WA_ID, Bridge, eventually, now_ts, thread_with, workspace_standin
from tests.helpers import BOT_TOKEN, SLACK_CHANNEL, inbound_text, make_settings

WAIT = 20.0  # generous bound for a busy machine; the assertions are about what happens, not how fast


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    slack, graph = await workspace_standin(), GraphStandin()
    await graph.start()
    settings = make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url)
    raw = settings.model_dump()
    raw["slack"]["app_token"] = slack.app_token
    settings = type(settings).model_validate(raw)
    try:
        client = await aiohttp_client(create_app(settings, components=[make_slack_component(**FAST_OUTBOX)]))
        await asyncio.wait_for(slack.socket_mode.wait_connected(), WAIT)
        yield Bridge(client, slack, graph)
    finally:
        await slack.stop()
        await graph.stop()


async def test_only_the_app_level_token_opens_a_connection() -> None:
    async with SlackStandin(bot_token=BOT_TOKEN) as slack:
        client = AsyncWebClient(base_url=slack.api_url)
        opened = await client.apps_connections_open(app_token=slack.app_token)
        assert str(opened["url"]).startswith("ws://")
        with pytest.raises(SlackApiError) as err:
            await client.apps_connections_open(app_token=BOT_TOKEN)
        assert err.value.response["error"] == "not_allowed_token_type"
        with pytest.raises(SlackApiError) as err:
            await AsyncWebClient(token=slack.app_token, base_url=slack.api_url).chat_postMessage(channel="C", text="x")
        assert err.value.response["error"] == "not_allowed_token_type"


async def test_events_interactions_and_commands_over_the_socket(bridge: Bridge) -> None:
    hub = bridge.slack.socket_mode
    assert [c for c in bridge.slack.calls_to("apps.connections.open") if c.ok]
    await bridge.webhook(inbound_text("wamid.SOCK", "hello over the socket", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)

    # An event: a staff reply in the thread goes to WhatsApp once, even when Slack delivers it again.
    event = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "replied via Socket Mode", thread_ts=parent["ts"])
    envelope = {"token": "t", "team_id": bridge.slack.team_id, "api_app_id": bridge.slack.app_id, "event": event,
                "type": "event_callback", "event_id": "EvSOCKET", "event_time": now_ts()}
    first = await hub.send("events_api", envelope)
    assert (await asyncio.wait_for(hub.ack_of(first), WAIT)).envelope_id == first
    again = await hub.send("events_api", envelope, retry_attempt=1)
    await asyncio.wait_for(hub.ack_of(again), WAIT)
    sends = await eventually(lambda: bridge.graph.sends_to(WA_ID))
    assert sends[0].payload["text"]["body"] == "replied via Socket Mode"
    await eventually(lambda: bridge.count(Message, Message.source == "slack"))
    assert len(bridge.graph.sends_to(WA_ID)) == 1

    # An interaction whose answer travels in the ack: the picker's inline error.
    submission = {"type": "view_submission", "team": {"id": bridge.slack.team_id}, "user": {"id": STAFF},
                  "api_app_id": bridge.slack.app_id, "view": {
                      "id": "VSOCK", "type": "modal", "callback_id": PICKER_CALLBACK, "private_metadata": "junk",
                      "state": {"values": {TEMPLATE_BLOCK: {TEMPLATE_SELECT: {
                          "type": "static_select", "selected_option": {"value": "1"}}}}}}}
    sent = await hub.send("interactive", submission, accepts_response_payload=True)
    ack = await asyncio.wait_for(hub.ack_of(sent), WAIT)
    assert ack.payload == {"response_action": "errors", "errors": {TEMPLATE_BLOCK: STALE_FORM}}

    # A slash command: its answer comes back in the ack as well.
    command = {"token": "t", "team_id": bridge.slack.team_id, "channel_id": SLACK_CHANNEL, "user_id": STAFF,
               "command": "/campaign", "text": "list", "api_app_id": bridge.slack.app_id,
               "response_url": f"{bridge.slack.base_url}/response-url/x", "trigger_id": "1.2.3"}
    sent = await hub.send("slash_commands", command, accepts_response_payload=True)
    ack = await asyncio.wait_for(hub.ack_of(sent), WAIT)
    assert ack.payload is not None and "No campaigns yet" in json.dumps(ack.payload)


async def test_a_disconnect_request_is_followed_by_a_new_connection(bridge: Bridge) -> None:
    hub = bridge.slack.socket_mode
    await hub.disconnect("refresh_requested")
    await asyncio.wait_for(hub.wait_connected(2), WAIT)
    await bridge.webhook(inbound_text("wamid.SOCK2", "still there?", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    event = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "after the reconnect", thread_ts=parent["ts"])
    sent = await hub.send("events_api", {"token": "t", "team_id": bridge.slack.team_id, "type": "event_callback",
                                         "api_app_id": bridge.slack.app_id, "event": event,
                                         "event_id": "EvSOCKET2", "event_time": now_ts()})
    await asyncio.wait_for(hub.ack_of(sent), WAIT)
    sends = await eventually(lambda: bridge.graph.sends_to(WA_ID))
    assert sends[0].payload["text"]["body"] == "after the reconnect"
