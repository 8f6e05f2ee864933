"""Migration 0025 upgrades a database filled by 0024: owed away messages kept; one left `sending` (its sender
stopped before claims were recorded) counts as attempted, so recovery reports it instead of sending it again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData, Table, select

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import AutoReply

NOW = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)


async def test_upgrade_from_0024_keeps_auto_replies_and_marks_a_stuck_send_as_attempted(db_url: str) -> None:
    await migrate(db_url, "0024")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    stuck_since = NOW - timedelta(hours=3)
    try:
        async with engine.begin() as conn:
            meta = MetaData()
            await conn.run_sync(lambda c: meta.reflect(
                c, only=["channels", "contacts", "conversations", "auto_replies"]))
            channels, contacts, conversations, replies = (
                Table(n, meta) for n in ("channels", "contacts", "conversations", "auto_replies"))
            channel_id = (await conn.execute(channels.insert().values(
                name="lucknow", phone_number_id="100000000000001", waba_id="200000000000001", mode="cloud_api",
                display_phone_number="+91 522 400 0000", slack_channel="C0LUCKNOW", slack_team="default",
                mps=80, created_at=NOW).returning(channels.c.id))).scalar_one()
            contact_id = (await conn.execute(contacts.insert().values(
                wa_id="919812345678", opted_out=False, created_at=NOW, updated_at=NOW)
                .returning(contacts.c.id))).scalar_one()
            conv_id = (await conn.execute(conversations.insert().values(
                channel_id=channel_id, contact_id=contact_id, last_customer_message_at=NOW, created_at=NOW)
                .returning(conversations.c.id))).scalar_one()
            for key, state, at in (("p1", "sent", NOW), ("p2", "sending", stuck_since), ("p3", "pending", NOW)):
                await conn.execute(replies.insert().values(
                    conversation_id=conv_id, slack_team="default", kind="away", period_key=key, state=state,
                    wamid="wamid.AWAY" if state == "sent" else None, trigger_at=at, created_at=at,
                    updated_at=at))
        await migrate(db_url)
        async with sessions() as s, s.begin():
            rows = (await s.scalars(select(AutoReply).order_by(AutoReply.period_key))).all()
            assert [(r.period_key, r.state, r.owner_id, r.fence, r.attempted_at) for r in rows] == [
                ("p1", "sent", None, 0, None), ("p2", "sending", None, 0, stuck_since),
                ("p3", "pending", None, 0, None)]
            assert rows[0].wamid == "wamid.AWAY"
            rows[2].state, rows[2].owner_id, rows[2].fence, rows[2].attempted_at = "sending", 7, 1, NOW
        async with sessions() as s:
            taken = (await s.scalars(select(AutoReply).where(AutoReply.period_key == "p3"))).one()
            assert (taken.owner_id, taken.fence, taken.attempted_at) == (7, 1, NOW)
    finally:
        await engine.dispose()
