"""Fault drills: the bridge's invariants (architecture.md) held while things break, at a size CI can run.

- Meta delivers each webhook five times, concurrently, to two instances: one message row, one Slack post.
- Slack is down (503), then rate-limits (429 + Retry-After) while messages arrive: all posted once, in
  WhatsApp timestamp order within each thread.
- `serve` is SIGKILLed mid-campaign and mid-ingest: after a restart nobody is sent twice, the few in flight
  are `unknown`, the rest resume; every acknowledged delivery is stored and processed once.
- PostgreSQL is restarted under load: deliveries meanwhile get a 5xx (never a 200 for something not
  stored), everything acknowledged is processed afterwards, and `serve` keeps running.
- Redis goes away mid-campaign: sending pauses (never unthrottled, never over the cap) and resumes.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from scheduler.ratemath import max_in_window
from storage.models import CampaignRecipient, CampaignRun, Message, SlackOutbox, WebhookLog
from tests.drills.conftest import (
    DbProbe,
    Delivery,
    PgCluster,
    RedisProcess,
    Serves,
    Standins,
    cli,
    expire_leases,
    load,
    post_delivery,
    redeliver,
    write_config,
)
from tests.harness import Bridge, bridges, eventually
from tests.helpers import PNID, SLACK_CHANNEL, inbound_text, signed

Probe = Callable[[str], DbProbe]


# ---- builders and checks -------------------------------------------------------------------------------


def customer(n: int) -> str:
    return f"9198765{n:05d}"


def message(tag: str, i: int, *, who: int, ts: int) -> Delivery:
    """An inbound text from customer `who`, carrying a token that is unique in the whole test."""
    token = f"#{tag}{i:03d}#"
    wamid = f"wamid.{tag}.{i:03d}"
    payload = inbound_text(wamid, f"drill message {token}", wa_id=customer(who), name=f"Customer {who}", ts=ts)
    return Delivery(wamid, token, json.dumps(payload).encode())


def batch(tag: str, count: int, customers: int, ts0: int | None = None) -> list[Delivery]:
    """count messages spread over customers, a second apart in WhatsApp time."""
    ts0 = ts0 or int(time.time()) - 600
    return [message(tag, i, who=i % customers, ts=ts0 + i) for i in range(count)]


def slack_paced(messages: int) -> float:
    """Long enough for Slack's one post per second per channel (all these messages share one channel)."""
    return 30.0 + 1.2 * messages


async def settled(db: DbProbe, expected_messages: int, timeout: float = 25.0) -> None:  # noqa: ASYNC109
    """Every delivery processed, every message stored, every Slack post done; else what is left, and why."""
    deadline = time.monotonic() + timeout
    while True:
        state = {
            "messages": await db.count(Message),
            "deliveries unprocessed": await db.count(WebhookLog, WebhookLog.processed_at.is_(None)),
            "slack posts pending": await db.count(SlackOutbox, SlackOutbox.done_at.is_(None)),
        }
        if state == {"messages": expected_messages, "deliveries unprocessed": 0, "slack posts pending": 0}:
            return
        if time.monotonic() > deadline:
            errors = await db.all(select(WebhookLog.id, WebhookLog.claimed_until, WebhookLog.error)
                                  .where(WebhookLog.processed_at.is_(None)).limit(5))
            posts = await db.all(select(SlackOutbox.id, SlackOutbox.claimed_until, SlackOutbox.next_attempt_at,
                                        SlackOutbox.last_error).where(SlackOutbox.done_at.is_(None)).limit(5))
            raise AssertionError(f"not settled within {timeout:g} s: {state}; deliveries {errors}; posts {posts}")
        await asyncio.sleep(0.1)


async def messages_at_least(db: DbProbe, n: int) -> bool:
    return await db.count(Message) >= n


