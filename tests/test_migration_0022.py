"""Migration 0022 upgrades a database filled by 0021: an owed away message kept, and a survey's answer stored."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData, Table, select

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import AutoReply

NOW = datetime(2026, 12, 6, 17, 20, tzinfo=UTC)


async def test_upgrade_from_0021_keeps_auto_replies_and_adds_the_survey_answer(db_url: str) -> None:
    await migrate(db_url, "0021")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:
            meta = MetaData()
            await conn.run_sync(lambda c: meta.reflect(
                c, only=["channels", "contacts", "conversations", "auto_replies"]))
            channels, contacts, conversations, replies = (
                Table(n, meta) for n in ("channels", "contacts", "conversations", "auto_replies"))
            channel_id = (await conn.execute(channels.insert().values(
                name="lucknow", phone_number_id="100000000000001", waba_id="200000000000001", mode="cloud_api",
                display_phone_number="+91 522 400 0000", slack_channel="C0LUCKNOW", slack_team="default",
                mps=80, created_at=NOW).returning(channels.c.id))).scalar_one()
            contact_id = (await conn.execute(contacts.insert().values(
                wa_id="919812345678", opted_out=False, created_at=NOW, updated_at=NOW)
                .returning(contacts.c.id))).scalar_one()
            conv_id = (await conn.execute(conversations.insert().values(
                channel_id=channel_id, contact_id=contact_id, last_customer_message_at=NOW, created_at=NOW)
                .returning(conversations.c.id))).scalar_one()
            await conn.execute(replies.insert().values(
                conversation_id=conv_id, slack_team="default", kind="away", period_key=NOW.isoformat(),
                state="sent", wamid="wamid.AWAY", trigger_at=NOW, created_at=NOW, updated_at=NOW))
        await migrate(db_url)
        async with sessions() as s, s.begin():
            away = (await s.scalars(select(AutoReply))).one()
            assert (away.kind, away.state, away.wamid, away.score, away.staff) == ("away", "sent", "wamid.AWAY",
                                                                                   None, None)
            s.add(AutoReply(conversation_id=away.conversation_id, kind="csat", period_key="resolve:1", state="sent",
                            staff="U0ASHA", score=3, answer="Great", answered_at=NOW, comment="thanks!",
                            trigger_at=NOW))
        async with sessions() as s:
            survey = (await s.scalars(select(AutoReply).where(AutoReply.kind == "csat"))).one()
            assert (survey.staff, survey.score, survey.answer, survey.answered_at, survey.comment) == (
                "U0ASHA", 3, "Great", NOW, "thanks!")
    finally:
        await engine.dispose()
