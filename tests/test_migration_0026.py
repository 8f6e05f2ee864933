"""Migration 0026 upgrades a database filled by 0025: the messages already stored are found by their English stems
(PostgreSQL's rebuilt `search_tsv`, SQLite's new porter index), still as typed and by quoted phrase, and so are
the messages stored, edited and deleted after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text, update

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Message
from storage.search import Query, find

T0 = datetime(2026, 12, 6, 19, 0, tzinfo=UTC)


async def test_upgrade_from_0025_finds_stored_messages_by_their_stems(db_url: str) -> None:
    await migrate(db_url, "0025")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:  # rows written with 0025's own columns
            await conn.execute(text(
                "INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, mode, mps, slack_channel, "
                "slack_team, created_at) VALUES ('lucknow', '1001', '2001', '+91 522 400 0000', 'coexistence', 5, "
                "'C0LUCKNOW', 'default', :t)"), {"t": T0})
            for wa_id, name, wamid, body in (("919812345678", "Ravi", "wamid.OLD1", "hostel fees refunded"),
                                             ("919812345679", "Sita", "wamid.OLD2", "kamra me paise do")):
                await conn.execute(text(
                    "INSERT INTO contacts (wa_id, profile_name, opted_out, created_at, updated_at) "
                    "VALUES (:wa_id, :name, false, :t, :t)"), {"wa_id": wa_id, "name": name, "t": T0})
                await conn.execute(text(
                    "INSERT INTO conversations (channel_id, contact_id, slack_team, created_at, inbox_status) "
                    "SELECT ch.id, co.id, 'default', :t, 'open' FROM channels ch, contacts co WHERE co.wa_id = :wa_id"),
                    {"wa_id": wa_id, "t": T0})
                await conn.execute(text(
                    "INSERT INTO messages (wamid, conversation_id, direction, source, type, text, status_history, "
                    "is_history, is_note, wa_timestamp, created_at) SELECT :wamid, c.id, 'inbound', 'customer', "
                    "'text', :body, '[]', false, false, :t, :t FROM conversations c JOIN contacts co "
                    "ON co.id = c.contact_id WHERE co.wa_id = :wa_id"),
                    {"wamid": wamid, "body": body, "wa_id": wa_id, "t": T0})
        await migrate(db_url)
        sessions = make_sessionmaker(engine)
        async with sessions() as s:
            channel_id = (await s.execute(text("SELECT id FROM channels"))).scalar_one()
            ravi = (await s.execute(text("SELECT c.id FROM conversations c JOIN contacts co ON co.id = c.contact_id "
                                         "WHERE co.profile_name = 'Ravi'"))).scalar_one()

        async def names(query: Query) -> list[str | None]:
            async with sessions() as s:
                found = await find(s, query, workspace="default", channel_ids=[channel_id])
            return [h.name for h in found]

        assert await names(Query(("fee", "refund"))) == ["Ravi"]  # by the stems of the words stored before
        assert await names(Query(("refu",))) == ["Ravi"]  # by prefix, as before
        assert await names(Query(("paise",))) == ["Sita"]
        assert await names(Query(("kamra", "me"))) == ["Sita"]
        assert await names(Query(phrases=(("fees", "refunded"),))) == ["Ravi"]
        assert await names(Query(phrases=(("fee", "refund"),))) == []
        async with sessions() as s, s.begin():  # stored, edited and deleted after the upgrade
            s.add(Message(conversation_id=ravi, direction="inbound", source="customer", type="text",
                          text="bus passes renewed", wamid="wamid.NEW", wa_timestamp=T0 + timedelta(hours=1)))
            await s.execute(update(Message).where(Message.wamid == "wamid.OLD1").values(text="[erased]"))
            await s.execute(Message.__table__.delete().where(Message.wamid == "wamid.OLD2"))
        assert await names(Query(("pass", "renewal"))) == ["Ravi"]
        assert await names(Query(("refunds",))) == []
        assert await names(Query(("paise",))) == []
    finally:
        await engine.dispose()
