"""Migration 0004 on a database filled by 0003: waiting deliveries join the lane they would be stored in."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from storage.db import make_engine, migrate


async def test_upgrade_puts_waiting_deliveries_in_their_lanes(db_url: str) -> None:
    await migrate(db_url, "0003")
    engine = make_engine(db_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            for event_type, processed in [("message", None), ("smb_message_echo", None), ("mixed", None),
                                          ("status", None), ("history", None), ("status", now)]:
                await conn.execute(text(
                    "INSERT INTO webhook_logs (raw_body, event_type, received_at, processed_at, attempts) "
                    "VALUES (:body, :event_type, :received_at, :processed_at, 0)"),
                    {"body": b"{}", "event_type": event_type, "received_at": now, "processed_at": processed})
            await conn.execute(text("INSERT INTO slack_events (event_id, received_at) VALUES ('Ev1', :at)"),
                               {"at": now})
        await migrate(db_url)
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT event_type, lane FROM webhook_logs WHERE processed_at IS NULL ORDER BY id"))).all()
            events = (await conn.execute(text("SELECT count(*) FROM slack_events"))).scalar()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [("message", "live"), ("smb_message_echo", "live"), ("mixed", "live"),
                                        ("status", "bulk"), ("history", "bulk")]
    assert events == 1
