"""`/wabridge settings` through the Slack stand-in: a manager sees each of their workspace's numbers' hours,
away message and survey, read-only and privately, with where to change them (app.yaml); others are refused;
another workspace's numbers are neither listed nor shown when named."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.handlers.slack_settings import REFUSED
from tests.harness import STAFF, Bridge, BridgeFactory, bridges
from tests.helpers import SIGNING_SECRET, SLACK_CHANNEL
from tests.workspaces_harness import ALPHA, BETA, Deployment, deployment_of
from tests.workspaces_harness import STAFF as WORKSPACE_STAFF

MANAGER = "UMANAGER"  # slack.campaign_managers in tests.helpers.make_settings


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _settings(b: Bridge, user: str, text: str = "settings") -> tuple[int, dict[str, Any]]:
    status, body = await b.slack.send_slash_command(str(b.client.make_url("/slack/events")), "/wabridge", text,
                                                    user_id=user, channel_id=SLACK_CHANNEL,
                                                    signing_secret=SIGNING_SECRET)
    return status, json.loads(body) if body.startswith("{") else {"text": body}


NEXT_YEAR = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()
NIGHTS = {"opens": "18:00", "closes": "02:00", "overnight": True, "days": ["mon", "tue", "wed", "thu", "fri"],
          "timezone": "Asia/Kolkata", "holidays": ["2020-01-26", NEXT_YEAR]}


async def test_a_manager_sees_each_numbers_hours_away_message_and_survey_read_only(make: BridgeFactory) -> None:
    b = await make(channel_extra={"mode": "cloud_api", "hours": NIGHTS,
                                  "away_message": "Hi {first_name}, we open at 18:00 <b>sharp</b>",
                                  "csat": {"enabled": True, "quiet_days": 3}})
    status, answer = await _settings(b, MANAGER)
    assert status == 200 and answer["response_type"] == "ephemeral"
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    assert "*lucknow* +91 522 400 0000 · Cloud API" in shown
    assert "18:00 to 02:00 the next day mon, tue, wed, thu, fri (Asia/Kolkata)" in shown
    assert f"holidays {NEXT_YEAR}" in shown and "2020-01-26" not in shown  # past holidays left out
    assert "open now" in shown or "closed now, opens" in shown
    assert "sent by Wabridge once per closed period" in shown
    assert "we open at 18:00 &lt;b&gt;sharp&lt;/b&gt;" in shown  # as typed, not Slack markup
    assert "*Satisfaction survey:* on (its own): in `en`, at most one per conversation in 3 days" in shown
    assert "app.yaml" in shown and "restart `wabridge serve`" in shown
    assert b.slack.views == {}  # nothing to edit: no modal

    # One number by name; an unknown name is said plainly.
    status, one = await _settings(b, MANAGER, "settings Lucknow")
    assert status == 200 and "*lucknow*" in json.dumps(one["blocks"])
    status, none = await _settings(b, MANAGER, "settings delhi")
    assert status == 200 and "No number called 'delhi' in this workspace" in none["text"] and "blocks" not in none


async def test_a_coexistence_number_says_why_the_bridge_does_not_answer(make: BridgeFactory) -> None:
    b = await make(channel_extra={"mode": "coexistence", "hours": NIGHTS, "away_message": "Closed"})
    _, answer = await _settings(b, MANAGER)
    shown = json.dumps(answer["blocks"])
    assert "not sent by Wabridge: with `away.mode: cloud_api_only` the phone app's own away message" in shown
    assert "*Satisfaction survey:* off (the top-level `csat`)" in shown


async def test_staff_who_are_not_managers_are_refused(make: BridgeFactory) -> None:
    b = await make(channel_extra={"hours": NIGHTS, "away_message": "Closed"})
    status, answer = await _settings(b, STAFF)
    assert status == 200 and answer == {"text": REFUSED}


@pytest.fixture
async def deployment(aiohttp_client: Any, db_url: str) -> AsyncIterator[Deployment]:
    async with deployment_of(aiohttp_client, db_url) as d:
        yield d


async def test_a_manager_sees_only_their_workspaces_numbers(deployment: Deployment,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    d = deployment
    assert await d.install("T0ALPHA") == 200 and await d.install("T0BETA") == 200

    async def ask(team: str, text: str) -> dict[str, Any]:
        channel = ALPHA[1] if team == "T0ALPHA" else BETA[1]
        status, body = await d.slack.send_slash_command(d.events_url, "/wabridge", text,
                                                        user_id=WORKSPACE_STAFF[team], channel_id=channel,
                                                        signing_secret=SIGNING_SECRET, team_id=team)
        assert status == 200
        return dict(json.loads(body)) if body.startswith("{") else {"text": body}

    alpha = json.dumps(await ask("T0ALPHA", "settings"))
    assert "*alpha*" in alpha and "beta" not in alpha and "this workspace's 1 number" in alpha
    beta = json.dumps(await ask("T0BETA", "settings"))
    assert "*beta*" in beta and "alpha" not in beta
    # Beta's number named from Alpha, by name or by Meta's id: refused, logged, nothing of it shown.
    for named in ("beta", BETA[2]):
        with caplog.at_level(logging.WARNING):
            answer = await ask("T0ALPHA", f"settings {named}")
        assert "No number called" in answer["text"] and "blocks" not in answer
        assert any("from workspace T0ALPHA names number beta of workspace T0BETA: refused" in r.getMessage()
                   for r in caplog.records)
        caplog.clear()
