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
        assert deleted == {"webhook_logs": 25, "slack_events": 1, "slack_outbox": 1, "slack_redactions": 0}
        async with sessions() as s:
            logs = sorted(r for r in (await s.scalars(select(WebhookLog.raw_body))).all())
            events = (await s.scalars(select(SlackEvent.event_id))).all()
            posts = (await s.scalars(select(SlackOutbox.dedupe_key))).all()
        assert logs == [b"pending", b"recent"]  # a delivery still owed is never pruned, however old
        assert list(events) == ["Ev-recent"]
        assert list(posts) == ["old-owed"]
        assert await RetentionWorker(sessions, RetentionSettings(days=30)).prune_once() == {
            "webhook_logs": 0, "slack_events": 0, "slack_outbox": 0, "slack_redactions": 0}
    finally:
        await engine.dispose()


async def test_customers_data_ages_out_only_past_its_own_period_in_batches(db_url: str) -> None:
    from bot.core.metrics import Metrics
    from storage.models import AutoReply, Channel, Contact, Conversation, Erasure, Message, MessageStatus

    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    try:
        async with sessions() as s, s.begin():
            channel = Channel(name="c", phone_number_id="1", waba_id="2", mode="coexistence", mps=5)
            contact = Contact(wa_id="919812345678")
            s.add_all([channel, contact])
            await s.flush()
            conv = Conversation(channel_id=channel.id, contact_id=contact.id)
            s.add(conv)
            await s.flush()
            for i, age in enumerate((400, 400, 400, 400, 400, 200, 100, 10)):
                at = now - timedelta(days=age)
                s.add(Message(conversation_id=conv.id, direction="inbound", source="customer", type="image",
                              text=f"m{age}-{i}", wamid=f"wamid.{i}", media_id=f"media{i}", media_mime="image/jpeg",
                              content={"media": {"id": f"media{i}", "filename": "x.jpg"}, "kind": "image"},
                              wa_timestamp=at))
                s.add(MessageStatus(wamid=f"wamid.{i}", status="read", wa_timestamp=at))
            for age in (400, 10):  # a survey keeps the customer's answer and comment: it ages with the messages
                at = now - timedelta(days=age)
                s.add(AutoReply(conversation_id=conv.id, kind="csat", period_key=f"r{age}", state="sent",
                                score=3, comment=f"c{age}", trigger_at=at, created_at=at))
            for age, state in ((40, "done"), (40, "redacting"), (5, "done")):
                s.add(Erasure(requested_by="U1", requested_at=now - timedelta(days=age), identity_hashes=[],
                              state=state, contact_ids=[], conversation_ids=[], threads=[], counts={},
                              slack_refused=[]))
        metrics = Metrics()
        settings = RetentionSettings(days=30, batch_size=2, messages_days=365, media_days=90, audit_days=30)
        deleted = await RetentionWorker(sessions, settings, metrics=metrics).prune_once()
        assert deleted["messages"] == 5 and deleted["media"] == 2 and deleted["erasures"] == 1
        assert metrics.registry.get_sample_value("wabridge_retention_rows_total", {"table": "messages"}) == 5
        async with sessions() as s:
            left = (await s.execute(select(Message.text, Message.media_id, Message.content)
                                    .order_by(Message.wa_timestamp))).all()
            statuses = sorted((await s.scalars(select(MessageStatus.wamid))).all())
            erasures = sorted((await s.execute(select(Erasure.state, Erasure.requested_at))).tuples().all(),
                              key=lambda r: r[1])
        assert [r.text for r in left] == ["m200-5", "m100-6", "m10-7"]
        assert [r.media_id for r in left] == [None, None, "media7"]  # older than 90 days: reference cleared
        assert left[0].content == {"kind": "image"} and left[2].content["media"]["filename"] == "x.jpg"
        assert statuses == ["wamid.5", "wamid.6", "wamid.7"]  # with their messages
        assert deleted["auto_replies"] == 1
        async with sessions() as s:
            assert (await s.scalars(select(AutoReply.comment))).all() == ["c10"]
        assert [state for state, _ in erasures] == ["redacting", "done"]  # an unfinished erasure is never aged out
        again = await RetentionWorker(sessions, settings).prune_once()
        assert again == {"webhook_logs": 0, "slack_events": 0, "slack_outbox": 0, "slack_redactions": 0,
                         "messages": 0, "auto_replies": 0, "erasures": 0, "media": 0}
    finally:
        await engine.dispose()
