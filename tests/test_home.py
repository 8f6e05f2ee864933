"""The App Home tab against the Slack stand-in: a manager's dashboard, a member's help view, refreshes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.factory import create_app
from bot.app.home_component import HOME, make_home_component, period_starts
from bot.app.slack_component import make_slack_component
from bot.handlers import appkeys
from bot.slack.display_names import isolate
from bot.standins import SlackStandin
from storage.models import AudienceMember, Campaign, utcnow
from tests.harness import eventually
from tests.helpers import BOT_TOKEN, PNID, SIGNING_SECRET, SLACK_CHANNEL, make_settings, midday_zone
from tests.insights_seed import Msg, seed

MANAGER, AGENT = "UMANAGER", "U0ASHA"


@dataclass
class Home:
    client: TestClient
    slack: SlackStandin

    async def open(self, user: str, tab: str = "home") -> None:
        url = str(self.client.make_url("/slack/events"))
        status, _ = await self.slack.send_event(url, {"type": "app_home_opened", "user": user, "channel": "D0HOME",
                                                      "tab": tab, "event_ts": f"{time.time():.6f}"},
                                                SIGNING_SECRET)
        assert status == 200

    def text(self, user: str) -> str:
        view = self.slack.home_views.get(user)
        return json.dumps(view["blocks"], ensure_ascii=False) if view else ""

    async def thread(self, text: str) -> tuple[str, str]:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=self.slack.api_url)
        resp = await client.chat_postMessage(channel=SLACK_CHANNEL, text=text)
        return SLACK_CHANNEL, str(resp["ts"])


@pytest.fixture
async def home(aiohttp_client: Any, db_url: str) -> AsyncIterator[Home]:
    async with SlackStandin(bot_token=BOT_TOKEN, strict=True) as slack:
        slack.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
        slack.add_user(MANAGER, "manager", real_name="Meera Manager")
        slack.add_user(AGENT, "asha", real_name="Asha Verma")
        settings = make_settings(db_url, slack_url=slack.api_url, sla={"first_response_minutes": 30},
                                 timezone=midday_zone())
        components = [make_slack_component(outbox=False), make_home_component(refresh_interval=0.2)]
        client = await aiohttp_client(create_app(settings, workers=False, components=components))
        yield Home(client, slack)


async def _scenario(h: Home) -> None:
    sessions = h.client.app[appkeys.SESSIONS]
    channel_id = h.client.app[appkeys.CHANNEL_IDS][PNID]
    now = utcnow()
    await seed(sessions, channel_id, "919800000001", "<b>Ravi & Co</b>", now - timedelta(minutes=45),
               [Msg(0, "customer")], thread=await h.thread("Ravi"))
    await seed(sessions, channel_id, "919800000002", "Sita", now - timedelta(minutes=20),
               [Msg(0, "customer"), Msg(6, "slack", AGENT)])
    await seed(sessions, channel_id, "919800000003", "Gopal", now - timedelta(hours=23),
               [Msg(0, "customer"), Msg(1, "campaign"), Msg(2, "slack", AGENT, note=True)])
    async with sessions() as s, s.begin():
        c = Campaign(name="Diwali offer", channel_id=channel_id, template_name="offer", language="en",
                     schedule_kind="at", run_at=now + timedelta(days=1), status="scheduled")
        s.add(c)
        await s.flush()
        s.add_all([AudienceMember(campaign_id=c.id, wa_id=f"9198000001{i:02d}") for i in range(3)])


async def test_a_manager_sees_who_waits_windows_closing_response_times_replies_and_campaigns(home: Home) -> None:
    await _scenario(home)
    await home.open(MANAGER)
    text = await eventually(lambda: home.text(MANAGER))
    # oldest wait first; customer names escaped; the thread linked; past the 30-minute target marked
    gopal, ravi = text.index("Gopal"), text.index("Ravi")
    assert gopal < ravi
    assert "&lt;b&gt;Ravi &amp; Co&lt;/b&gt;" in text and "<b>" not in text
    assert "https://standin.slack.com/archives/C0LUCKNOW/p" in text
    assert "waiting 45 min :warning:" in text or "waiting 46 min :warning:" in text
    assert "2 waiting" in text
    assert "window closing within 2 hours" in text and f"{isolate('Gopal')} (+91 98000 00003): closes at" in text
    assert "p50 6 min" in text  # Sita answered after 6 min; notes and campaigns answer nobody
    assert "Asha Verma: 1 today, 1 this week" in text
    assert "Diwali offer" in text and "0/3 sent" in text
    published = home.slack.calls_to("views.publish")[-1]
    assert published.args["user_id"] == MANAGER


async def test_a_member_gets_help_and_their_own_figures(home: Home) -> None:
    await _scenario(home)
    await home.open(AGENT)
    text = await eventually(lambda: home.text(AGENT))
    assert "Your replies*: 1 today, 1 this week" in text
    assert "Your first responses this week*: 1, p50 6 min" in text
    assert "`note:` or `//`" in text
    assert "Diwali" not in text and "Who is waiting" not in text  # the dashboard is for managers
    assert "*Unassigned and waiting*: 2" in text  # the inbox is for everyone (tests/test_home_inbox.py)


async def test_the_messages_tab_publishes_nothing_and_the_home_tab_refreshes_on_change(home: Home) -> None:
    await home.open(MANAGER, tab="messages")
    await home.open(MANAGER)
    first = await eventually(lambda: home.text(MANAGER))
    assert "Nobody waiting :white_check_mark: in lucknow" in first
    view_id = home.slack.home_views[MANAGER]["id"]
    sessions = home.client.app[appkeys.SESSIONS]
    await seed(sessions, home.client.app[appkeys.CHANNEL_IDS][PNID], "919800000009", "Newcomer",
               utcnow() - timedelta(minutes=1), [Msg(0, "customer")])
    await eventually(lambda: "Newcomer" in home.text(MANAGER))
    assert home.slack.home_views[MANAGER]["id"] == view_id  # the same Home view, updated


async def test_a_refused_publish_is_logged_not_raised(home: Home) -> None:
    home.slack.home_tab_enabled = False
    assert await home.client.app[HOME].publish(MANAGER) is False
    assert home.slack.calls_to("views.publish")[-1].error == "not_enabled"


def test_periods_start_at_local_midnight_and_monday() -> None:
    now = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)  # Saturday 01:30 in Kolkata
    today, week = period_starts(now, "Asia/Kolkata")
    assert today == datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
    assert week == datetime(2026, 11, 22, 18, 30, tzinfo=UTC)
