"""Reminders for overdue waits (one per wait, in the thread, mentioning a group) and the /metrics histogram."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from bot.app.factory import create_app
from bot.app.insights_component import INSIGHTS, InsightsWorker, make_insights_component
from bot.app.slack_component import make_slack_component
from bot.core.config import parse_settings
from bot.core.response_metrics import FirstResponseHistogram, bucket_counts
from bot.handlers import appkeys
from bot.ops.insights import Waiting
from bot.ops.nudges import nudges
from bot.ops.sla import Target, elapsed_for, target_for
from bot.slack.display_names import isolate
from bot.standins import SlackStandin
from storage.models import Conversation, SlackOutbox, utcnow
from tests.harness import eventually
from tests.helpers import BOT_TOKEN, PNID, SLACK_CHANNEL, make_settings
from tests.insights_seed import Msg, seed

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def waiting(cid: int, channel: str, minutes: int, customer: str = "Ravi", ref: int = 1) -> Waiting:
    return Waiting(cid, channel, customer, T0, timedelta(minutes=minutes), T0 + timedelta(hours=24), ref)


TARGETS = {"lucknow": Target("lucknow", timedelta(minutes=30), "S0MANAGERS"),
           "kanpur": Target("kanpur", timedelta(minutes=10), "")}


@pytest.mark.parametrize(("waits", "expected"), [
    ([], []),
    ([waiting(1, "lucknow", 29), waiting(2, "lucknow", 30)], []),  # past the target, not at it
    ([waiting(1, "lucknow", 31)], ["nudge:1:1"]),
    ([waiting(1, "lucknow", 31, ref=7), waiting(2, "kanpur", 11), waiting(3, "agra", 500)],
     ["nudge:1:7", "nudge:2:1"]),  # agra has no target
])
def test_which_waits_get_a_reminder(waits: list[Waiting], expected: list[str]) -> None:
    assert [n.key for n in nudges(waits, TARGETS, T0)] == expected


def test_no_reminder_once_the_window_has_closed() -> None:
    old = waiting(1, "lucknow", 25 * 60)
    assert nudges([old], TARGETS, T0 + timedelta(hours=24)) == []
    assert [n.key for n in nudges([old], TARGETS, T0 + timedelta(hours=23))] == ["nudge:1:1"]


def test_reminder_text_mentions_the_group_and_escapes_the_customer() -> None:
    [lucknow] = nudges([waiting(1, "lucknow", 95, customer="<!channel> & co")], TARGETS, T0)
    assert lucknow.text == ("<!subteam^S0MANAGERS> :alarm_clock: &lt;!channel&gt; &amp; co has waited 1 h 35 min "
                            "for a reply (target: 30 min).")
    [kanpur] = nudges([waiting(2, "kanpur", 12)], TARGETS, T0)
    assert kanpur.text.startswith(":alarm_clock: Ravi has waited 12 min")


def test_targets_per_channel_fall_back_to_the_top_level_one() -> None:
    base = {"meta": {"app_secret": "s", "verify_token": "t"}, "slack": {"bot_token": "x", "signing_secret": "s"}}
    channel = {"phone_number_id": "1", "waba_id": "2", "access_token": "t", "slack_channel": "C1"}
    settings = parse_settings({**base, "sla": {"first_response_minutes": 60, "mention": "S1"},
                               "channels": [{**channel, "name": "a"},
                                            {**channel, "name": "b", "phone_number_id": "3",
                                             "sla": {"first_response_minutes": 15}}]}, env={})
    assert target_for(settings, settings.channels[0]) == Target("a", timedelta(minutes=60), "S1")
    assert target_for(settings, settings.channels[1]) == Target("b", timedelta(minutes=15), "S1")
    bare = parse_settings({**base, "channels": [{**channel, "name": "a"}]}, env={})
    assert target_for(bare, bare.channels[0]) is None


def test_business_hours_setting_measures_waits_inside_them_only() -> None:
    base = {"meta": {"app_secret": "s", "verify_token": "t"}, "slack": {"bot_token": "x", "signing_secret": "s"},
            "timezone": "UTC"}
    settings = parse_settings({**base, "business_hours": {"opens": "09:00", "closes": "17:00"}}, env={})
    friday_evening, monday_morning = datetime(2026, 11, 27, 16, 50, tzinfo=UTC), datetime(2026, 11, 30, 9, 5,
                                                                                          tzinfo=UTC)
    assert elapsed_for(settings)(friday_evening, monday_morning) == timedelta(minutes=15)
    with pytest.raises(Exception, match="opens must be earlier"):
        parse_settings({**base, "business_hours": {"opens": "18:00", "closes": "09:00"}}, env={})


def test_histogram_buckets_are_cumulative() -> None:
    assert bucket_counts([30, 200, 200, 5000], (60, 300, 3600)) == [
        ("60.0", 1.0), ("300.0", 3.0), ("3600.0", 3.0), ("+Inf", 4.0)]


@dataclass
class Bridge:
    client: TestClient
    slack: SlackStandin
    worker: InsightsWorker

    def reminders(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages(SLACK_CHANNEL) if ":alarm_clock:" in str(m.get("text"))]


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    async with SlackStandin(bot_token=BOT_TOKEN) as slack:
        slack.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
        settings = make_settings(db_url, slack_url=slack.api_url,
                                 sla={"first_response_minutes": 30, "mention": "S0MANAGERS"},
                                 server={"metrics_public": True})
        components = [make_slack_component(poll_interval=0.1, backoff_base=0.2, backoff_cap=1.0),
                      make_insights_component(interval=None)]
        client = await aiohttp_client(create_app(settings, workers=False, components=components))
        yield Bridge(client, slack, client.app[INSIGHTS])


async def test_one_reminder_per_wait_in_the_thread(bridge: Bridge) -> None:
    sessions = bridge.client.app[appkeys.SESSIONS]
    channel_id = bridge.client.app[appkeys.CHANNEL_IDS][PNID]
    start = utcnow() - timedelta(minutes=45)
    conv_id = await seed(sessions, channel_id, "919800000001", "Ravi", start, [Msg(0, "customer")])
    await seed(sessions, channel_id, "919800000002", "Sita", start, [Msg(0, "customer"), Msg(5, "slack", "U1")])
    assert await bridge.worker.run_once() == 1
    assert await bridge.worker.run_once() == 0  # every later round (and every other process) finds it owed
    await eventually(lambda: len(bridge.reminders()) == 1)
    [reminder] = bridge.reminders()
    who = f"{isolate('Ravi')} (+91 98000 00001)"
    assert reminder["text"].startswith(f"<!subteam^S0MANAGERS> :alarm_clock: {who} has waited")

    async def recorded() -> str | None:  # with the reminder's outcome, a moment after Slack shows it
        async with sessions() as s:
            return (await s.get(Conversation, conv_id)).slack_thread_ts

    assert reminder.get("thread_ts") == await eventually(recorded)

    # The customer writes again in the same wait: still one reminder.
    await seed(sessions, channel_id, "919800000001", "Ravi", start, [Msg(40, "customer")])
    assert await bridge.worker.run_once() == 0
    # Answered, then a new wait that runs past the target: a second reminder, for the new wait.
    await seed(sessions, channel_id, "919800000001", "Ravi", utcnow() - timedelta(minutes=40),
               [Msg(0, "phone_app"), Msg(1, "customer")])
    assert await bridge.worker.run_once() == 1
    await eventually(lambda: len(bridge.reminders()) == 2)
    async with sessions() as s:
        keys = (await s.scalars(select(SlackOutbox.dedupe_key).where(SlackOutbox.dedupe_key.like("nudge:%")))).all()
    assert len(keys) == 2 and len(set(keys)) == 2


async def test_metrics_show_a_first_response_histogram(bridge: Bridge) -> None:
    sessions = bridge.client.app[appkeys.SESSIONS]
    channel_id = bridge.client.app[appkeys.CHANNEL_IDS][PNID]
    start = utcnow() - timedelta(hours=2)
    await seed(sessions, channel_id, "919800000001", "Ravi", start, [Msg(0, "customer"), Msg(3, "phone_app")])
    await seed(sessions, channel_id, "919800000002", "Sita", start, [Msg(0, "customer"), Msg(45, "slack", "U1")])

    async def histogram() -> dict[str, float]:
        resp = await bridge.client.get("/metrics")
        assert resp.status == 200
        for family in text_string_to_metric_families(await resp.text()):
            if family.name == "wabridge_first_response_seconds":
                return {s.labels.get("le", s.name): s.value for s in family.samples}
        return {}

    assert (await histogram())["wabridge_first_response_seconds_count"] == 0
    await bridge.worker.run_once()
    samples = await histogram()
    assert samples["wabridge_first_response_seconds_count"] == 2
    assert samples["300.0"] == 1 and samples["3600.0"] == 2 and samples["+Inf"] == 2
    assert samples["wabridge_first_response_seconds_sum"] == 3 * 60 + 45 * 60


async def test_two_processes_looking_at_once_queue_one_reminder(bridge: Bridge) -> None:
    sessions = bridge.client.app[appkeys.SESSIONS]
    await seed(sessions, bridge.client.app[appkeys.CHANNEL_IDS][PNID], "919800000001", "Ravi",
               utcnow() - timedelta(minutes=45), [Msg(0, "customer")])
    other = InsightsWorker(bridge.worker.settings, sessions, FirstResponseHistogram())
    results = await asyncio.gather(bridge.worker.run_once(), other.run_once(), bridge.worker.run_once())
    assert sum(results) == 1
    await eventually(lambda: len(bridge.reminders()) == 1)
