"""Migration 0024 upgrades a database filled by 0023: saved replies kept as text only, and a file can be attached."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData, Table, select

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import SavedReply

NOW = datetime(2026, 12, 6, 17, 45, tzinfo=UTC)


async def test_upgrade_from_0023_keeps_saved_replies_and_adds_their_attachment(db_url: str) -> None:
    await migrate(db_url, "0023")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:
            meta = MetaData()
            await conn.run_sync(lambda c: meta.reflect(c, only=["saved_replies"]))
            table = Table("saved_replies", meta)
            await conn.execute(table.insert().values(
                slack_team="default", name="Fees", text="Fees are due on the 5th.", uses=4, created_by="U0STAFF",
                created_at=NOW, updated_at=NOW))
        await migrate(db_url)
        async with sessions() as s, s.begin():
            row = (await s.scalars(select(SavedReply))).one()
            assert (row.name, row.uses, row.attachment) == ("Fees", 4, None)
            row.attachment = {"id": "F0PDF", "name": "fees.pdf", "mimetype": "application/pdf"}
        async with sessions() as s:
            assert (await s.scalars(select(SavedReply))).one().attachment == {
                "id": "F0PDF", "name": "fees.pdf", "mimetype": "application/pdf"}
    finally:
        await engine.dispose()
