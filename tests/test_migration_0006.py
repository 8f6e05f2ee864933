"""Migration 0006 upgrades a database filled by 0005, the revision before it: messages kept, index added.

The rows are written with 0005's own tables (reflected), not today's models: a later migration's column
does not exist yet in a database that 0005 made.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import MetaData, Table, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.ops.insights_store import period_figures
from bot.slack.display_names import isolate
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Message, utcnow


async def _insert(conn: AsyncConnection, table_name: str, **values: Any) -> int:
    table = await conn.run_sync(lambda c: Table(table_name, MetaData(), autoload_with=c))
    result = await conn.execute(insert(table).values(**values).returning(table.c.id))
    return int(result.scalar_one())


async def _seed_0005(conn: AsyncConnection, start: datetime) -> None:
    """One conversation as 0005 stored it: the customer at 0, a phone-app reply at 7, the customer at 20."""
    now = utcnow()
    channel_id = await _insert(conn, "channels", name="lucknow", phone_number_id="1001", waba_id="2001",
                               display_phone_number="", mode="coexistence", mps=5, slack_channel="",
                               created_at=now)
    contact_id = await _insert(conn, "contacts", wa_id="919800000001", profile_name="Ravi", opted_out=False,
                               created_at=now, updated_at=now)
    conv_id = await _insert(conn, "conversations", channel_id=channel_id, contact_id=contact_id,
                            created_at=now, last_customer_message_at=start + timedelta(minutes=20))
    for i, (minutes, source) in enumerate([(0, "customer"), (7, "phone_app"), (20, "customer")]):
        at = start + timedelta(minutes=minutes)
        await _insert(conn, "messages", wamid=f"wamid.{i}", conversation_id=conv_id,
                      direction="inbound" if source == "customer" else "outbound", source=source, type="text",
                      text=f"message {i}", status_history=[], is_history=False, is_note=False, wa_timestamp=at,
                      created_at=now)


async def test_upgrade_from_0005_keeps_messages_and_adds_the_time_index(db_url: str) -> None:
    await migrate(db_url, "0005")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        start = utcnow() - timedelta(hours=1)
        async with engine.begin() as conn:
            await _seed_0005(conn, start)

        await migrate(db_url)

        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: {i["name"]: i["column_names"]
                                                     for i in inspect(c).get_indexes("messages")})
        assert indexes["ix_messages_wa_timestamp"] == ["wa_timestamp"]
        async with sessions() as s:
            assert len((await s.scalars(select(Message.id))).all()) == 3
        figures = await period_figures(sessions, since=start - timedelta(minutes=1))
        assert figures.first_responses == (timedelta(minutes=7),)
        assert [w.customer for w in figures.waiting] == [f"{isolate('Ravi')} (+91 98000 00001)"]
    finally:
        await engine.dispose()
