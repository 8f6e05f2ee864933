"""A database the previous version filled keeps working after the upgrade, in single-workspace mode: the post
it owed and the delivery it had stored but not applied reach the same Slack channel, under 'default'."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text

from bot.handlers import appkeys
from storage.db import make_engine, migrate
from storage.models import Conversation, SlackOutbox
from tests.harness import bridges, eventually
from tests.helpers import PNID, SLACK_CHANNEL, WABA, inbound_text

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def test_a_database_the_previous_version_filled_works_on_in_single_workspace_mode(
        aiohttp_client: Any, db_url: str) -> None:
    await migrate(db_url, "0012")
    engine = make_engine(db_url)
    note = json.dumps({"text": "written before the upgrade", "conversation_id": 1})
    delivery = json.dumps(inbound_text("wamid.OLD1", "stored before the upgrade", ts=int(NOW.timestamp())))
    try:
        async with engine.begin() as conn:  # what the previous version left, with the columns it had
            await conn.execute(text(
                "INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, mode, mps, "
                "slack_channel, created_at) VALUES ('lucknow', :p, :w, '', 'coexistence', 5, :c, :t)"),
                {"p": PNID, "w": WABA, "c": SLACK_CHANNEL, "t": NOW})
            await conn.execute(text("INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) "
                                    "VALUES ('919800000001', false, :t, :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO conversations (channel_id, contact_id, slack_channel, created_at) "
                                    "VALUES (1, 1, :c, :t)"), {"c": SLACK_CHANNEL, "t": NOW})
            await conn.execute(text(
                "INSERT INTO slack_outbox (dedupe_key, thread_key, conversation_id, kind, payload, order_ts, "
                f"attempts, created_at, fence) VALUES ('note:old', 'conv:1', 1, 'note', '{note}', :t, 0, :t, 0)"),
                {"t": NOW})
            await conn.execute(text("INSERT INTO webhook_logs (raw_body, event_type, lane, received_at, attempts, "
                                    "fence) VALUES (:b, 'messages', 'live', :t, 0, 0)"),
                               {"b": delivery.encode(), "t": NOW})
    finally:
        await engine.dispose()

    async with bridges(aiohttp_client, db_url) as build:
        b = await build()  # today's app.yaml shape: slack.bot_token, no client id; migrations run at start
        await eventually(lambda: any("written before the upgrade" in json.dumps(m) for m in
                                     b.slack.messages(SLACK_CHANNEL)))
        await eventually(lambda: any("stored before the upgrade" in json.dumps(m) for m in
                                     b.slack.messages(SLACK_CHANNEL)))
        async with b.app[appkeys.SESSIONS]() as s:
            teams = set((await s.scalars(select(Conversation.slack_team))).all())
            owed = (await s.scalars(select(SlackOutbox.slack_team).where(SlackOutbox.done_at.is_(None)))).all()
        assert teams == {"default"} and set(owed) <= {"default"}
        assert not [c for c in b.slack.calls if c.error in ("not_authed", "invalid_auth")]
