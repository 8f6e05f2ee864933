"""Migration 0027 upgrades a database filled by 0026: messages and owed redactions kept; messages mirrored before
it get the record of their posts and files from their outbox items, so retention finds the files after those
items age out, and owed redactions stay whole-post ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData, insert, select

from bot.core.config import RetentionSettings
from bot.ops.retention_worker import RetentionWorker
from storage import redactions
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Message, SlackRedaction, utcnow

OLD = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


async def test_upgrade_from_0026_keeps_rows_and_records_old_uploads_from_the_outbox(db_url: str) -> None:
    await migrate(db_url, "0026")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        meta = MetaData()
        recent = utcnow() - timedelta(days=100)
        async with engine.begin() as conn:  # rows as 0026 wrote them, through its own tables
            await conn.run_sync(lambda c: meta.reflect(c, only=[
                "channels", "contacts", "conversations", "messages", "slack_outbox", "slack_redactions"]))
            t = meta.tables
            channel = (await conn.execute(insert(t["channels"]).values(
                name="lucknow", phone_number_id="1", waba_id="2", mode="coexistence", mps=5, slack_team="T0ALPHA",
                display_phone_number="", slack_channel="C0ALPHA", created_at=OLD)
                .returning(t["channels"].c.id))).scalar_one()
            contact = (await conn.execute(insert(t["contacts"]).values(
                wa_id="919812345678", opted_out=False, created_at=OLD, updated_at=OLD)
                .returning(t["contacts"].c.id))).scalar_one()
            conv = (await conn.execute(insert(t["conversations"]).values(
                channel_id=channel, contact_id=contact, slack_channel="C0ALPHA", slack_thread_ts="1.000100",
                slack_team="T0ALPHA", inbox_status="open", created_at=OLD)
                .returning(t["conversations"].c.id))).scalar_one()
            image = (await conn.execute(insert(t["messages"]).values(
                wamid="wamid.IMG", conversation_id=conv, direction="inbound", source="customer", type="image",
                media_id="media.1", media_mime="image/jpeg", text="my receipt", slack_ts="1.000200",
                status_history=[], is_history=False, is_note=False, wa_timestamp=recent, created_at=recent)
                .returning(t["messages"].c.id))).scalar_one()
            await conn.execute(insert(t["slack_outbox"]).values(
                dedupe_key=f"msg:{image}", thread_key=f"conv:{conv}", conversation_id=conv, slack_team="T0ALPHA",
                kind="message", payload={"message_id": image}, order_ts=recent, attempts=1,
                result={"parts": {"0": "1.000200", "file": "F0OLD", "parent": "1.000100"}}, created_at=recent,
                done_at=recent, fence=0))
            await conn.execute(insert(t["slack_redactions"]).values(
                slack_team="T0ALPHA", channel="C0ALPHA", ts="1.000050", conversation_id=conv, parent=False,
                files=[], attempts=0, created_at=OLD))
        await migrate(db_url)
        async with sessions() as s:
            msg = (await s.scalars(select(Message))).one()
            assert (msg.text, msg.media_id) == ("my receipt", "media.1")
            assert msg.slack_posts == {"posts": ["1.000200"], "files": ["F0OLD"]}
            owed = (await s.scalars(select(SlackRedaction))).one()
            assert (owed.ts, owed.files_only, owed.done_at) == ("1.000050", False, None)
        settings = RetentionSettings(media_days=90)
        assert (await RetentionWorker(sessions, settings).prune_once())["media"] == 1
        claimed = await redactions.claim(sessions, 10, timedelta(minutes=1))
        assert [(o.ts, o.files, o.files_only) for o in claimed] == [
            ("1.000050", [], False), ("F0OLD", ["F0OLD"], True)]
        async with sessions() as s:
            assert (await s.scalars(select(Message.slack_posts))).one() == {"posts": ["1.000200"], "files": []}
    finally:
        await engine.dispose()
