"""Drill: `serve` SIGKILLed while it applies batches of a backlog loses nothing and doubles nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import func, select

from storage import webhook_logs
from storage.db import migrate
from storage.models import Message, MessageStatus, SlackOutbox, WebhookLog
from tests.drills.conftest import DbProbe, Serves, Standins, expire_leases, write_config
from tests.drills.test_fault_drills import Probe, batch
from tests.harness import eventually
from tests.helpers import status


async def test_serve_killed_mid_batch_loses_and_doubles_nothing(
        db_url: str, tmp_path: Path, standins: Standins, serves: Serves, probe_factory: Probe) -> None:
    await migrate(db_url)
    messages = batch("kill", 600, customers=60)
    ts0 = int(time.time()) - 300
    statuses = [json.dumps(status(f"wamid.campaign.{i % 500}", ("sent", "delivered", "read")[i % 3],
                                  ts=ts0 + i)).encode() for i in range(1500)]
    bodies = [d.body for d in messages] + statuses
    bodies += bodies[:100] * 2  # Meta's redeliveries, some of them in the same batch as the original
    db = probe_factory(db_url)
    async with db.engine.begin() as conn:
        await webhook_logs.store_many(conn, [(b, "status" if b in statuses else "message") for b in bodies])

    config = write_config(tmp_path / "app.yaml", standins, db_url)
    first = await serves.start(config, "before-kill")
    await eventually(lambda: _processed_at_least(db, 150), timeout=60)
    await first.kill()
    cut_off = await db.count(WebhookLog, WebhookLog.processed_at.is_(None))
    assert cut_off > 0  # killed with work left, some of it claimed and half applied

    await expire_leases(db)
    await serves.start(config, "after-kill")
    await eventually(lambda: _all_processed(db), timeout=120)

    wamids = [r[0] for r in await db.all(select(Message.wamid))]
    assert sorted(wamids) == sorted(d.wamid for d in messages)  # every message once
    posts = await db.all(select(SlackOutbox.payload).where(SlackOutbox.kind == "message"))
    assert sorted(p[0]["message_id"] for p in posts) == sorted(
        r[0] for r in await db.all(select(Message.id)))  # one Slack post owed per message
    assert await db.count(MessageStatus) == 1500  # 500 wamids x 3 states, each once
    assert await db.count(WebhookLog, WebhookLog.error.is_not(None)) == 0
    states = await db.all(select(MessageStatus.wamid, func.count()).group_by(MessageStatus.wamid))
    assert {n for _, n in states} == {3}


async def _processed_at_least(db: DbProbe, n: int) -> bool:
    return await db.count(WebhookLog, WebhookLog.processed_at.is_not(None)) >= n


async def _all_processed(db: DbProbe) -> bool:
    return await db.count(WebhookLog, WebhookLog.processed_at.is_(None)) == 0
