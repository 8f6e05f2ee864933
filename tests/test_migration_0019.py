"""Migration 0019 upgrades a database filled by 0018: pending deliveries keep their place and share one source."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData, Table, insert

from storage import webhook_logs
from storage.db import make_engine, make_sessionmaker, migrate

NOW = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)


async def test_upgrade_from_0018_keeps_pending_deliveries_claimable(db_url: str) -> None:
    await migrate(db_url, "0018")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            logs = await conn.run_sync(lambda c: Table("webhook_logs", MetaData(), autoload_with=c))
            await conn.execute(insert(logs), [
                {"raw_body": b'{"old": 1}', "event_type": "message", "lane": "live", "received_at": NOW,
                 "attempts": 0, "fence": 0},
                {"raw_body": b'{"old": 2}', "event_type": "status", "lane": "bulk", "received_at": NOW,
                 "attempts": 0, "fence": 0}])
        await migrate(db_url)
        async with engine.begin() as conn:
            await webhook_logs.store_many(conn, [(b'{"new": 3}', "message", "team:T0NEW")])
        claimed = await webhook_logs.claim_batch(make_sessionmaker(engine), 10, lanes=("live",), fair=True)
        assert [c.raw_body for c in claimed] == [b'{"old": 1}', b'{"new": 3}']  # the old one first, then the new
        bulk = await webhook_logs.claim_batch(make_sessionmaker(engine), 10, lanes=("bulk",))
        assert [c.raw_body for c in bulk] == [b'{"old": 2}']
    finally:
        await engine.dispose()
