"""Two replicas against a Slack stricter than documented (one post per second per channel, no burst): the
pacer they share in Redis keeps refused posts to a few percent, and every message is posted once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bot.standins import GraphStandin
from storage.models import Message, SlackOutbox
from tests.harness import Bridge, all_text, bridges, eventually, now_ts, workspace_standin
from tests.helpers import SLACK_CHANNEL, inbound_text

CUSTOMERS = 4
PER_CUSTOMER = 10  # 40 posts into one channel: about 45 s at Slack's pace


async def test_two_replicas_share_one_channels_allowance_and_learn_a_strict_slack(
        pg_url: str, redis_url: str, redis_client: Any, aiohttp_client: Any) -> None:
    slack = await workspace_standin()
    graph = GraphStandin()
    await graph.start()
    slack.limit_per_channel("chat.postMessage", per_second=1.0, burst=1)
    try:
        async with bridges(aiohttp_client, pg_url) as build:
            shared = {"slack": slack, "graph": graph, "settings_extra": {"redis_url": redis_url}}
            one: Bridge = await build(**shared)
            two: Bridge = await build(**shared, run_migrations=False)
            texts = []
            for m in range(PER_CUSTOMER):
                for c in range(CUSTOMERS):
                    text = f"customer {c} message {m}"
                    texts.append(text)
                    replica = (one, two)[(m + c) % 2]
                    await replica.webhook(inbound_text(f"wamid.P{c}.{m}", text, wa_id=f"91981000000{c}",
                                                       name=f"Customer {c}", ts=now_ts(-600 + m)))

            async def delivered() -> bool:
                return await one.count(Message, Message.slack_ts.is_not(None)) == len(texts)

            async def settled() -> bool:
                return await one.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

            await eventually(delivered, timeout=150)
            await eventually(settled, timeout=30)
    finally:
        await slack.stop()
        await graph.stop()

    posted = Counter()
    for message in slack.messages(SLACK_CHANNEL):
        for text in texts:
            if text in all_text(message):
                posted[text] += 1
    assert posted == Counter({text: 1 for text in texts})  # nothing lost, nothing doubled
    calls = slack.calls_to("chat.postMessage")
    refused = [c for c in calls if c.status == 429]
    assert refused, "the stand-in must have refused the documented burst once: the pacer learns from it"
    assert len(refused) / len(calls) <= 0.05, f"{len(refused)} of {len(calls)} posts refused"
