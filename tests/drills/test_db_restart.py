"""PostgreSQL restarted (fast shutdown, then start) under a running `serve`, which is never restarted itself:
once mid-campaign at 40 messages per second, once mid-storm of status webhooks.

Whatever the process held when its connections were cut (recipients claimed and `sending`, deliveries
leased, Slack posts in flight) it takes up again or gives back once the database answers: the campaign
finishes with every recipient sent exactly once (counted at the Graph stand-in), every status is applied,
`/healthz` says 200 again, and the outage costs a bounded number of tracebacks, not one per loop turn.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from storage.models import CampaignRecipient, WebhookLog
from tests.drills.conftest import DbProbe, Delivery, PgCluster, Serves, Standins, load, redeliver, write_config
from tests.drills.test_fault_drills import create_campaign, recipient_states, run_done, write_audience
from tests.harness import eventually
from tests.helpers import APP_SECRET, status

Probe = Callable[[str], DbProbe]

MPS = 40
AUDIENCE = 320  # eight seconds of sending: the restart lands in the middle of it
# Once the database is back, what it cut off is taken up again within seconds; the leases a process would
# otherwise wait out are a minute long (deliveries 60 s, recipients 60 s, Slack posts 120 s).
HEALS_WITHIN = 40.0
# Tracebacks an outage of a second or two may cost: a few per loop, not one per loop turn.
TRACEBACKS_AT_MOST = 40


async def restart(pg: PgCluster, serve_url: str, down_for: float = 1.0) -> None:
    """A clean restart: `pg_ctl stop -m fast` (every connection cut), a moment down, then start. Meanwhile
    `/healthz` says what is wrong."""
    await asyncio.to_thread(pg.stop, "fast")
    code, body = await healthz(serve_url)
    assert code == 503 and str(body.get("database", "")).startswith("error"), body
    await asyncio.sleep(down_for)
    await asyncio.to_thread(pg.start)


async def healthz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.postgres
async def test_postgres_restart_mid_campaign_and_mid_status_storm_heals_without_a_restart(
        private_pg: PgCluster, tmp_path: Path, standins: Standins, serves: Serves, probe_factory: Probe) -> None:
    url = private_pg.url()
    graph = standins.graph
    config = write_config(tmp_path / "app.yaml", standins, url, mps=MPS)
    serve = await serves.start(config, "serve")
    assert serve.proc is not None
    pid = serve.proc.pid
    # Meta's `sent` and `delivered` for every accepted send; `read` comes later, as the storm.
    graph.send_status_webhooks(f"{serve.url}/webhooks/meta", APP_SECRET, delays=(("sent", 0.3), ("delivered", 0.8)))
    db = probe_factory(url)

    # ---- mid-campaign ----
    audience = [f"9198400{i:05d}" for i in range(AUDIENCE)]
    campaign_id = await create_campaign(config, write_audience(tmp_path / "audience.csv", audience))
    await eventually(lambda: len(graph.sends) >= AUDIENCE // 4, timeout=60)
    await restart(private_pg, serve.url)
    restarted = time.monotonic()
    sent_by_restart = len(graph.sends)
    assert sent_by_restart < AUDIENCE  # the restart did land mid-campaign

    async def stuck() -> str:
        states = await recipient_states(db)
        left = {st for st, _ in states.values()} - {"sent", "delivered", "read"}
        return f"states not settled: {sorted(left)}; {await _in_flight(db)}\n{serve.tail()}"

    try:
        await eventually(lambda: run_done(db, campaign_id), timeout=HEALS_WITHIN)
    except AssertionError:
        raise AssertionError(f"the campaign did not finish after the restart: {await stuck()}") from None
    sends = {w: graph.sends_to(w) for w in audience}
    assert {w: len(s) for w, s in sends.items() if len(s) != 1} == {}, await stuck()
    # Every status the stand-in sent (sent, delivered) is applied, and every recipient carries its wamid.
    await eventually(lambda: _all_in(db, {"delivered"}), timeout=HEALS_WITHIN)
    states = await recipient_states(db)
    assert {w: states[w][1] for w in audience} == {w: sends[w][0].wamid for w in audience}
    assert time.monotonic() - restarted < HEALS_WITHIN + 5

    # ---- mid-storm ----
    storm = [_read(w, sends[w][0].wamid) for w in audience]
    loader = asyncio.create_task(load(storm, lambda: serve.url, rate=400, concurrency=16))
    await eventually(lambda: sum(d.acked for d in storm) >= len(storm) // 4, timeout=30)
    await restart(private_pg, serve.url)
    await loader
    await redeliver([d for d in storm if not d.acked], serve.url)  # Meta retries what got no 200
    assert all(d.acked for d in storm)
    try:
        await eventually(lambda: _all_in(db, {"read"}), timeout=HEALS_WITHIN)
    except AssertionError:
        states = await recipient_states(db)
        unread = {w: states[w][0] for w in audience if states[w][0] != "read"}
        logs = await db.all(select(WebhookLog.id, WebhookLog.owner_id, WebhookLog.claimed_until, WebhookLog.error)
                            .where(WebhookLog.processed_at.is_(None)).limit(10))
        raise AssertionError(f"{len(unread)} statuses not applied: {dict(list(unread.items())[:5])}; "
                             f"unprocessed deliveries {logs}\n{serve.tail()}") from None
    await eventually(lambda: _no_unprocessed(db), timeout=HEALS_WITHIN)

    # The same process did all of it, and says it is healthy again.
    assert serve.alive and serve.proc.pid == pid
    code, body = await eventually(lambda: _healthy(serve.url), timeout=HEALS_WITHIN)
    assert code == 200, body
    assert {w: len(graph.sends_to(w)) for w in audience} == dict.fromkeys(audience, 1)
    tracebacks = serve.log_text().count("Traceback (most recent call last)")
    assert tracebacks <= TRACEBACKS_AT_MOST, f"{tracebacks} tracebacks for two short outages"


def _read(wa_id: str, wamid: str) -> Delivery:
    body = json.dumps(status(wamid, "read", recipient=wa_id, ts=int(time.time()))).encode()
    return Delivery(wamid, wamid, body)


async def _all_in(db: DbProbe, wanted: set[str]) -> bool:
    return {st for st, _ in (await recipient_states(db)).values()} <= wanted


async def _no_unprocessed(db: DbProbe) -> bool:
    return await db.count(WebhookLog, WebhookLog.processed_at.is_(None)) == 0


async def _healthy(url: str) -> tuple[int, dict[str, object]] | None:
    code, body = await healthz(url)
    return (code, body) if code == 200 else None


async def _in_flight(db: DbProbe) -> list[tuple[object, ...]]:
    rows = await db.all(select(CampaignRecipient.id, CampaignRecipient.status, CampaignRecipient.owner_id,
                               CampaignRecipient.attempted_at, CampaignRecipient.claimed_at)
                        .where(CampaignRecipient.status.not_in(("sent", "delivered", "read"))).limit(10))
    return [tuple(r) for r in rows]
