"""Migration 0012 upgrades a database filled by 0003: queued work kept, unclaimed, fence 0; workers table added."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import CampaignRecipient, SlackOutbox, WebhookLog, Worker

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


async def test_upgrade_from_0003_keeps_queued_work_and_adds_liveness(db_url: str) -> None:
    await migrate(db_url, "0003")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        # Written with the columns 0003 has (the models already know the new ones).
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO webhook_logs (raw_body, event_type, received_at, attempts) "
                                    "VALUES (:b, 'messages', :t, 1)"), {"b": b"{}", "t": NOW})
            await conn.execute(text("INSERT INTO slack_outbox (dedupe_key, thread_key, kind, payload, order_ts, "
                                    "attempts, created_at) VALUES ('k1', 't1', 'note', '{}', :t, 0, :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, "
                                    "mode, mps, slack_channel, created_at) VALUES ('c', '1', '2', '', 'coexistence', "
                                    "5, '', :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO campaigns (name, channel_id, template_name, language, variables, "
                                    "schedule_kind, timezone, status, created_at, updated_at) VALUES ('c', 1, 't', "
                                    "'en', '{}', 'now', 'UTC', 'running', :t, :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO campaign_runs (campaign_id, scheduled_for, status, started_at) "
                                    "VALUES (1, :t, 'running', :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO campaign_recipients (run_id, wa_id, fields, status, attempts) "
                                    "VALUES (1, '919800000001', '{}', 'unknown', 1)"))

        await migrate(db_url)

        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "workers" in tables
        async with sessions() as s:
            log = (await s.execute(select(WebhookLog.owner_id, WebhookLog.fence))).one()
            post = (await s.execute(select(SlackOutbox.owner_id, SlackOutbox.fence))).one()
            rec = (await s.execute(select(CampaignRecipient.status, CampaignRecipient.owner_id,
                                          CampaignRecipient.fence, CampaignRecipient.attempted_at))).one()
            assert tuple(log) == (None, 0) and tuple(post) == (None, 0)
            assert tuple(rec) == ("unknown", None, 0, None)
            assert (await s.scalars(select(Worker.id))).all() == []
    finally:
        await engine.dispose()
