"""Crash drill: `serve` SIGKILLed at its busiest, mid-campaign and mid-burst of customer messages, on
PostgreSQL and Redis, (a) started again, (b) with a second replica running and no restart.

In both: every acknowledged customer message is in Slack within 15 s (of the restart, or of the kill when a
replica survives), none twice; no campaign recipient is sent twice; only the requests the dead process had
in flight can be `unknown`, and the stand-in's status webhooks (echoing biz_opaque_callback_data) settle
them. Nothing here ages leases by hand: the dead process's work is taken over because it went silent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench import _common
from scheduler.campaigns.runner import batch_size, worker_count
from storage.models import CampaignRecipient, Message, Worker
from tests.drills.conftest import DbProbe, Delivery, RedisProcess, Serves, Standins, cli, load, redeliver
from tests.drills.test_fault_drills import create_campaign, message, recipient_states, run_done, write_audience
from tests.harness import eventually
from tests.helpers import APP_SECRET, PNID, SLACK_CHANNEL

Probe = Callable[[str], DbProbe]

MPS = 40  # sends per second of the number: the campaign is under way for a few seconds
AUDIENCE = 160
# Slack takes about one post per second per channel (the outbox paces itself to that), so the burst is spread
# over several numbers, each with its Slack channel: what is measured is the crash's cost, not Slack's pace.
NUMBERS = 5
PER_NUMBER = 6  # customer messages per number, from two customers
WITHIN = 15.0  # seconds: every acknowledged message in Slack after the restart (or the kill, with a replica)


def numbers() -> list[_common.Channel]:
    """The campaign's number (tests.helpers.PNID) and more, each with its Slack channel."""
    return [_common.Channel("lucknow" if i == 0 else f"branch{i}", PNID if i == 0 else f"10000000000010{i}",
                            mps=MPS, slack_channel=SLACK_CHANNEL if i == 0 else f"C0BRANCH{i}")
            for i in range(NUMBERS)]


def burst() -> list[Delivery]:
    """PER_NUMBER customer messages to each number, interleaved, a second apart in WhatsApp time."""
    ts0 = int(time.time()) - 600
    out: list[Delivery] = []
    for i in range(PER_NUMBER):
        for n, channel in enumerate(numbers()):
            d = message(f"crash{n}x", i, who=n * 10 + i % 2, ts=ts0 + i)
            payload = json.loads(d.body)
            payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = channel.phone_number_id
            out.append(Delivery(d.wamid, d.token, json.dumps(payload).encode()))
    return out


