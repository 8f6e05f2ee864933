"""Campaign replies from people with no conversation yet open their threads in a spill-over channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.bridge.reply_threads import find_thread
from bot.handlers import appkeys
from storage.models import Campaign, CampaignRecipient, CampaignRun, Conversation, utcnow
from tests.harness import Bridge, BridgeFactory, all_text, bridges, eventually, now_ts
from tests.helpers import SLACK_CHANNEL, inbound_text

SPILL = "C0REPLIES"
NEHA = "919810000009"


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    build: BridgeFactory
    async with bridges(aiohttp_client, db_url) as build:
        b = await build(channel_extra={"campaign_replies_channel": SPILL})
        b.slack.add_channel(SPILL, "lucknow-campaign-replies")
        yield b


async def _campaign_sent_to(b: Bridge, wa_id: str, wamid: str) -> None:
    deps = b.app[appkeys.DEPS]
    channel_id = next(iter(deps.channel_ids.values()))
    async with deps.sessions() as s, s.begin():
        campaign = Campaign(name="Fee reminder", channel_id=channel_id, template_name="fee_reminder",
                            language="en", schedule_kind="now")
        s.add(campaign)
        await s.flush()
        run = CampaignRun(campaign_id=campaign.id, scheduled_for=utcnow(), status="done", finished_at=utcnow())
        s.add(run)
        await s.flush()
        s.add(CampaignRecipient(run_id=run.id, wa_id=wa_id, wamid=wamid, status="sent"))


async def test_a_new_customers_campaign_reply_opens_its_thread_in_the_spill_over_channel(bridge: Bridge) -> None:
    await _campaign_sent_to(bridge, NEHA, "wamid.CAMP1")
    await bridge.webhook(inbound_text("wamid.CR1", "Paid already", wa_id=NEHA, name="Neha", ts=now_ts(-30),
                                      context_id="wamid.CAMP1"))
    await bridge.webhook(inbound_text("wamid.Q1", "An unrelated question", ts=now_ts(-20)))

    spilled = await eventually(lambda: bridge.slack.messages(SPILL, top_level_only=True))
    assert "Paid already" in all_text(spilled[0]) and "Neha" in all_text(spilled[0])
    main = await eventually(lambda: bridge.parents())
    assert "An unrelated question" in all_text(main[0])
    assert not any("Paid already" in all_text(m) for m in bridge.slack.messages(SLACK_CHANNEL))

    # The conversation lives there from now on, campaign reply or not, and staff can answer from it.
    await bridge.webhook(inbound_text("wamid.CR2", "When is the next class?", wa_id=NEHA, name="Neha",
                                      ts=now_ts(-10)))
    thread = await eventually(lambda: (t := bridge.slack.thread(SPILL, spilled[0]["ts"])) and len(t) == 2 and t)
    assert "When is the next class?" in all_text(thread[1])
    async with bridge.app[appkeys.SESSIONS]() as s:
        conv = (await s.scalars(select(Conversation).where(Conversation.slack_thread_ts == spilled[0]["ts"]))).one()
    assert conv.slack_channel == SPILL
    found = await find_thread(bridge.app[appkeys.DEPS], SPILL, spilled[0]["ts"])
    assert found is not None and found.wa_id == NEHA and found.conversation_id == conv.id


async def test_a_campaign_reply_in_an_existing_conversation_stays_in_its_thread(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.E1", "Hello", wa_id=NEHA, name="Neha", ts=now_ts(-60)))
    parent = (await eventually(lambda: bridge.parents()))[0]
    await _campaign_sent_to(bridge, NEHA, "wamid.CAMP2")
    await bridge.webhook(inbound_text("wamid.E2", "Paid already", wa_id=NEHA, name="Neha", ts=now_ts(-30),
                                      context_id="wamid.CAMP2"))
    await eventually(lambda: len(bridge.slack.thread(SLACK_CHANNEL, parent["ts"])) == 2)
    assert bridge.slack.messages(SPILL) == []

