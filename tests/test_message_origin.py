"""Direction and source are one enum each (bot.core.origin), stored as the same strings as before: rows written
by the previous version read as members, rows written now read as the previous version's strings, and the
schema needs no migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, Table, insert, select

from bot.core.origin import Direction, Source
from bot.meta import events as ev
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Base, Channel, Message
from storage.repository import contact_for, conversation_for

NOW = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)


def test_one_direction_for_events_and_storage() -> None:
    assert ev.Direction is Direction
    assert [d.value for d in Direction] == ["inbound", "outbound"]
    assert [s.value for s in Source] == ["customer", "phone_app", "slack", "campaign", "api", "bridge"]


async def test_stored_strings_are_unchanged_both_ways(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            contact = await contact_for(s, "919812345678", "Ravi")
            await s.flush()
            channel = Channel(name="origin-test", phone_number_id="100000000000099", waba_id="200000000000099",
                              mode="coexistence", mps=5)
            s.add(channel)
            await s.flush()
            conv = await conversation_for(s, channel.id, contact.id, None)
            conv_id = conv.id
        async with engine.begin() as conn:
            messages = await conn.run_sync(lambda c: Table("messages", MetaData(), autoload_with=c))
            # As the previous version wrote them: plain strings.
            for wamid, direction, source in (("wamid.old.in", "inbound", "customer"),
                                              ("wamid.old.echo", "outbound", "phone_app")):
                await conn.execute(insert(messages).values(
                    wamid=wamid, conversation_id=conv_id, direction=direction, source=source, type="text",
                    text="hi", status_history=[], is_history=False, is_note=False, wa_timestamp=NOW,
                    created_at=NOW))
        async with sessions() as s, s.begin():
            old = {m.wamid: (m.direction, m.source) for m in (await s.scalars(select(Message))).all()}
            assert old == {"wamid.old.in": (Direction.INBOUND, Source.CUSTOMER),
                           "wamid.old.echo": (Direction.OUTBOUND, Source.PHONE_APP)}
            assert all(isinstance(d, Direction) and isinstance(src, Source) for d, src in old.values())
            s.add(Message(wamid="wamid.new.reply", conversation_id=conv_id, direction=Direction.OUTBOUND,
                          source=Source.SLACK, type="text", text="hello", status_history=[], is_history=False,
                          is_note=False, wa_timestamp=NOW, created_at=NOW))
        async with sessions() as s:
            found = (await s.scalars(select(Message.wamid).where(Message.source == Source.SLACK))).all()
            assert found == ["wamid.new.reply"]
            # A comparison with the stored string still matches (a StrEnum is its value).
            assert await s.scalar(select(Message.wamid).where(Message.direction == "inbound")) == "wamid.old.in"
        async with engine.connect() as conn:
            raw: Any = (await conn.execute(select(messages.c.direction, messages.c.source)
                                           .where(messages.c.wamid == "wamid.new.reply"))).one()
        assert tuple(raw) == ("outbound", "slack")  # what the previous version reads
    finally:
        await engine.dispose()


async def test_the_enum_columns_need_no_migration(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata))
    finally:
        await engine.dispose()

    def about_origin(change: Any) -> bool:  # a change, or a list of one column's changes
        text = repr(change)
        return "'messages'" in text and ("'direction'" in text or "'source'" in text)

    assert [c for c in diff if about_origin(c)] == []
