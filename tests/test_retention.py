"""Retention deletes finished log rows past the period, in batches, and nothing else; doctor shows the tables."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.core.config import RetentionSettings
from bot.ops.doctor import check_log_tables
from bot.ops.retention_worker import RetentionWorker
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import SlackEvent, SlackOutbox, WebhookLog, utcnow
from storage.retention import table_stats


async def test_only_finished_rows_older_than_the_period_are_pruned(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(days=29)
    try:
        async with sessions() as s, s.begin():
            for _ in range(25):  # more than one batch of old, processed deliveries
                s.add(WebhookLog(raw_body=b"{}", event_type="status", lane="bulk", received_at=old,
                                 processed_at=old, attempts=1))
            s.add(WebhookLog(raw_body=b"recent", event_type="status", lane="bulk", received_at=recent,
                             processed_at=recent, attempts=1))
            s.add(WebhookLog(raw_body=b"pending", event_type="message", received_at=old, attempts=6,
                             error="RuntimeError('still failing')"))
            s.add(SlackEvent(event_id="Ev-old", received_at=old))
            s.add(SlackEvent(event_id="Ev-recent", received_at=recent))
            s.add(SlackOutbox(dedupe_key="old-done", thread_key="t", kind="note", payload={}, order_ts=old,
                              created_at=old, done_at=old))
            s.add(SlackOutbox(dedupe_key="old-owed", thread_key="t", kind="note", payload={}, order_ts=old,
                              created_at=old))
        async with sessions() as s:
            before = {t.name: t for t in await table_stats(s)}
        assert before["webhook_logs"].rows == 27 and before["webhook_logs"].oldest is not None
        warning = check_log_tables(list(before.values()), 30, now)
        assert warning.severity == "warn" and "webhook_logs 27 rows" in warning.detail

        deleted = await RetentionWorker(sessions, RetentionSettings(days=30, batch_size=10)).prune_once()
        assert deleted == {"webhook_logs": 25, "slack_events": 1, "slack_outbox": 1}
        async with sessions() as s:
            logs = sorted(r for r in (await s.scalars(select(WebhookLog.raw_body))).all())
            events = (await s.scalars(select(SlackEvent.event_id))).all()
            posts = (await s.scalars(select(SlackOutbox.dedupe_key))).all()
        assert logs == [b"pending", b"recent"]  # a delivery still owed is never pruned, however old
        assert list(events) == ["Ev-recent"]
        assert list(posts) == ["old-owed"]
        assert await RetentionWorker(sessions, RetentionSettings(days=30)).prune_once() == {
            "webhook_logs": 0, "slack_events": 0, "slack_outbox": 0}
    finally:
        await engine.dispose()