async def assert_stored_and_posted_once(db: DbProbe, sides: Standins, deliveries: Sequence[Delivery]) -> None:
    """One message row per wamid, and one Slack post per message (by call and by what Slack holds)."""
    rows = await db.all(select(Message.wamid))
    wamids = [r[0] for r in rows]
    assert sorted(wamids) == sorted(d.wamid for d in deliveries)
    await asyncio.sleep(1.0)  # a second post of anything, had one been under way, lands by now
    posts = {d.token: len(sides.posts_with(d.token)) for d in deliveries}
    held = {d.token: len(sides.stored_with(d.token)) for d in deliveries}
    assert {t: n for t, n in posts.items() if n != 1} == {}, "chat.postMessage calls per message"
    assert {t: n for t, n in held.items() if n != 1} == {}, "messages Slack holds per WhatsApp message"
    assert await db.count(WebhookLog, WebhookLog.error.is_not(None)) == 0


async def post_delivery_to(bridge: Bridge, d: Delivery) -> None:
    """Deliver to an in-process app; it must acknowledge."""
    body, headers = signed(d.body)
    resp = await bridge.client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 200


def sides_of(bridge: Bridge) -> Standins:
    return Standins(bridge.graph, bridge.slack)


# ---- duplicate deliveries to two instances ----------------------------------------------------------


@pytest.mark.postgres
async def test_each_delivery_sent_five_times_to_two_serve_processes_is_stored_and_posted_once(
        pg_url: str, tmp_path: Path, standins: Standins, serves: Serves, probe_factory: Probe) -> None:
    config = write_config(tmp_path / "app.yaml", standins, pg_url)
    a = await serves.start(config, "serve-a")  # one after the other: the first applies the migrations
    b = await serves.start(config, "serve-b")
    deliveries = batch("dup", 12, customers=3)
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(post_delivery(http, (a.url, b.url)[k % 2], d.body)
                                          for d in deliveries for k in range(5)))
    assert set(statuses) == {200}

    db = probe_factory(pg_url)
    await settled(db, len(deliveries))
    assert await db.count(WebhookLog) == 5 * len(deliveries)
    await assert_stored_and_posted_once(db, standins, deliveries)
    assert len(standins.slack.messages(SLACK_CHANNEL, top_level_only=True)) == 3  # one thread per customer


async def test_each_delivery_sent_five_times_to_two_apps_on_one_database_is_stored_and_posted_once(
        aiohttp_client: Any, db_url: str, probe_factory: Probe) -> None:
    async with bridges(aiohttp_client, db_url) as build:
        a = await build()
        b = await build(slack=a.slack, graph=a.graph, run_migrations=False)
        deliveries = batch("twin", 12, customers=3)
        await asyncio.gather(*(post_delivery_to(bridge, d) for d in deliveries for bridge in (a, b, a, b, a)))
        db = probe_factory(db_url)
        await settled(db, len(deliveries))
        assert await db.count(WebhookLog) == 5 * len(deliveries)
        await assert_stored_and_posted_once(db, sides_of(a), deliveries)


# ---- Slack down, then rate-limiting ----------------------------------------------------------------


class RateLimitStorm:
    """Slack answering 429 with Retry-After to the outbox's methods for as long as it lasts."""

    METHODS = ("chat.postMessage", "conversations.replies", "conversations.history")

    def __init__(self, bridge: Bridge, retry_after: int = 1, depth: int = 4) -> None:
        self.slack = bridge.slack
        self.retry_after = retry_after
        self.depth = depth  # more than the outbox's concurrency: no call slips between two top-ups
        self.queued = dict.fromkeys(self.METHODS, 0)

    def answered(self, method: str) -> int:
        return sum(1 for c in self.slack.calls_to(method) if c.status == 429)

    async def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for method in self.METHODS:
                short = self.depth - (self.queued[method] - self.answered(method))
                if short > 0:
                    self.slack.rate_limit(method, short, retry_after=self.retry_after)
                    self.queued[method] += short
            await asyncio.sleep(0.005)


