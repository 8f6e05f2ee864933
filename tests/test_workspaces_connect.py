"""A number connected through /onboard belongs to the workspace that asked for the link."""

from __future__ import annotations

import argparse

import pytest
from sqlalchemy import select

from bot.cli.onboarding import _connect
from bot.core.config import Settings, parse_settings
from bot.onboarding.crypto import new_key
from storage.db import make_engine, make_sessionmaker
from storage.models import OnboardingLink


def _settings(db_url: str, many: bool) -> Settings:
    slack: dict[str, object] = ({"client_id": "1.2", "client_secret": "s"} if many else {"bot_token": "xoxb-1"})
    return parse_settings({"database_url": db_url, "server": {"public_url": "https://bridge.example"},
                           "meta": {"app_secret": "s", "verify_token": "v", "app_id": "1",
                                    "embedded_signup_config_id": "2", "token_key": new_key()},
                           "slack": {"signing_secret": "s", **slack}}, env={})


def _args(team: str | None) -> argparse.Namespace:
    return argparse.Namespace(slack_channel="C0ALPHA", name=None, valid_minutes=60, team=team)


async def test_connect_files_the_link_under_the_named_workspace_and_requires_one(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    many = _settings(db_url, many=True)
    assert await _connect(many, _args(None)) == 1
    assert "--team T… is required" in capsys.readouterr().err
    assert await _connect(many, _args("T0ALPHA")) == 0
    assert await _connect(_settings(db_url, many=False), _args(None)) == 0
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            teams = (await s.scalars(select(OnboardingLink.slack_team).order_by(OnboardingLink.id))).all()
    finally:
        await engine.dispose()
    assert teams == ["T0ALPHA", "default"]
