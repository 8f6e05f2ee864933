"""`wabridge demo --workspaces N`: N businesses on one deployment, side by side and isolated.

Each business is a Slack workspace that installs the app through bolt's OAuth flow (the Slack stand-in plays
Slack's approval page and `oauth.v2.access`), with one WhatsApp number of its own. A customer writes to each
number; each workspace's channel shows only its own customer, posted with its own token; a reply typed by one
workspace's staff into another workspace's thread is refused; one workspace uninstalls, its customer's next
message waits, and arrives when it installs again.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiohttp
from aiohttp import web
from yarl import URL

from bot.app.factory import create_app
from bot.cli.demo import SIGNING_SECRET, _free_port, _until
from bot.core.config import Settings, parse_settings
from bot.meta.signature import sign
from bot.onboarding.crypto import new_key
from bot.standins.graph import GraphStandin
from bot.standins.slack import SlackStandin

APP_SECRET = "demo-app-secret"


@dataclass(frozen=True)
class Business:
    n: int

    @property
    def team(self) -> str:
        return f"T0SHOP{self.n}"

    @property
    def name(self) -> str:
        return f"shop{self.n}"

    @property
    def channel(self) -> str:
        return f"C0SHOP{self.n}"

    @property
    def pnid(self) -> str:
        return f"1000000000001{self.n:02d}"

    @property
    def waba(self) -> str:
        return f"2000000000001{self.n:02d}"

    @property
    def staff(self) -> str:
        return f"U0STAFF{self.n}"


@dataclass
class WorkspacesResult:
    """What the scenario showed, for the printed transcript and for tests."""

    installed: list[str] = field(default_factory=list)
    leaks: int = 0  # posts that reached another workspace's channel or went with another workspace's token
    forged_reply_sent: bool = False
    held_then_delivered: bool = False


def workspaces_settings(db_path: Path, graph_url: str, slack: SlackStandin, shops: list[Business]) -> Settings:
    return parse_settings({
        "database_url": f"sqlite+aiosqlite:///{db_path}",
        "meta": {"graph_url": graph_url, "app_id": "300000000000001", "app_secret": APP_SECRET,
                 "verify_token": "demo-verify", "token_key": new_key()},
        "slack": {"api_url": slack.api_url, "client_id": slack.oauth.client_id,
                  "client_secret": slack.oauth.client_secret, "signing_secret": SIGNING_SECRET,
                  "campaign_managers": [s.staff for s in shops]},
        "channels": [{"name": s.name, "phone_number_id": s.pnid, "waba_id": s.waba, "mode": "coexistence",
                      "access_token": f"EAAG-{s.name}", "slack_channel": s.channel, "slack_team": s.team}
                     for s in shops],
    }, env={})


def _customer_says(shop: Business, wamid: str, text: str) -> bytes:
    message = {"from": f"9198000000{shop.n:02d}", "id": wamid, "timestamp": str(int(datetime.now(UTC).timestamp())),
               "type": "text", "text": {"body": text}}
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "91522", "phone_number_id":
                                                           shop.pnid},
             "contacts": [{"profile": {"name": f"Customer of {shop.name}"}, "wa_id": message["from"]}],
             "messages": [message]}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": shop.waba, "changes": [{"field": "messages", "value": value}]}]}).encode()


async def _install(http: aiohttp.ClientSession, base: str, team: str) -> int:
    """Add to Slack from `team`, as an admin's browser would: install page, approval, redirect back."""
    async with http.get(f"{base}/slack/install") as page:
        cookie = page.headers["Set-Cookie"].split(";", 1)[0]
        link = re.search(r'href="([^"]*/oauth/v2/authorize[^"]*)"', await page.text())
    if link is None:
        return 0
    async with http.get(f"{html.unescape(link.group(1))}&team={team}", allow_redirects=False) as approve:
        back = URL(approve.headers["Location"])
    async with http.get(f"{base}{back.path_qs}", headers={"Cookie": cookie}) as done:
        return done.status


async def _post_webhook(http: aiohttp.ClientSession, base: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(APP_SECRET, body)}
    async with http.post(f"{base}/webhooks/meta", data=body, headers=headers) as resp:
        await resp.read()


def _shows(slack: SlackStandin, shop: Business, text: str) -> bool:
    return any(text in json.dumps(m) for m in slack.messages(shop.channel))