async def test_slack_outage_then_rate_limit_posts_every_message_once_in_timestamp_order(
        aiohttp_client: Any, db_url: str, probe_factory: Probe) -> None:
    customers = 4
    async with bridges(aiohttp_client, db_url) as build:
        b = await build()
        db = probe_factory(db_url)
        first = batch("calm", 12, customers)
        later = [message("storm", i, who=i % customers, ts=int(time.time()) - 100 + i) for i in range(8)]

        # Slack down (503 to everything) while the first messages arrive, out of WhatsApp order.
        b.slack.set_down(True)
        down_at = time.monotonic()
        for d in random.Random(7).sample(first, len(first)):
            await post_delivery_to(b, d)
        await eventually(lambda: messages_at_least(db, len(first)))
        await eventually(lambda: any(c.status == 503 for c in b.slack.calls), timeout=5)
        await asyncio.sleep(max(0.0, down_at + 3.0 - time.monotonic()))
        b.slack.set_down(False)

        # Then 429 + Retry-After for several seconds while more arrive; then two answers lost on the way back.
        storm = RateLimitStorm(b)
        storm_task = asyncio.create_task(storm.run(5.0))
        storm_started = time.monotonic()
        for d in later:
            await post_delivery_to(b, d)
            await asyncio.sleep(0.5)
        await storm_task
        storm_seconds = time.monotonic() - storm_started
        b.slack.lose_answers("chat.postMessage", 2)

        everything = first + later
        await settled(db, len(everything), timeout=slack_paced(len(everything)))
        await assert_stored_and_posted_once(db, sides_of(b), everything)

        # The faults happened: Slack refused while down, rate-limited during the storm, and two posts went
        # through without their answers (found again by their metadata, not posted twice: checked above).
        refused = [c for c in b.slack.calls if c.status == 503]
        limited = [c for c in b.slack.calls_to("chat.postMessage") if c.status == 429]
        lost = [c for c in b.slack.calls_to("chat.postMessage") if c.error == "answer_lost"]
        assert refused and limited and len(lost) == 2
        # Retry-After was honoured: while every call was answered 429, the channel was tried about once a
        # second (a client ignoring it would retry on its own 0.2 s backoff, several times as often).
        during = [c for c in b.slack.calls_to("chat.postMessage")
                  if storm_started <= c.time < storm_started + storm_seconds]
        assert len(during) <= 3 * storm_seconds, (len(during), storm_seconds)

        # Within each thread the posts are in WhatsApp timestamp order.
        held = b.slack.messages(SLACK_CHANNEL)
        for who in range(customers):
            tokens = [d.token for d in sorted((d for d in everything if sender(d) == customer(who)),
                                              key=wa_timestamp)]
            posts = sorted((m for m in held if any(t in str(m.get("text")) for t in tokens)),
                           key=lambda m: slack_ts(m["ts"]))
            assert len({m.get("thread_ts") for m in posts}) == 1 and posts[0].get("thread_ts")
            assert [next(t for t in tokens if t in str(m.get("text"))) for m in posts] == tokens


def _value(d: Delivery) -> dict[str, Any]:
    return dict(json.loads(d.body)["entry"][0]["changes"][0]["value"])


def sender(d: Delivery) -> str:
    return str(_value(d)["contacts"][0]["wa_id"])


def wa_timestamp(d: Delivery) -> int:
    return int(_value(d)["messages"][0]["timestamp"])