class Live:
    """Where Meta's deliveries and status webhooks go at this moment (a load balancer in front of `serve`)."""

    def __init__(self, url: str) -> None:
        self.url: str | None = url

    def base(self) -> str:
        return self.url or "http://127.0.0.1:9"

    def webhook(self) -> str | None:
        return f"{self.url}/webhooks/meta" if self.url else None


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("recovery", ["restart", "replica"])
async def test_sigkill_mid_campaign_and_mid_burst_loses_nothing_and_doubles_nothing(
        recovery: str, pg_url: str, restartable_redis: RedisProcess, tmp_path: Path, standins: Standins,
        serves: Serves, probe_factory: Probe) -> None:
    graph, slack = standins.graph, standins.slack
    for channel in numbers()[1:]:
        slack.add_channel(channel.slack_channel, channel.name)
    config = _common.write_config(tmp_path / "app.yaml", database_url=pg_url, redis_url=restartable_redis.url,
                                  graph_url=graph.base_url, slack_api_url=slack.api_url, channels=numbers())
    victim = await serves.start(config, "victim")
    survivor = await serves.start(config, "replica") if recovery == "replica" else None
    live = Live(victim.url)
    graph.send_status_webhooks(live.webhook, APP_SECRET)  # signed with the app's secret, as Meta does
    db = probe_factory(pg_url)

    audience = [f"9198300{i:05d}" for i in range(AUDIENCE)]
    campaign_id = await create_campaign(config, write_audience(tmp_path / "audience.csv", audience))
    deliveries = burst()
    await eventually(lambda: len(graph.sends) >= 10, timeout=60)  # the campaign is under way
    loader = asyncio.create_task(load(deliveries, live.base, rate=15))

    # The busiest moment: a third of the campaign out and a third of the burst acknowledged.
    third = len(deliveries) // 3
    await eventually(lambda: len(graph.sends) >= AUDIENCE // 3 and sum(d.acked for d in deliveries) >= third,
                     timeout=60)
    assert victim.proc is not None
    victim_pid = victim.proc.pid
    await victim.kill()
    killed_at = time.monotonic()
    acked_before = [d for d in deliveries if d.acked]
    # What the dead process had in flight (a surviving replica's own sends are not the crash's).
    victim_ids = select(Worker.id).where(Worker.pid == victim_pid)
    in_flight = {r[0] for r in await db.all(
        select(CampaignRecipient.wa_id).where(CampaignRecipient.status == "sending",
                                              CampaignRecipient.owner_id.in_(victim_ids),
                                              CampaignRecipient.attempted_at.is_not(None)))}

    if survivor is None:
        live.url = None
        after = await serves.start(config, "restarted")
        live.url = after.url
        clock_from = time.monotonic()
    else:
        after = survivor
        live.url = survivor.url
        clock_from = killed_at
    await loader
    await redeliver([d for d in deliveries if not d.acked], after.url)
    assert all(d.acked for d in deliveries)

    # Every acknowledged message in Slack within WITHIN seconds.
    def posted() -> bool:
        return all(_posted(standins, d) for d in deliveries)

    await eventually(posted, timeout=max(0.1, clock_from + WITHIN - time.monotonic()))
    late = [d.wamid for d in acked_before if not _posted(standins, d)]
    assert late == []

    # The campaign finishes; nobody is sent twice; the unknown ones were at most those in flight at the kill,
    # and the status webhooks settled every one of them.
    await eventually(lambda: run_done(db, campaign_id), timeout=60)
    states = await recipient_states(db)
    sends = {w: graph.sends_to(w) for w in audience}
    seen = (f"in flight at the kill {sorted(in_flight)}; twice {[w for w, s in sends.items() if len(s) > 1]}; "
            f"states { {st for st, _ in states.values()} }\n{after.tail()}")
    # In flight: a request under way in each sender, or answered with its outcome not yet written (results
    # are written a batch at a time, every 50 ms).
    assert len(in_flight) <= worker_count(MPS) + batch_size(MPS), seen
    assert [w for w in audience if len(sends[w]) > 1] == [], seen
    # A request that reached Meta is settled by its status webhook; one marked but cut off before it left
    # stays `unknown` (nothing will ever report on it), and only those in flight at the kill can be either.
    try:
        await eventually(lambda: _settled_where_sent(db, sends), timeout=30)
    except AssertionError:
        states = await recipient_states(db)
        open_ = {w: states[w] for w, s in sends.items() if s and states[w][0] not in ("sent", "delivered", "read")}
        feed = graph.status_feed.stats if graph.status_feed else None
        raise AssertionError(f"not settled by status webhooks: {open_}; feed {feed}; {seen}") from None
    states = await recipient_states(db)
    unsent = sorted(w for w in audience if not sends[w])
    assert set(unsent) <= in_flight, seen
    assert sorted(w for w, (st, _) in states.items() if st == "unknown") == unsent, seen
    assert {w: states[w][1] for w in audience if sends[w]} == {w: sends[w][0].wamid for w in audience if sends[w]}

    # The manager sends the unknown ones again: each reaches Meta once, and nobody else is sent again.
    out = await cli(config, "campaign", "resend-unknown", str(campaign_id))
    assert (f"{len(unsent)} unknown recipient" in out) if unsent else ("nothing to send again" in out)
    await eventually(lambda: run_done(db, campaign_id), timeout=30)
    await eventually(lambda: all(graph.sends_to(w) for w in unsent), timeout=30)
    assert {w: len(graph.sends_to(w)) for w in audience} == dict.fromkeys(audience, 1)

    # Each customer message stored once and posted once (by call and by what Slack holds).
    rows = await db.all(select(Message.wamid).where(Message.wamid.like("wamid.crash%")))
    assert sorted(r[0] for r in rows) == sorted(d.wamid for d in deliveries)
    await asyncio.sleep(1.0)  # a second post, had one been under way, lands by now
    twice = {d.token: n for d in deliveries if (n := len(standins.posts_with(d.token))) != 1}
    held = {d.token: n for d in deliveries if (n := sum(len(standins.stored_with(d.token, c.slack_channel))
                                                         for c in numbers())) != 1}
    assert twice == {} and held == {}, (twice, held, slack.calls_to("chat.postMessage")[-3:])


def _posted(standins: Standins, d: Delivery) -> bool:
    return bool(standins.posts_with(d.token))


async def _settled_where_sent(db: DbProbe, sends: dict[str, list[Any]]) -> bool:
    states = await recipient_states(db)
    return all(states[w][0] in ("sent", "delivered", "read") for w, s in sends.items() if s)
