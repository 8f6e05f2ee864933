"""Migration 0006 upgrades a database filled by 0005, the revision before it: messages kept, index added."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import inspect, select

from bot.ops.insights_store import period_figures
from bot.slack.display_names import isolate
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Channel, Message, utcnow
from tests.insights_seed import Msg, seed


async def test_upgrade_from_0005_keeps_messages_and_adds_the_time_index(db_url: str) -> None:
    await migrate(db_url, "0005")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            channel = Channel(name="lucknow", phone_number_id="1001", waba_id="2001", mode="coexistence", mps=5)
            s.add(channel)
            await s.flush()
            channel_id = channel.id
        start = utcnow() - timedelta(hours=1)
        await seed(sessions, channel_id, "919800000001", "Ravi", start,
                   [Msg(0, "customer"), Msg(7, "phone_app"), Msg(20, "customer")])

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
