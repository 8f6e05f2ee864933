"""Migration 0017 upgrades a database filled by 0016: conversations kept, the saved replies table added."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Contact, SavedReply

NOW = datetime(2026, 12, 6, 15, 20, tzinfo=UTC)


async def test_upgrade_from_0016_keeps_contacts_and_adds_saved_replies(db_url: str) -> None:
    await migrate(db_url, "0016")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) "
                                    "VALUES ('919812345678', false, :t, :t)"), {"t": NOW})
        await migrate(db_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "saved_replies" in tables
        async with sessions() as s, s.begin():
            assert (await s.scalars(select(Contact))).one().wa_id == "919812345678"
            s.add(SavedReply(slack_team="default", name="Fees", text="Hi {first_name}, fees are due on the 5th.",
                             created_by="U0STAFF"))
        async with sessions() as s:
            row = (await s.scalars(select(SavedReply))).one()
            assert (row.uses, row.phone_number_id, row.created_at is not None) == (0, None, True)
    finally:
        await engine.dispose()
