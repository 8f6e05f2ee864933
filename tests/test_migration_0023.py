"""Migration 0023 upgrades a database filled by 0022: conversations kept and not snoozed, the audit's rows kept
with no detail, and labels storable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Conversation, ConversationEvent, ConversationLabel

NOW = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)


async def test_upgrade_from_0022_keeps_conversations_and_their_audit(db_url: str) -> None:
    await migrate(db_url, "0022")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:  # rows written with 0022's own columns
            await conn.execute(text(
                "INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, mode, mps, slack_channel, "
                "slack_team, created_at) VALUES ('lucknow', '1001', '2001', '+91 522 400 0000', 'coexistence', 5, "
                "'C0LUCKNOW', 'T0ALPHA', :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) "
                                    "VALUES ('919812345678', false, :t, :t)"), {"t": NOW})
            await conn.execute(text(
                "INSERT INTO conversations (channel_id, contact_id, slack_team, created_at, inbox_status, owner) "
                "SELECT ch.id, co.id, 'T0ALPHA', :t, 'open', 'U0ASHA' FROM channels ch, contacts co"), {"t": NOW})
            await conn.execute(text(
                "INSERT INTO conversation_events (conversation_id, slack_team, action, actor, dedupe_key, "
                "created_at) SELECT id, 'T0ALPHA', 'take', 'U0ASHA', 'k1', :t FROM conversations"), {"t": NOW})
        await migrate(db_url)
        async with sessions() as s, s.begin():
            conv = (await s.scalars(select(Conversation))).one()
            assert (conv.owner, conv.inbox_status, conv.snoozed_until) == ("U0ASHA", "open", None)
            event = (await s.scalars(select(ConversationEvent))).one()
            assert (event.action, event.actor, event.detail) == ("take", "U0ASHA", None)
            conv.snoozed_until = NOW + timedelta(hours=1)
            s.add(ConversationLabel(conversation_id=conv.id, label="fees"))
        async with sessions() as s:
            assert (await s.scalars(select(ConversationLabel.label))).all() == ["fees"]
            assert (await s.scalars(select(Conversation.snoozed_until))).one() == NOW + timedelta(hours=1)
    finally:
        await engine.dispose()
