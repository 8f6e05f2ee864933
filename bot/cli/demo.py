"""`wabridge demo`: the real server against local stand-ins for Meta and Slack, playing a short scenario.

Nothing leaves the machine: the Graph API and the Slack Web API are the loopback stand-ins in bot/standins,
the database is a temporary SQLite file and the throttle is the in-process one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from bot.app.factory import create_app
from bot.app.home_component import period_starts
from bot.cli import slack_view as view
from bot.core.config import Settings, parse_settings
from bot.handlers import appkeys
from bot.meta.signature import sign
from bot.standins.graph import GraphStandin
from bot.standins.slack import SlackStandin

APP_SECRET = "demo-app-secret"
SIGNING_SECRET = "demo-signing-secret"
BOT_TOKEN = "xoxb-demo"
WA_TOKEN = "EAAG-demo"
PNID, WABA, BUSINESS = "100000000000001", "200000000000001", "915224000000"
CHANNEL, ALERTS = "C0LUCKNOW", "C0ALERTS"
MANAGER, STAFF = "U0MANAGER", "U0PRIYA"
RAVI, ASHA = "919812345678", "919876543210"
TEMPLATE_BODY = "Hi {{1}}, your {{2}} class schedule for this week is ready. Reply to ask us anything."

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """What the scenario produced, for the printed transcript and for tests."""

    transcript: str
    campaign_sends: int
    max_sends_in_one_second: int
    refused_reply_sent: bool
    progress_lines: list[str] = field(default_factory=list)
    home: str = ""
    html: str = ""
    slack_messages: list[dict[str, Any]] = field(default_factory=list)  # #lucknow as Slack stored it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_settings(db_path: Path, graph_url: str, slack_api_url: str) -> Settings:
    """One Coexistence number at 5 msg/s, bridged into #lucknow, with a manager and an alerts channel."""
    return parse_settings({
        "database_url": f"sqlite+aiosqlite:///{db_path}",
        "redis_url": "",
        "meta": {"graph_url": graph_url, "app_id": "300000000000001", "app_secret": APP_SECRET,
                 "verify_token": "demo-verify"},
        "slack": {"api_url": slack_api_url, "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET,
                  "alerts_channel": ALERTS, "campaign_managers": [MANAGER]},
        "channels": [{"name": "lucknow", "phone_number_id": PNID, "waba_id": WABA,
                      "display_phone_number": "+91 522 400 0000", "mode": "coexistence", "mps": 5,
                      "access_token": WA_TOKEN, "slack_channel": CHANNEL}],
        "pricing": {"currency": "INR", "platform_fee": 0.2,
                    "rates": {"IN": {"marketing": 0.86, "utility": 0.115}}},
    }, env={})


def _envelope(field_name: str, value: dict[str, Any]) -> dict[str, Any]:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": BUSINESS, "phone_number_id": PNID}, **value}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA, "changes": [{"field": field_name, "value": value}]}]}


def customer_says(wamid: str, wa_id: str, name: str, text: str, at: datetime,
                  replying_to: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"from": wa_id, "id": wamid, "timestamp": str(int(at.timestamp())), "type": "text",
                               "text": {"body": text}}
    if replying_to:
        message["context"] = {"from": BUSINESS, "id": replying_to}
    return _envelope("messages", {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]})


def phone_app_says(wamid: str, wa_id: str, text: str, at: datetime) -> dict[str, Any]:
    return _envelope("smb_message_echoes", {
        "message_echoes": [{"from": BUSINESS, "to": wa_id, "id": wamid, "timestamp": str(int(at.timestamp())),
                            "type": "text", "text": {"body": text}}]})


def status_of(wamid: str, wa_id: str, state: str, at: datetime) -> dict[str, Any]:
    return _envelope("messages", {"statuses": [{"id": wamid, "status": state, "recipient_id": wa_id,
                                                "timestamp": str(int(at.timestamp()))}]})


class DemoStalled(RuntimeError):
    """The scenario waited in vain for the bridge: a bug to report, not an environment problem."""


