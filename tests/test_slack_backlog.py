"""How far behind each Slack channel is: the doctor's warning and /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.handlers import appkeys
from bot.ops.doctor import Severity, check_slack_backlog
from bot.slack.backlog import estimate, owed_per_channel
from storage.models import SlackOutbox
from tests.harness import BridgeFactory, bridges, eventually, now_ts
from tests.helpers import SLACK_CHANNEL, inbound_text


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def test_a_backlog_minutes_long_is_a_warning_naming_the_channel() -> None:
    lags = estimate({"C0BUSY": 300, "C0QUIET": 4, "C0DONE": 0})
    assert [(lag.channel, lag.owed, lag.wait_seconds) for lag in lags] == [("C0BUSY", 300, 300.0),
                                                                          ("C0QUIET", 4, 4.0)]
    results = check_slack_backlog(lags)
    assert [(r.name, r.level) for r in results] == [("slack backlog C0BUSY", Severity.WARN)]
    assert "300 item(s) owed" in results[0].detail and "5 min" in results[0].detail
    quiet = check_slack_backlog(estimate({"C0QUIET": 4}))
    assert [r.level for r in quiet] == [Severity.OK] and "4 item(s)" in quiet[0].detail


async def test_owed_items_are_counted_per_channel_and_shown_in_metrics(make: BridgeFactory) -> None:
    intake = await make(with_slack=False)
    for i in range(3):
        await intake.webhook(inbound_text(f"wamid.B{i}", f"question {i}", wa_id=f"91980000000{i}",
                                          name=f"Customer {i}", ts=now_ts(-60 + i)))
    async def stored() -> bool:
        return await intake.count(SlackOutbox) == 3

    await eventually(stored)
    async with intake.app[appkeys.SESSIONS]() as s:
        assert await owed_per_channel(s) == {SLACK_CHANNEL: 3}

    # A process with the outbox publishes the figures, then drains them.
    worker = await make(slack=intake.slack, graph=intake.graph, run_migrations=False,
                        outbox={"backlog_interval": 0.2})

    async def drained_in_metrics() -> bool:
        text = await (await worker.client.get("/metrics")).text()
        return f'wabridge_slack_backlog_items{{channel="{SLACK_CHANNEL}"}} 0.0' in text

    async def delivered() -> bool:
        return await worker.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

    await eventually(delivered, timeout=20)
    await eventually(drained_in_metrics)
