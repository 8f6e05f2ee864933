"""Slack installations in our database: slack_sdk's store, every token sealed with meta.token_key."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.oauth.installation_store.models.installation import Installation
from sqlalchemy import text

from bot.onboarding.crypto import TokenBox, new_key
from storage.db import make_engine, migrate
from storage.installations import SealedInstallationStore, oauth_state_store


def _installation(team: str | None, *, enterprise: str | None = None, org: bool = False,
                  token: str = "xoxb-team-token", refresh: str | None = None) -> Installation:
    return Installation(app_id="A1", enterprise_id=enterprise, team_id=team, bot_token=token, bot_id="B1",
                        bot_user_id="U0BOT", bot_scopes=["chat:write"], bot_refresh_token=refresh,
                        bot_token_expires_at=datetime.now(UTC) + timedelta(hours=12) if refresh else None,
                        user_id="U1", is_enterprise_install=org, token_type="bot")


async def test_tokens_are_sealed_at_rest_and_read_back_per_workspace(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    box = TokenBox(new_key())
    store = SealedInstallationStore("111.222", engine, box)
    try:
        await store.async_save(_installation("T0AAA", token="xoxe.xoxb-1-aaa", refresh="xoxe-1-refresh"))
        await store.async_save(_installation("T0BBB", token="xoxb-bbb"))
        async with engine.connect() as conn:
            stored = (await conn.execute(text(
                "SELECT bot_token, bot_refresh_token FROM slack_installations UNION ALL "
                "SELECT bot_token, bot_refresh_token FROM slack_bots"))).all()
        values = [v for row in stored for v in row if v is not None]
        assert len(values) == 6
        assert not any("xox" in v for v in values)
        assert sorted(box.open(v) for v in values) == sorted(
            ["xoxe.xoxb-1-aaa", "xoxe-1-refresh"] * 2 + ["xoxb-bbb"] * 2)

        found = await store.async_find_installation(enterprise_id=None, team_id="T0AAA")
        bot = await store.async_find_bot(enterprise_id=None, team_id="T0BBB")
        assert found is not None and (found.bot_token, found.bot_refresh_token) == ("xoxe.xoxb-1-aaa",
                                                                                     "xoxe-1-refresh")
        assert bot is not None and bot.bot_token == "xoxb-bbb"
        assert await store.async_find_bot(enterprise_id=None, team_id="T0CCC") is None

        await store.async_delete_all(enterprise_id=None, team_id="T0AAA")
        assert await store.async_find_installation(enterprise_id=None, team_id="T0AAA") is None
        assert await store.async_find_bot(enterprise_id=None, team_id="T0AAA") is None
        assert await store.async_find_bot(enterprise_id=None, team_id="T0BBB") is not None
    finally:
        await engine.dispose()


async def test_an_org_wide_install_is_found_by_its_enterprise_from_any_of_its_workspaces(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    store = SealedInstallationStore("111.222", engine, TokenBox(new_key()))
    try:
        await store.async_save(_installation(None, enterprise="E0ORG", org=True, token="xoxb-org"))
        bot = await store.async_find_bot(enterprise_id="E0ORG", team_id="T0ANY", is_enterprise_install=True)
        assert bot is not None and bot.bot_token == "xoxb-org"
        assert await store.async_find_bot(enterprise_id="E0ORG", team_id="T0ANY") is None
    finally:
        await engine.dispose()


async def test_a_token_sealed_with_a_lost_key_reads_as_not_installed_with_one_log_line(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        await SealedInstallationStore("111.222", engine, TokenBox(new_key())).async_save(_installation("T0AAA"))
        other = SealedInstallationStore("111.222", engine, TokenBox(new_key()))
        with caplog.at_level(logging.ERROR, logger="storage.installations"):
            assert await other.async_find_bot(enterprise_id=None, team_id="T0AAA") is None
        assert "T0AAA" in caplog.text and "meta.token_key" in caplog.text
    finally:
        await engine.dispose()


async def test_oauth_states_are_shared_through_the_database_and_used_once(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        state = await oauth_state_store(engine, 600).async_issue()
        other_process = oauth_state_store(engine, 600)
        assert await other_process.async_consume(state)
        assert not await other_process.async_consume(state)
    finally:
        await engine.dispose()