async def _until(check: Callable[[], Awaitable[Any] | Any], what: str, within: float = 60.0) -> Any:
    """Poll check until it returns something truthy (the bridge works asynchronously); `what` names the wait."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoStalled(f"the scenario waited {within:.0f} s in vain for {what}")
        await asyncio.sleep(0.05)


def _names(slack: SlackStandin) -> view.Names:
    users = {uid: str(u.get("real_name") or u.get("name") or uid) for uid, u in slack.users.items()}
    channels = {cid: str(c.get("name") or cid) for cid, c in getattr(slack, "channels", {}).items()
                if isinstance(c, dict)}
    return view.Names(users, channels)


def _text(message: dict[str, Any], names: view.Names, style: view.Style) -> list[str]:
    return view.mrkdwn("\n".join(view.message_mrkdwn(message)), names, style).splitlines() or [""]


def _decorations(message: dict[str, Any]) -> str:
    files = " ".join(f"📎 {f.get('name')}" for f in message.get("files", []))
    marks = " ".join(view.reactions(message))
    return (f" {files}" if files else "") + (f"   {marks}" if marks else "")


def author(slack: SlackStandin, message: dict[str, Any]) -> str:
    """The name Slack shows above a message: the name it was posted under, the person's, or the app's."""
    person = slack.users.get(message.get("user", ""), {})
    return str(message.get("username") or ("Wabridge" if message.get("bot_id") or not message.get("user") else
                                           person.get("real_name") or message.get("user", "?")))


def render_channel(slack: SlackStandin, channel: str, title: str, style: view.Style = view.PLAIN) -> str:
    """What a Slack channel shows, thread by thread, with a legend for the status reactions."""
    names = _names(slack)
    bold = style.bold
    out = [f"━━ {title} ━━"]
    used: list[str] = []
    for top in slack.messages(channel, top_level_only=True):
        lines = _text(top, names, style)
        out.append(f"● {bold[0]}{author(slack, top)}{bold[1]}: {lines[0]}{_decorations(top)}")
        out.extend(f"  {line}" for line in lines[1:])
        used += [r["name"] for r in top.get("reactions", [])]
        for reply in slack.thread(channel, top["ts"])[1:]:
            rlines = _text(reply, names, style)
            out.append(f"  └ {bold[0]}{author(slack, reply)}{bold[1]}: {rlines[0]}{_decorations(reply)}")
            out.extend(f"    {line}" for line in rlines[1:])
            used += [r["name"] for r in reply.get("reactions", [])]
    if view.legend(used):
        out.append(f"  Reactions: {view.legend(used)}")
    return "\n".join(out)


def render_home(home: dict[str, Any], title: str, style: view.Style = view.PLAIN,
                names: view.Names | None = None) -> str:
    """What a Home tab shows."""
    names = names or view.Names({}, {})
    out = [f"━━ {title} ━━"]
    for block in home.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            out.append(f"■ {style.bold[0]}{view.emojize(block['text']['text'])}{style.bold[1]}")
        elif kind == "divider":
            out.append("  ─────")
        elif kind in ("section", "context"):
            out.extend(f"  {line}" for line in _text({"blocks": [block]}, names, style))
    return "\n".join(out)


class Scenario:
    """Drives the running server the way Meta and Slack would."""

    def __init__(self, base_url: str, graph: GraphStandin, slack: SlackStandin, app: web.Application,
                 out: TextIO) -> None:
        self.base_url = base_url
        self.graph = graph
        self.slack = slack
        self.app = app
        self.out = out
        self._http = aiohttp.ClientSession()

    async def close(self) -> None:
        await self._http.close()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def webhook(self, payload: dict[str, Any]) -> None:
        import json

        body = json.dumps(payload).encode()
        async with self._http.post(f"{self.base_url}/webhooks/meta", data=body,
                                   headers={"X-Hub-Signature-256": sign(APP_SECRET, body),
                                            "Content-Type": "application/json"}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"webhook refused: {resp.status} {await resp.text()}")

    async def staff_reply(self, thread_ts: str, text: str, user: str = STAFF) -> dict[str, Any]:
        event = self.slack.user_message(CHANNEL, user, text, thread_ts=thread_ts)
        status, _ = await self.slack.send_event(f"{self.base_url}/slack/events", event, SIGNING_SECRET)
        if status != 200:
            raise RuntimeError(f"Slack event refused: {status}")
        return event

    async def open_home(self, user: str) -> dict[str, Any]:
        """The user opens the app's Home tab; returns the view the bridge published for them."""
        before = self.slack.home_views.get(user, {}).get("hash")
        event = {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                 "event_ts": f"{time.time():.6f}"}
        status, _ = await self.slack.send_event(f"{self.base_url}/slack/events", event, SIGNING_SECRET)
        if status != 200:
            raise RuntimeError(f"Slack event refused: {status}")
        return dict(await _until(lambda: self.slack.home_views.get(user, {}).get("hash") not in (None, before)
                                 and self.slack.home_views[user], f"{user}'s Home tab"))

    async def recorded(self, thread_ts: str) -> bool:
        """True once the bridge has stored the thread (staff replies in it are then recognised)."""
        from storage.models import Conversation

        async with self.app[appkeys.SESSIONS]() as s:
            found = await s.scalar(select(Conversation.id).where(Conversation.slack_thread_ts == thread_ts))
        return found is not None

    def thread_of(self, wa_id: str) -> str | None:
        digits = wa_id[-4:]
        for top in self.slack.messages(CHANNEL, top_level_only=True):
            if digits in "\n".join(view.message_mrkdwn(top)):
                return str(top["ts"])
        return None


