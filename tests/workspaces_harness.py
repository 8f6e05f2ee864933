"""Two businesses on one deployment: the app in many-workspace mode between the Slack and Graph stand-ins,
each workspace installed through bolt's OAuth flow as an admin's browser would."""

from __future__ import annotations

import contextlib
import html
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from yarl import URL

from bot.app.factory import create_app
from bot.app.home_component import make_home_component
from bot.app.slack_component import make_slack_component
from bot.core.config import parse_settings
from bot.onboarding.crypto import new_key
from bot.standins import GraphStandin, SlackStandin
from tests.harness import FAST_OUTBOX
from tests.helpers import APP_SECRET, SIGNING_SECRET, VERIFY_TOKEN, inbound_text

# One number per business: (workspace, its Slack channel, phone_number_id, WABA).
ALPHA = ("T0ALPHA", "C0ALPHA", "100000000000011", "200000000000011")
BETA = ("T0BETA", "C0BETA", "100000000000012", "200000000000012")
STAFF = {"T0ALPHA": "U0ASHA", "T0BETA": "U0BINA"}


@dataclass
class Deployment:
    client: TestClient
    slack: SlackStandin
    graph: GraphStandin

    @property
    def events_url(self) -> str:
        return str(self.client.make_url("/slack/events"))

    async def install(self, team: str) -> int:
        """Add to Slack from `team`: the install page, Slack's approval, the redirect back; its status."""
        page = await self.client.get("/slack/install")
        assert page.status == 200
        cookie = page.headers["Set-Cookie"].split(";", 1)[0]
        link = re.search(r'href="([^"]*/oauth/v2/authorize[^"]*)"', await page.text())
        assert link is not None
        approve = f"{html.unescape(link.group(1))}&team={team}"
        async with aiohttp.ClientSession() as browser, browser.get(approve, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            back = URL(resp.headers["Location"])
        done = await self.client.get(back.path_qs, headers={"Cookie": cookie})
        return done.status

    async def customer_writes(self, number: tuple[str, str, str, str], wamid: str, text: str,
                              wa_id: str = "919812345678", name: str = "Ravi") -> None:
        payload = inbound_text(wamid, text, wa_id=wa_id, name=name, ts=int(time.time()) - 5)
        change = payload["entry"][0]
        change["id"] = number[3]
        change["changes"][0]["value"]["metadata"]["phone_number_id"] = number[2]
        from tests.helpers import signed

        body, headers = signed(payload)
        resp = await self.client.post("/webhooks/meta", data=body, headers=headers)
        assert resp.status == 200

    def posts(self, number: tuple[str, str, str, str]) -> list[dict[str, Any]]:
        return self.slack.messages(number[1])

    def calls_by(self, team: str, method: str = "chat.postMessage") -> list[Any]:
        return [c for c in self.slack.calls_to(method) if c.team == team]


def settings_raw(db_url: str, slack: SlackStandin, graph: GraphStandin) -> dict[str, Any]:
    channels = [{"name": name, "phone_number_id": pnid, "waba_id": waba, "access_token": f"EAAG-{name}",
                 "slack_channel": channel, "slack_team": team}
                for name, (team, channel, pnid, waba) in (("alpha", ALPHA), ("beta", BETA))]
    return {"database_url": db_url, "server": {"metrics_public": True},
            "meta": {"graph_url": graph.base_url, "app_id": "300000000000001", "app_secret": APP_SECRET,
                     "verify_token": VERIFY_TOKEN, "token_key": new_key()},
            "slack": {"api_url": slack.api_url, "client_id": slack.oauth.client_id,
                      "client_secret": slack.oauth.client_secret, "signing_secret": SIGNING_SECRET,
                      "campaign_managers": sorted(STAFF.values())},
            "channels": channels}


@contextlib.asynccontextmanager
async def deployment_of(aiohttp_client: Any, db_url: str, *, token_expires_in: int | None = None
                        ) -> AsyncIterator[Deployment]:
    """The app with two numbers, one per workspace (Alpha, Beta), neither installed yet; with
    token_expires_in, installs get rotating tokens that live that many seconds."""
    slack = SlackStandin(strict=True, token_rotation=token_expires_in is not None)
    if token_expires_in is not None:
        slack.oauth.expires_in = token_expires_in
    graph = GraphStandin()
    await slack.start()
    await graph.start()
    for team, channel, _, _ in (ALPHA, BETA):
        slack.oauth.add_workspace(team, team.title())
        slack.add_channel(channel, channel.lower(), team_id=team)
        slack.add_user(STAFF[team], STAFF[team].lower(), team_id=team)  # a member of their own workspace
        slack.join(channel, STAFF[team])
    settings = parse_settings(settings_raw(db_url, slack, graph), env={})
    components = [make_slack_component(**FAST_OUTBOX, backlog_interval=0.3), make_home_component(refresh_interval=0.5)]
    client = await aiohttp_client(create_app(settings, components=components))
    slack.oauth.redirect_uri = str(client.make_url("/slack/oauth_redirect"))
    try:
        yield Deployment(client, slack, graph)
    finally:
        await client.close()  # the app's workers stop before the stand-ins and the database go
        await slack.stop()
        await graph.stop()