async def run_workspaces_demo(out: TextIO, count: int = 2) -> WorkspacesResult:
    """Start the stand-ins and the real server in many-workspace mode and play the scenario."""
    from bot.app.components import default_components

    shops = [Business(n) for n in range(1, max(2, count) + 1)]
    result = WorkspacesResult()
    with tempfile.TemporaryDirectory(prefix="wabridge-demo-") as tmp:
        async with GraphStandin(tokens={f"EAAG-{s.name}": {s.pnid, s.waba} for s in shops}) as graph, \
                SlackStandin(strict=True) as slack:
            for s in shops:
                slack.oauth.add_workspace(s.team, f"Shop {s.n}")
                slack.add_channel(s.channel, s.name, team_id=s.team)
                slack.add_user(s.staff, f"staff{s.n}")
                slack.join(s.channel, s.staff)
            settings = workspaces_settings(Path(tmp) / "demo.db", graph.base_url, slack, shops)
            app = create_app(settings, components=default_components(settings))
            runner = web.AppRunner(app)
            await runner.setup()
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            slack.oauth.redirect_uri = f"{base}/slack/oauth_redirect"
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                async with aiohttp.ClientSession() as http:
                    out.write(f"Wabridge demo, {len(shops)} businesses on one server ({base}), each its own Slack "
                              "workspace\n\n")
                    for s in shops:
                        status = await _install(http, base, s.team)
                        if status == 200:
                            result.installed.append(s.team)
                        out.write(f"{s.team} (Shop {s.n}) installed the app through /slack/install: "
                                  f"{'ok' if status == 200 else f'HTTP {status}'}\n")
                    for s in shops:
                        await _post_webhook(http, base, _customer_says(s, f"wamid.ws.{s.n}", f"Hello {s.name}!"))
                    await _until(lambda: all(_shows(slack, s, f"Hello {s.name}!") for s in shops),
                                 "every shop's greeting in its own workspace")
                    out.write("\n")
                    for s in shops:
                        others = [o for o in shops if o != s and _shows(slack, s, f"Hello {o.name}!")]
                        foreign = [c for c in slack.calls_to("chat.postMessage")
                                   if c.args.get("channel") == s.channel and c.team != s.team]
                        result.leaks += len(others) + len(foreign)
                        out.write(f"#{s.name} in {s.team} shows: "
                                  f"{', '.join(repr(t) for t in _texts(slack, s))} (posted with {s.team}'s token"
                                  f"{'' if not foreign else ', and ANOTHER workspace token'})\n")
                    result.forged_reply_sent = await _forged_reply(slack, base, shops, graph)
                    out.write(f"\n{shops[0].team}'s staff typed into {shops[1].team}'s thread: "
                              f"{'SENT (wrong!)' if result.forged_reply_sent else 'refused, nothing sent'}\n")
                    result.held_then_delivered = await _uninstall_and_back(http, base, slack, shops[1], out, app)
            finally:
                await runner.cleanup()
    out.write(f"\nleaks between workspaces: {result.leaks}\n")
    return result


def _texts(slack: SlackStandin, shop: Business) -> list[str]:
    found = re.findall(r"Hello shop\d+!", json.dumps(slack.messages(shop.channel)))
    return sorted(set(found))


async def _forged_reply(slack: SlackStandin, base: str, shops: list[Business], graph: GraphStandin) -> bool:
    victim = shops[1]
    parent = slack.messages(victim.channel, top_level_only=True)[0]
    before = len(graph.attempts)
    await slack.send_event(f"{base}/slack/events", {
        "type": "message", "channel": victim.channel, "user": shops[0].staff, "text": "I am not from your shop",
        "ts": "1800000000.000100", "thread_ts": parent["ts"]}, SIGNING_SECRET, team_id=shops[0].team)
    return len(graph.attempts) > before


async def _uninstall_and_back(http: aiohttp.ClientSession, base: str, slack: SlackStandin, shop: Business,
                              out: TextIO, app: web.Application) -> bool:
    from bot.handlers import appkeys
    from storage.workspaces import held_posts, paused_teams

    async def paused() -> bool:
        async with app[appkeys.SESSIONS]() as session:
            return shop.team in await paused_teams(session)

    async def held() -> bool:
        async with app[appkeys.SESSIONS]() as session:
            return await held_posts(session, shop.team) > 0

    await slack.uninstall(f"{base}/slack/events", shop.team, SIGNING_SECRET)
    await _until(paused, "the uninstalled workspace to be paused")
    calls = len(slack.calls)
    await _post_webhook(http, base, _customer_says(shop, f"wamid.ws.{shop.n}.2", f"Are you there {shop.name}?"))
    await _until(held, "the message to the paused workspace to be stored")  # and owed to Slack
    dead = [c for c in slack.calls[calls:] if c.error in ("token_revoked", "invalid_auth", "not_authed")]
    waited = not _shows(slack, shop, f"Are you there {shop.name}?") and not dead
    out.write(f"{shop.team} uninstalled the app; its customer wrote again: "
              f"{'held, nothing tried with the dead token' if waited else 'posted (wrong!)'}\n")
    status = await _install(http, base, shop.team)
    await _until(lambda: _shows(slack, shop, f"Are you there {shop.name}?"), "the held message after reinstalling")
    out.write(f"{shop.team} installed the app again (HTTP {status}): the held message is in #{shop.name}\n")
    return waited


__all__ = ["WorkspacesResult", "run_workspaces_demo"]
