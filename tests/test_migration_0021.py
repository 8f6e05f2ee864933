"""Migration 0021 upgrades a database filled by 0020: conversations kept, owed away messages recorded against
them, once per (conversation, kind, period)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData, Table, inspect, select
from sqlalchemy.exc import IntegrityError

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import AutoReply, Conversation

NOW = datetime(2026, 12, 6, 16, 50, tzinfo=UTC)


async def test_upgrade_from_0020_keeps_conversations_and_adds_auto_replies(db_url: str) -> None:
    await migrate(db_url, "0020")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:
            meta = MetaData()
            await conn.run_sync(lambda c: meta.reflect(c, only=["channels", "contacts", "conversations"]))
            channels, contacts, conversations = (Table(n, meta) for n in ("channels", "contacts", "conversations"))
            channel_id = (await conn.execute(channels.insert().values(
                name="lucknow", phone_number_id="100000000000001", waba_id="200000000000001", mode="cloud_api",
                display_phone_number="+91 522 400 0000", slack_channel="C0LUCKNOW", slack_team="default",
                mps=80, created_at=NOW).returning(channels.c.id))).scalar_one()
            contact_id = (await conn.execute(contacts.insert().values(
                wa_id="919812345678", opted_out=False, created_at=NOW, updated_at=NOW)
                .returning(contacts.c.id))).scalar_one()
            await conn.execute(conversations.insert().values(
                channel_id=channel_id, contact_id=contact_id, last_customer_message_at=NOW, created_at=NOW))
        await migrate(db_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "auto_replies" in tables
        async with sessions() as s, s.begin():
            conv = (await s.scalars(select(Conversation))).one()
            assert conv.last_customer_message_at == NOW
            s.add(AutoReply(conversation_id=conv.id, kind="away", period_key=NOW.isoformat(), state="pending",
                            trigger_at=NOW))
        with pytest.raises(IntegrityError):  # the same period of the same conversation is owed once
            async with sessions() as s, s.begin():
                s.add(AutoReply(conversation_id=conv.id, kind="away", period_key=NOW.isoformat(),
                                state="pending", trigger_at=NOW))
        async with sessions() as s:
            row = (await s.scalars(select(AutoReply))).one()
            assert (row.slack_team, row.state, row.wamid) == ("default", "pending", None)
    finally:
        await engine.dispose()