def slack_ts(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


# ---- SIGKILL mid-campaign and mid-ingest -------------------------------------------------------------


def write_audience(path: Path, wa_ids: Sequence[str]) -> Path:
    path.write_text("phone,name\n" + "".join(f"+{w},Student {w[-3:]}\n" for w in wa_ids))
    return path


async def create_campaign(config: Path, audience: Path) -> int:
    out = await cli(config, "campaign", "create", "--channel", "lucknow", "--template", "fee_reminder",
                    "--language", "en", "--audience", str(audience), "--category", "utility")
    found = re.search(r"campaign #(\d+)", out)
    assert found, out
    return int(found.group(1))


async def run_done(db: DbProbe, campaign_id: int) -> bool:
    rows = await db.all(select(CampaignRun.status).where(CampaignRun.campaign_id == campaign_id))
    return bool(rows) and all(r[0] == "done" for r in rows)


async def recipient_states(db: DbProbe) -> dict[str, tuple[str, str | None]]:
    rows = await db.all(select(CampaignRecipient.wa_id, CampaignRecipient.status, CampaignRecipient.wamid))
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_serve_killed_mid_campaign_resumes_and_sends_nobody_twice(
        db_url: str, tmp_path: Path, standins: Standins, serves: Serves, probe_factory: Probe) -> None:
    graph = standins.graph
    config = write_config(tmp_path / "app.yaml", standins, db_url, mps=5)
    audience = [f"9198100{i:05d}" for i in range(20)]
    first = await serves.start(config, "before-kill")
    campaign_id = await create_campaign(config, write_audience(tmp_path / "audience.csv", audience))

    await eventually(lambda: len(graph.sends) >= 6, timeout=30)
    await first.kill()
    sent_before = len(graph.sends)
    db = probe_factory(db_url)
    in_flight = [w for w, (st, _) in (await recipient_states(db)).items() if st == "sending"]
    assert 0 < sent_before < len(audience)

    await expire_leases(db)  # a restart once the dead process's lease on its recipients has run out
    restarted_at = time.monotonic()
    second = await serves.start(config, "after-kill")
    await eventually(lambda: run_done(db, campaign_id), timeout=40)

    states = await recipient_states(db)
    sends = {w: graph.sends_to(w) for w in audience}
    seen = (f"in flight at the kill {in_flight}; states {states}; sends per recipient "
            f"{ {w: len(s) for w, s in sends.items()} }\nafter the restart:\n{second.tail()}")
    assert {st for st, _ in states.values()} <= {"sent", "unknown"}, seen  # nobody left pending or in flight
    unknown = sorted(w for w, (st, _) in states.items() if st == "unknown")
    # Only what the dead process had in flight can be unknown; one it had claimed but not yet attempted is sent.
    assert set(unknown) <= set(in_flight) and len(unknown) <= 2, seen
    for w in audience:
        assert len(sends[w]) <= 1, seen
        if states[w][0] == "sent":
            assert len(sends[w]) == 1 and sends[w][0].wamid == states[w][1], seen
        else:
            assert all(s.time < restarted_at for s in sends[w]), seen  # `unknown` is never re-sent
    assert len(graph.sends) > sent_before  # the rest resumed after the restart


async def test_serve_killed_mid_ingest_keeps_every_acknowledged_delivery(
        db_url: str, tmp_path: Path, standins: Standins, serves: Serves, probe_factory: Probe) -> None:
    config = write_config(tmp_path / "app.yaml", standins, db_url)
    first = await serves.start(config, "before-kill")
    deliveries = batch("ingest", 50, customers=10)
    loader = asyncio.create_task(load(deliveries, lambda: first.url, rate=30))

    await eventually(lambda: sum(d.acked for d in deliveries) >= 18, timeout=20)
    await first.kill()  # mid-load, mid-processing and mid-Slack-posting
    await loader  # the rest of the load meets a closed port
    db = probe_factory(db_url)

    # Durable before the 200: everything acknowledged is in the log although the process died.
    stored = {r[0] for r in await db.all(select(WebhookLog.raw_body))}
    acked = [d for d in deliveries if d.acked]
    assert [d.wamid for d in acked if d.body not in stored] == []
    assert stored <= {d.body for d in deliveries}
    assert any(not d.acked for d in deliveries)  # the kill did cut deliveries off
    assert {s for d in deliveries for s in d.statuses} <= {200, None}  # never an error answer

    await expire_leases(db)
    second = await serves.start(config, "after-kill")
    await redeliver([d for d in deliveries if not d.acked], second.url)
    assert all(d.acked for d in deliveries)

    await settled(db, len(deliveries), timeout=slack_paced(len(deliveries)))
    await assert_stored_and_posted_once(db, standins, deliveries)


# ---- PostgreSQL restarted under load ----------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_restart_under_load_answers_5xx_meanwhile_and_loses_nothing_acknowledged(
        private_pg: PgCluster, tmp_path: Path, standins: Standins, serves: Serves, probe_factory: Probe) -> None:
    url = private_pg.url()
    config = write_config(tmp_path / "app.yaml", standins, url)
    serve = await serves.start(config, "serve")
    deliveries = batch("pgdown", 60, customers=8)
    loader = asyncio.create_task(load(deliveries, lambda: serve.url, rate=15))

    await eventually(lambda: sum(d.acked for d in deliveries) >= 12, timeout=20)
    await asyncio.to_thread(private_pg.stop, "immediate")  # a crash: recovery from the WAL at the start
    await asyncio.sleep(2.0)
    await asyncio.to_thread(private_pg.start)
    await loader

    answers = [s for d in deliveries for s in d.statuses]
    assert None not in answers  # the server answered every delivery, outage or not
    refused = [s for s in answers if s is not None and s != 200]
    assert refused and all(s >= 500 for s in refused)  # the outage was met with 5xx, never a 4xx
    assert serve.alive

    db = probe_factory(url)
    stored = {r[0] for r in await db.all(select(WebhookLog.raw_body))}
    assert [d.wamid for d in deliveries if d.acked and d.body not in stored] == []  # no 200 without a row
    await redeliver([d for d in deliveries if not d.acked], serve.url)
    assert all(d.acked for d in deliveries)
    await settled(db, len(deliveries), timeout=slack_paced(len(deliveries)))
    await assert_stored_and_posted_once(db, standins, deliveries)
    async with aiohttp.ClientSession() as http, http.get(f"{serve.url}/healthz") as resp:
        assert resp.status == 200