async def _campaign(sc: Scenario, settings: Settings, recipients: int) -> tuple[int, list[str]]:
    """Create a campaign from a CSV (as a manager would), let the real runner send it, show live progress."""
    from scheduler.campaigns import records as campaigns
    from scheduler.campaigns.create import Request, prepare
    from scheduler.campaigns.progress import snapshot
    from scheduler.campaigns.schedule import Schedule
    from storage.models import CampaignRun, Template

    sessions = sc.app[appkeys.SESSIONS]
    async with sessions() as s, s.begin():
        s.add(Template(waba_id=WABA, name="class_schedule", language="en", category="UTILITY", status="APPROVED",
                       components=[{"type": "BODY", "text": TEMPLATE_BODY}]))
    sc.graph.add_phone_number(PNID, WABA)
    sc.graph.add_template(WABA, "class_schedule", "en", body=TEMPLATE_BODY, category="UTILITY")
    rows = ["phone,name,course"] + [f"+91 98000 {10000 + i:05d},Student {i + 1},JEE" for i in range(recipients)]
    request = Request(channel=settings.channels[0], template="class_schedule", language="en",
                      variables={"1": {"column": "name"}, "2": {"column": "course"}},
                      schedule=Schedule("now", settings.timezone, run_at=datetime.now(UTC)),
                      name="Monday schedule", created_by=MANAGER, slack_channel=CHANNEL)
    prepared = await prepare(sessions, settings, request, io.StringIO("\n".join(rows) + "\n"))
    c = await campaigns.activate(sessions, prepared.campaign_id)
    sc.say(f"▶ Meera (manager) schedules campaign #{c.id} 'Monday schedule': {prepared.recipients} recipients "
           f"at {settings.channels[0].mps} msg/s, estimated cost {prepared.cost.text()}")

    async def run_id() -> int | None:
        async with sessions() as s:
            return await s.scalar(select(CampaignRun.id).where(CampaignRun.campaign_id == c.id))

    rid = await _until(run_id, "the campaign's run to be scheduled", within=10)
    lines: list[str] = []
    last = ""
    while True:
        async with sessions() as s:
            found = await snapshot(s, rid, settings)
        if found is not None:
            snap, _ = found
            # The run's own average: Snapshot.rate is over a fixed recent window, which a short run under-fills.
            took = ((snap.finished_at or datetime.now(UTC)) - snap.started_at).total_seconds()
            rate = snap.accepted / took if took > 0 else 0.0
            line = (f"  progress: {snap.done:>3}/{snap.total} sent={snap.accepted} failed={snap.failed} "
                    f"rate={rate:.1f}/s (cap {snap.mps}/s)")
            if line != last:
                sc.say(line)
                lines.append(line)
                last = line
            if snap.run_status in ("done", "cancelled"):
                break
        await asyncio.sleep(0.5)
    return int(c.id), lines


