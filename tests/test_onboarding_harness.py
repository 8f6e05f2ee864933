"""The app with the Slack bridge and /onboard mounted, against the Slack and Graph stand-ins (real HTTP servers
on loopback): shared by the onboarding and history tests. Holds no tests of its own."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from bot.app.components import onboarding_component
from bot.app.factory import create_app
from bot.app.slack_component import make_slack_component
from bot.core.config import Settings
from bot.handlers import appkeys
from bot.standins import GraphStandin, SlackStandin, sign_slack
from tests.helpers import APP_SECRET, BOT_TOKEN, SIGNING_SECRET, SLACK_CHANNEL, VERIFY_TOKEN, make_settings, signed

FIXTURES = Path(__file__).parent / "fixtures" / "onboarding"
TOKEN_KEY = Fernet.generate_key().decode()
CONFIG_ID = "990000000000001"
APP_ID = "300000000000001"
PUBLIC_URL = "https://wabridge.example"
ALERTS = "C0ALERTS"
SHOP_SLACK = "C0SHOP"
MANAGER = "UMANAGER"
FAST_OUTBOX: dict[str, Any] = {"poll_interval": 0.1, "backoff_base": 0.2, "backoff_cap": 1.0}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def onboarding_settings(db_url: str, graph: GraphStandin, slack: SlackStandin) -> Settings:
    """One configured channel (lucknow), plus what /onboard needs."""
    return make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url,
                         meta={"graph_url": graph.base_url, "app_id": APP_ID, "app_secret": APP_SECRET,
                               "verify_token": VERIFY_TOKEN, "embedded_signup_config_id": CONFIG_ID,
                               "token_key": TOKEN_KEY},
                         server={"public_url": PUBLIC_URL})


@dataclass
class Harness:
    client: TestClient
    slack: SlackStandin
    graph: GraphStandin

    @property
    def app(self) -> Any:
        return self.client.app

    @property
    def settings(self) -> Settings:
        return self.app[appkeys.SETTINGS]

    @property
    def sessions(self) -> Any:
        return self.app[appkeys.SESSIONS]

    async def webhook(self, payload: dict[str, Any]) -> None:
        body, headers = signed(payload, APP_SECRET)
        resp = await self.client.post("/webhooks/meta", data=body, headers=headers)
        assert resp.status == 200

    async def command(self, text: str, *, user: str = MANAGER, channel: str = SLACK_CHANNEL) -> int:
        form = {"token": "t", "team_id": self.slack.team_id, "channel_id": channel, "user_id": user,
                "user_name": user.lower(), "command": "/campaign", "text": text, "api_app_id": self.slack.app_id,
                "response_url": f"{self.slack.base_url}/response-url/x", "trigger_id": self.slack.issue_trigger_id()}
        from urllib.parse import urlencode

        body = urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign_slack(SIGNING_SECRET, body)}
        resp = await self.client.post("/slack/events", data=body, headers=headers)
        return resp.status

    def responses(self) -> list[str]:
        """What /campaign answered through response_url, oldest first."""
        return [str(c.args.get("text") or "") for c in self.slack.calls_to("response_url")]

    def parents(self, channel: str = SLACK_CHANNEL) -> list[dict[str, Any]]:
        return self.slack.messages(channel, top_level_only=True)

    def replies(self, parent_ts: str, channel: str = SLACK_CHANNEL) -> list[dict[str, Any]]:
        return [m for m in self.slack.thread(channel, parent_ts) if m["ts"] != parent_ts]

    async def count(self, model: Any, *where: Any) -> int:
        async with self.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def rows(self, model: Any, *where: Any, order_by: Any = None) -> list[Any]:
        async with self.sessions() as s:
            query = select(model).where(*where)
            if order_by is not None:
                query = query.order_by(order_by)
            return list((await s.scalars(query)).all())


HarnessFactory = Callable[..., Awaitable[Harness]]


@contextlib.asynccontextmanager
async def harnesses(aiohttp_client: Any, db_url: str) -> AsyncIterator[HarnessFactory]:
    started: list[Any] = []
    clients: list[Any] = []  # closed first: the app's workers stop before their database and stand-ins go

    async def build(*, slack: SlackStandin | None = None, graph: GraphStandin | None = None,
                    run_migrations: bool = True) -> Harness:
        if slack is None:
            slack = SlackStandin(bot_token=BOT_TOKEN)
            await slack.start()
            started.append(slack)
            for cid, name in ((SLACK_CHANNEL, "lucknow-whatsapp"), (ALERTS, "alerts"), (SHOP_SLACK, "shop")):
                slack.add_channel(cid, name)
            slack.add_user(MANAGER, "manager", real_name="Meera")
        if graph is None:
            graph = GraphStandin(app_id=APP_ID, app_secret=APP_SECRET)
            await graph.start()
            started.append(graph)
        settings = onboarding_settings(db_url, graph, slack)
        components = [make_slack_component(**FAST_OUTBOX), onboarding_component]
        client = await aiohttp_client(create_app(settings, run_migrations=run_migrations, components=components))
        clients.append(client)
        return Harness(client, slack, graph)

    try:
        yield build
    finally:
        for client in clients:
            await client.close()
        for server in started:
            await server.stop()


@pytest.fixture
async def make_harness(aiohttp_client: Any, db_url: str) -> AsyncIterator[HarnessFactory]:
    async with harnesses(aiohttp_client, db_url) as build:
        yield build


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()
