"""Migration 0020 upgrades a database filled by 0019: messages kept, the Slack redactions table added and usable
by the retention pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData, insert, inspect, select

from bot.core.config import RetentionSettings
from bot.ops.retention_worker import RetentionWorker
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Message, SlackRedaction

OLD = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


async def test_upgrade_from_0019_keeps_messages_and_owes_their_posts_a_redaction(db_url: str) -> None:
    await migrate(db_url, "0019")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        meta = MetaData()
        async with engine.begin() as conn:  # rows as 0019 wrote them, through its own tables
            await conn.run_sync(lambda c: meta.reflect(c, only=["channels", "contacts", "conversations", "messages"]))
            t = meta.tables
            channel = (await conn.execute(insert(t["channels"]).values(
                name="lucknow", phone_number_id="1", waba_id="2", mode="coexistence", mps=5, slack_team="T0ALPHA",
                display_phone_number="", slack_channel="C0ALPHA", created_at=OLD)
                .returning(t["channels"].c.id))).scalar_one()
            contact = (await conn.execute(insert(t["contacts"]).values(
                wa_id="919812345678", opted_out=False, created_at=OLD, updated_at=OLD)
                .returning(t["contacts"].c.id))).scalar_one()
            conv = (await conn.execute(insert(t["conversations"]).values(
                channel_id=channel, contact_id=contact, slack_channel="C0ALPHA", slack_thread_ts="1.000100",
                slack_team="T0ALPHA", inbox_status="open", created_at=OLD)
                .returning(t["conversations"].c.id))).scalar_one()
            for n, ts in enumerate(("1.000100", "1.000200")):
                await conn.execute(insert(t["messages"]).values(
                    wamid=f"wamid.{n}", conversation_id=conv, direction="inbound", source="customer", type="text",
                    text=f"old {n}", slack_ts=ts, status_history=[], is_history=False, is_note=False,
                    wa_timestamp=OLD, created_at=OLD))
        await migrate(db_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "slack_redactions" in tables
        async with sessions() as s:
            assert sorted((await s.scalars(select(Message.text))).all()) == ["old 0", "old 1"]
        settings = RetentionSettings(messages_days=365)
        assert (await RetentionWorker(sessions, settings).prune_once())["messages"] == 2
        async with sessions() as s:
            rows = (await s.execute(select(SlackRedaction.slack_team, SlackRedaction.ts, SlackRedaction.parent)
                                    .order_by(SlackRedaction.ts))).tuples().all()
        assert rows == [("T0ALPHA", "1.000100", True), ("T0ALPHA", "1.000200", False)]
        assert datetime.now(UTC) - OLD > timedelta(days=365)
    finally:
        await engine.dispose()
