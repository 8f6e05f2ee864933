"""Migration 0015 upgrades a database filled by 0014: contacts kept, the groups table added and usable."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Contact, WhatsAppGroup

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


async def test_upgrade_from_0014_keeps_contacts_and_adds_the_groups_table(db_url: str) -> None:
    await migrate(db_url, "0014")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) "
                                    "VALUES ('group:Y2FwaV9ncm91cA', false, :t, :t)"), {"t": NOW})
        await migrate(db_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "whatsapp_groups" in tables
        async with sessions() as s, s.begin():
            contact = (await s.scalars(select(Contact))).one()
            assert contact.wa_id == "group:Y2FwaV9ncm91cA"
            s.add(WhatsAppGroup(contact_id=contact.id, group_id="Y2FwaV9ncm91cA", subject="Site visit",
                                participants=[{"wa_id": "919812345678"}], updated_at=NOW))
        async with sessions() as s:
            row = (await s.scalars(select(WhatsAppGroup))).one()
            assert (row.state, row.participants) == ("active", [{"wa_id": "919812345678"}])
    finally:
        await engine.dispose()
