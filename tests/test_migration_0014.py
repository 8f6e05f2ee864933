"""Migration 0014 upgrades a database filled by 0013: contacts and messages kept, erasure tables added empty."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Contact, Erasure, SuppressedIdentity

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def test_upgrade_from_0013_keeps_data_and_adds_the_erasure_tables(db_url: str) -> None:
    await migrate(db_url, "0013")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) "
                                    "VALUES ('919812345678', true, :t, :t)"), {"t": NOW})
        await migrate(db_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"erasures", "suppressed_identities"} <= tables
        async with sessions() as s, s.begin():
            assert (await s.scalars(select(Contact.wa_id).where(Contact.opted_out.is_(True)))).all() == [
                "919812345678"]
            s.add(Erasure(requested_by="U1", identity_hashes=["ab"], scope=None, contact_ids=[1],
                          conversation_ids=[], threads=[], counts={}, slack_refused=[]))
            s.add(SuppressedIdentity(hash="ab"))
        async with sessions() as s:
            record = (await s.scalars(select(Erasure))).one()
            assert record.state == "erasing" and record.requested_at is not None
    finally:
        await engine.dispose()