def story_minute(now: datetime, tz: str) -> timedelta:
    """A minute of the story, shortened just after local midnight so that this morning's conversation is all
    "today" on the Home tab (12 minutes before 00:05 would be yesterday's)."""
    since_midnight = now - period_starts(now, tz)[0]
    return min(timedelta(minutes=1), since_midnight / 13)


async def _play(sc: Scenario, settings: Settings, recipients: int, style: view.Style) -> DemoResult:
    now = datetime.now(UTC)
    minute = story_minute(now, settings.timezone)
    sc.say("▶ Ravi writes on WhatsApp")
    await sc.webhook(customer_says("wamid.demo.1", RAVI, "Ravi", "Hi! Is the Monday JEE batch full? <!channel>",
                                   now - 12 * minute))
    ravi_thread = await _until(lambda: sc.thread_of(RAVI), "Ravi's thread in Slack")
    await _until(lambda: sc.recorded(ravi_thread), "Ravi's thread to be recorded")
    sc.say("▶ Staff answer from the phone app (Coexistence echo)")
    await sc.webhook(phone_app_says("wamid.demo.2", RAVI, "Hi Ravi, 3 seats left. Shall I book one?",
                                    now - 10 * minute))
    await sc.webhook(customer_says("wamid.demo.3", RAVI, "Ravi", "Yes please!", now - 2 * minute))
    # The parent carries the first message.
    await _until(lambda: len(sc.slack.thread(CHANNEL, ravi_thread)) >= 3, "the phone-app echo and Ravi's answer")
    sc.say("▶ Priya replies in the Slack thread (inside the 24-hour window)")
    await sc.staff_reply(ravi_thread, "Booked! See you Monday at 9am, Ravi.")
    sent = await _until(lambda: sc.graph.sends_to(RAVI), "Priya's reply to reach WhatsApp")
    for i, state in enumerate(("sent", "delivered", "read")):
        await sc.webhook(status_of(sent[0].wamid, RAVI, state, now + timedelta(seconds=i)))
    await sc.staff_reply(ravi_thread, "note: paid by UPI, confirm receipt with accounts")

    sc.say("▶ Asha last wrote 30 hours ago; Priya tries to reply from Slack")
    await sc.webhook(customer_says("wamid.demo.4", ASHA, "Asha", "Do you have weekend classes?",
                                   now - timedelta(hours=30)))
    asha_thread = await _until(lambda: sc.thread_of(ASHA), "Asha's thread in Slack")
    await _until(lambda: sc.recorded(asha_thread), "Asha's thread to be recorded")
    await sc.staff_reply(asha_thread, "Yes, Saturdays at 10am!")
    await _until(lambda: sc.slack.ephemerals, "the notice that Asha's window is closed")
    refused_sent = bool(sc.graph.sends_to(ASHA))

    # Let the Slack outbox settle (status reactions, the note's marker) before the campaign starts.
    await _until(lambda: len([r for m in sc.slack.thread(CHANNEL, ravi_thread) for r in m.get("reactions", [])]) >= 3,
                 "the reply's status reactions")
    _, progress_lines = await _campaign(sc, settings, recipients)
    campaign_sends = [s for s in sc.graph.sends if s.type == "template"]

    sc.say("▶ Meta reports the campaign delivered (and mostly read); a student answers it")
    for i, send in enumerate(campaign_sends):
        await sc.webhook(status_of(str(send.wamid), send.to, "delivered", datetime.now(UTC)))
        if i % 4:
            await sc.webhook(status_of(str(send.wamid), send.to, "read", datetime.now(UTC)))
    first = campaign_sends[0]
    await sc.webhook(customer_says("wamid.demo.5", first.to, "Student 1", "Thanks! Is there a mock test too?",
                                   datetime.now(UTC), replying_to=first.wamid))
    await _until(lambda: sc.thread_of(first.to), "the student's answer to the campaign")
    await asyncio.sleep(2.0)  # the campaign's final report and last outbox rows

    sc.say("▶ Meera (manager) and Priya open Wabridge's Home tab in Slack")
    names = _names(sc.slack)
    home = "\n\n".join([
        render_home(await sc.open_home(MANAGER), "Home tab, as Meera (manager) sees it", style, names),
        render_home(await sc.open_home(STAFF), "Home tab, as Priya sees it", style, names)])

    times = sorted(s.time for s in campaign_sends)
    worst = max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)
    ephemerals = [f"● {' '.join(_text(e, names, style))}" + "".join(f"  [{b}]" for b in view.buttons(e))
                  for e in sc.slack.ephemerals]
    transcript = "\n\n".join([
        render_channel(sc.slack, CHANNEL, "#lucknow", style),
        render_channel(sc.slack, ALERTS, "#alerts", style),
        "━━ only visible to Priya ━━\n" + "\n".join(ephemerals),
        home,
    ])
    return DemoResult(transcript=transcript, campaign_sends=len(campaign_sends), max_sends_in_one_second=worst,
                      refused_reply_sent=refused_sent, progress_lines=progress_lines, home=home)


