"""The Slack outbox shared by several processes, and extended with new kinds by other modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot import appkeys
from bot.slack.outbox import OUTBOX_KINDS, ItemContext, outbox_kind
from bot.slack.render import Post
from storage import repository as repo
from storage.models import SlackOutbox
from tests.helpers import SLACK_CHANNEL, inbound_text
from tests.test_slack_bridge import BridgeFactory, all_text, bridges, eventually, now_ts


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def test_two_processes_share_the_outbox_in_timestamp_order_without_doubling(make: BridgeFactory) -> None:
    # A process without the Slack bridge stores everything first, deliveries arriving newest first.
    intake = await make(with_slack=False)
    customers = [("919800000001", "Asha"), ("919800000002", "Bilal"), ("919800000003", "Chitra")]
    expected: dict[str, list[str]] = {name: [f"{name} message {i}" for i in range(5)] for _, name in customers}
    base = now_ts(-100)
    for i in reversed(range(5)):
        for wa_id, name in customers:
            await intake.webhook(inbound_text(f"wamid.{wa_id}.{i}", f"{name} message {i}", wa_id=wa_id,
                                              name=name, ts=base + i))

    async def stored() -> bool:
        return await intake.count(SlackOutbox) == 15

    await eventually(stored, timeout=20)
    intake.slack.set_latency(0.05)  # keeps several posts in flight at once
    a = await make(slack=intake.slack, graph=intake.graph, run_migrations=False, outbox={"concurrency": 4})
    b = await make(slack=intake.slack, graph=intake.graph, run_migrations=False, outbox={"concurrency": 4})

    async def all_done() -> bool:
        return await a.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

    await eventually(all_done, timeout=30)
    parents = b.parents()
    assert len(parents) == 3
    for parent in parents:
        name = next(n for _, n in customers if n in all_text(parent))
        shown = [next(t for t in expected[name] if t in all_text(r)) for r in a.replies(parent["ts"])]
        assert shown == expected[name]


async def test_another_module_can_add_an_outbox_kind(make: BridgeFactory) -> None:
    @outbox_kind("test_progress")
    async def progress(ctx: ItemContext) -> None:
        await ctx.post(SLACK_CHANNEL, Post(text=f"Campaign {ctx.item.payload['name']}: 3/10 sent"))

    try:
        b = await make()
        async with b.app[appkeys.SESSIONS]() as s, s.begin():
            await repo.enqueue_slack(s, dedupe_key="progress:1", thread_key="campaign:1", kind="test_progress",
                                     payload={"name": "Diwali offer"})
        posted = await eventually(lambda: b.parents())
        assert posted[0]["text"] == "Campaign Diwali offer: 3/10 sent"
    finally:
        OUTBOX_KINDS.pop("test_progress", None)