# ---- Redis unavailable mid-campaign ------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_outage_pauses_sending_within_the_cap_and_it_resumes(
        restartable_redis: RedisProcess, tmp_path: Path, standins: Standins, serves: Serves,
        probe_factory: Probe) -> None:
    mps = 5
    graph = standins.graph
    graph.set_mps(PNID, mps)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'wabridge.db'}"
    config = write_config(tmp_path / "app.yaml", standins, db_url, redis_url=restartable_redis.url, mps=mps)
    await serves.start(config, "serve")
    audience = [f"9198200{i:05d}" for i in range(25)]
    campaign_id = await create_campaign(config, write_audience(tmp_path / "audience.csv", audience))

    await eventually(lambda: len(graph.sends) >= 5, timeout=30)
    await asyncio.to_thread(restartable_redis.kill)
    down_at = time.monotonic()
    await asyncio.sleep(2.0)
    up_at = time.monotonic()  # Redis answers again from some moment during start(), not only after it returns
    await asyncio.to_thread(restartable_redis.start)  # same port, empty

    db = probe_factory(db_url)
    await eventually(lambda: run_done(db, campaign_id), timeout=40)
    times = [s.time for s in graph.sends]
    assert max_in_window(times) <= mps and graph.throttle_hits == []
    # Nothing went out unthrottled while Redis was away (a send granted just before may still land).
    assert [t - down_at for t in times if down_at + 0.5 <= t < up_at] == []
    assert any(t >= up_at for t in times)  # and sending resumed
    states = await recipient_states(db)
    assert {st for st, _ in states.values()} == {"sent"}
    assert {w: len(graph.sends_to(w)) for w in audience} == dict.fromkeys(audience, 1)
