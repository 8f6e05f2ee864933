"""Migration 0007 upgrades a database holding data from the revision before it, keeping that data."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Contact, SendErrorCount, SlackAction, SlackEvent


async def test_upgrade_from_0006_keeps_rows_and_adds_the_new_tables(db_url: str) -> None:
    await migrate(db_url, "0006")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, mode, mps, "
                "slack_channel, created_at) VALUES ('lucknow', '100', '200', '', 'coexistence', 5, 'C1', :t)"),
                {"t": datetime.now(UTC)})
            await conn.execute(text(
                "INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) VALUES ('9198', :f, :t, :t)"),
                {"f": False, "t": datetime.now(UTC)})
            await conn.execute(text("INSERT INTO slack_events (event_id, received_at) VALUES ('Ev1', :t)"),
                               {"t": datetime.now(UTC)})
        await migrate(db_url)
        sessions = make_sessionmaker(engine)
        async with sessions() as s, s.begin():
            assert (await s.scalars(select(Contact.wa_id))).all() == ["9198"]
            assert (await s.scalars(select(SlackEvent.event_id))).all() == ["Ev1"]
            s.add(SlackAction(key="k" * 64, outcome={"response_action": "clear"}))
            s.add(SendErrorCount(channel_id=1, code=130429, hour=datetime(2026, 11, 27, 17, tzinfo=UTC), count=2))
        async with sessions() as s:
            assert (await s.get(SlackAction, "k" * 64)).outcome == {"response_action": "clear"}  # type: ignore[union-attr]
            assert (await s.scalars(select(SendErrorCount.count))).all() == [2]
    finally:
        await engine.dispose()
