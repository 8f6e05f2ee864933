"""Migration 0013 upgrades a database filled by 0012: every row lands in the 'default' workspace, which
single-workspace mode keeps using; a channel later given a real workspace takes its rows along."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, select, text

from bot.core.config import Settings, parse_settings
from bot.onboarding.crypto import new_key
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Campaign, Channel, Conversation, OnboardedChannel, OnboardingLink, SlackOutbox
from storage.repository import sync_channels

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CHANNEL = {"name": "c", "phone_number_id": "1", "waba_id": "2", "access_token": "t", "slack_channel": "C1"}


def _settings(slack: dict[str, str], team: str = "") -> Settings:
    channel = {**CHANNEL, **({"slack_team": team} if team else {})}
    return parse_settings({"meta": {"app_secret": "s", "verify_token": "v", "token_key": new_key()},
                           "slack": {"signing_secret": "s", **slack}, "channels": [channel]}, env={})


async def test_upgrade_from_0012_files_everything_under_default_and_single_mode_keeps_it(db_url: str) -> None:
    await migrate(db_url, "0012")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.begin() as conn:  # written with the columns 0012 has
            await conn.execute(text("INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, "
                                    "mode, mps, slack_channel, created_at) VALUES ('c', '1', '2', '', "
                                    "'coexistence', 5, 'C1', :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO contacts (wa_id, opted_out, created_at, updated_at) "
                                    "VALUES ('919800000001', false, :t, :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO conversations (channel_id, contact_id, slack_channel, "
                                    "slack_thread_ts, created_at) VALUES (1, 1, 'C1', '1.1', :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO slack_outbox (dedupe_key, thread_key, conversation_id, kind, "
                                    "payload, order_ts, attempts, created_at, fence) VALUES ('k1', 'conv:1', 1, "
                                    "'message', '{}', :t, 0, :t, 0)"), {"t": NOW})
            await conn.execute(text("INSERT INTO campaigns (name, channel_id, template_name, language, variables, "
                                    "schedule_kind, timezone, status, created_at, updated_at) VALUES ('c', 1, 't', "
                                    "'en', '{}', 'now', 'UTC', 'running', :t, :t)"), {"t": NOW})
            await conn.execute(text("INSERT INTO onboarded_channels (name, phone_number_id, waba_id, "
                                    "display_phone_number, mode, mps, slack_channel, token_ciphertext, created_at, "
                                    "updated_at) VALUES ('o', '3', '4', '', 'coexistence', 5, 'C2', 'x', :t, :t)"),
                               {"t": NOW})
            await conn.execute(text("INSERT INTO onboarding_links (token_hash, slack_channel, created_at, "
                                    "expires_at) VALUES ('h', 'C2', :t, :t)"), {"t": NOW})

        await migrate(db_url)

        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"slack_workspaces", "slack_installations", "slack_bots", "slack_oauth_states"} <= tables
        models = (Channel, Conversation, Campaign, SlackOutbox, OnboardedChannel, OnboardingLink)

        async def teams() -> list[list[str]]:
            async with sessions() as s:
                return [list((await s.scalars(select(m.slack_team))).all()) for m in models]

        assert await teams() == [["default"]] * len(models)
        # Single-workspace mode (a bot token, as before the upgrade): nothing moves, new rows join 'default'.
        one = _settings({"bot_token": "xoxb-1"}, team="T0AAA")
        await sync_channels(sessions, one.channels, one.workspace_of)
        assert await teams() == [["default"]] * len(models)
        # The same deployment installed through OAuth: the number's rows follow it into its workspace.
        many = _settings({"client_id": "1.2", "client_secret": "x"}, team="T0AAA")
        await sync_channels(sessions, many.channels, many.workspace_of)
        assert await teams() == [["T0AAA"]] * 4 + [["default"]] * 2
    finally:
        await engine.dispose()
