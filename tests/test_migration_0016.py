"""Migration 0016 upgrades a database filled by 0015: conversations kept, open with no owner, and the inbox's
audit table added and usable."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Conversation, ConversationEvent

NOW = datetime(2026, 12, 6, 16, 0, tzinfo=UTC)


async def test_upgrade_from_0015_keeps_conversations_open_and_adds_the_audit(db_url: str) -> None:
    await migrate(db_url, "0015")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:  # rows written with 0015's own columns
            await conn.execute(text(
                "INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, mode, mps, slack_channel, "
                "slack_team, created_at) "
                "VALUES ('lucknow', '100000000000001', '200000000000001', '+91 522 400 0000', 'coexistence', 5, "
                "'C0LUCKNOW', 'T0ALPHA', :t)"),
                {"t": NOW})
            await conn.execute(text("INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) "
                                    "VALUES ('919812345678', false, :t, :t)"), {"t": NOW})
            await conn.execute(text(
                "INSERT INTO conversations (channel_id, contact_id, slack_channel, slack_thread_ts, slack_team, "
                "created_at) SELECT ch.id, co.id, 'C0LUCKNOW', '1700000000.000100', 'T0ALPHA', :t "
                "FROM channels ch, contacts co"), {"t": NOW})
        await migrate(db_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "conversation_events" in tables
        async with sessions() as s, s.begin():
            conv = (await s.scalars(select(Conversation))).one()
            assert (conv.owner, conv.inbox_status, conv.status_by, conv.status_at) == (None, "open", None, None)
            assert (conv.slack_thread_ts, conv.slack_team) == ("1700000000.000100", "T0ALPHA")
            conv.inbox_status, conv.status_by, conv.status_at = "resolved", "U0ASHA", NOW
            s.add(ConversationEvent(conversation_id=conv.id, slack_team="T0ALPHA", action="resolve",
                                    actor="U0ASHA", dedupe_key="k1", created_at=NOW))
        async with sessions() as s:
            event = (await s.scalars(select(ConversationEvent))).one()
            assert (event.action, event.actor, event.created_at) == ("resolve", "U0ASHA", NOW)
            assert (await s.scalars(select(Conversation.status_at))).one() == NOW
    finally:
        await engine.dispose()