async def _log_backlog(app: web.Application) -> None:
    """What the bridge still owes when the scenario stalls: the work left in its queues, for the report."""
    from storage.models import MessageStatus, SlackOutbox, WebhookLog

    async with app[appkeys.SESSIONS]() as s:
        webhooks = (await s.execute(select(WebhookLog.id, WebhookLog.event_type, WebhookLog.attempts,
                                           WebhookLog.error).where(WebhookLog.processed_at.is_(None)))).all()
        owed = (await s.execute(select(SlackOutbox.id, SlackOutbox.kind, SlackOutbox.dedupe_key, SlackOutbox.attempts,
                                       SlackOutbox.last_error, SlackOutbox.done_at, SlackOutbox.result)
                                .order_by(SlackOutbox.id))).all()
        statuses = (await s.execute(select(MessageStatus.wamid, MessageStatus.status))).all()
    log.error("demo stalled; unprocessed webhooks: %s; Slack outbox: %s; statuses: %s",
              [tuple(r) for r in webhooks], [tuple(r) for r in owed], [tuple(r) for r in statuses])


async def run_demo(out: TextIO, *, recipients: int = 20, style: view.Style = view.PLAIN,
                   page: bool = False) -> DemoResult:
    """Start stand-ins and the real server, play the scenario, print what Slack shows (with page, also the
    #lucknow channel as an HTML page drawn like Slack, in result.html)."""
    from bot.app.components import default_components
    from storage.models import WebhookLog

    with tempfile.TemporaryDirectory(prefix="wabridge-demo-") as tmp:
        async with GraphStandin(tokens={WA_TOKEN: {PNID, WABA}}, mps=5) as graph, \
                SlackStandin(bot_token=BOT_TOKEN) as slack:
            slack.add_user(STAFF, "priya", real_name="Priya")
            slack.add_user(MANAGER, "meera", real_name="Meera")
            settings = demo_settings(Path(tmp) / "demo.db", graph.base_url, slack.api_url)
            app = create_app(settings, components=default_components(settings))
            runner = web.AppRunner(app)
            await runner.setup()
            port = _free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            sc = Scenario(f"http://127.0.0.1:{port}", graph, slack, app, out)
            try:
                sc.say(f"Wabridge demo: server on http://127.0.0.1:{port}, Meta and Slack stand-ins on loopback, "
                       f"SQLite in {tmp}\n")
                try:
                    result = await _play(sc, settings, recipients, style)
                except DemoStalled:
                    await _log_backlog(app)
                    raise
                result.slack_messages = list(slack.messages(CHANNEL))
                if page:
                    from bot.cli.demo_html import channel_page

                    result.html = channel_page(slack, CHANNEL, "lucknow", author)
                async with app[appkeys.SESSIONS]() as s:
                    pending = await s.scalar(select(func.count()).select_from(WebhookLog)
                                             .where(WebhookLog.processed_at.is_(None)))
                sc.say("\n" + result.transcript)
                sc.say(f"\nWhatsApp: {result.campaign_sends} campaign messages, at most "
                       f"{result.max_sends_in_one_second} in any one second (cap 5); reply outside the window "
                       f"{'SENT (wrong!)' if result.refused_reply_sent else 'not sent'}; "
                       f"unprocessed webhooks: {pending}.")
                return result
            finally:
                await sc.close()
                await runner.cleanup()
