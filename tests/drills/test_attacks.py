"""Attack drill: every attack and careless-operator mistake of the hardening issue, in one run, against `serve`
as a real subprocess with the Meta and Slack stand-ins on loopback and a canary server on another port.

- The Slack token never leaves Slack: a shared file and an audience CSV whose `url_private` points at the
  canary are not fetched (the canary sees no request, with or without a token).
- Deeply nested JSON on /webhooks/meta, /slack/events and /onboard/complete, and picker submissions with
  broken private_metadata or ids: 4xx or a readable answer, never a 5xx.
- One signed template-picker submission posted three times sends one template; an opt-out by someone outside
  the channel is refused.
- A Slack Connect user from another organisation, in the channel, replies in the thread: nothing reaches the
  customer and they are told why.
- /metrics and /%6detrics without the bearer token: 401; with no token, port or metrics_public set, `serve` does
  not serve /metrics (404) and its log says so in one line.
- A 100 KB query string, sent a dozen times: 400 each, at most ten log lines, no traceback.
- A customer whose WhatsApp name is made of bidi overrides and zero-width characters shows in Slack with them
  stripped and the rest isolated (U+2068 … U+2069); a name with nothing visible left shows as the number.
- A reply whose answer is lost after Meta took it is sent once; a 130429 on a reply shows in doctor.
- Meta's side: a signed status from another business's number naming our campaign recipient settles nothing;
  a media URL in Graph's answer on the canary's origin is not fetched (the thread says why); a 2 MB history
  chunk is taken under the default body limit, a 9 MiB body gets 413.
- Config: empty secrets all named at once, a display number as phone_number_id, a misspelt time zone,
  postgres:// and sqlite:// URLs, a port in use: one line each, the right exit code.
- The log: a 'listening on' line, refusals logged, no bolt token notice, no scheduler chatter, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml
from sqlalchemy import insert, select

from bot.handlers.slack_actions import PICKER_CALLBACK, SHORTCUT_OPT_OUT, TEMPLATE_BLOCK, TEMPLATE_SELECT
from bot.slack.display_names import FSI, PDI
from bot.standins import sign_slack
from scheduler.campaigns.unknowns import callback_data
from storage.models import (
    Campaign,
    CampaignRecipient,
    CampaignRun,
    Channel,
    Contact,
    Conversation,
    Template,
    WebhookLog,
    utcnow,
)
from tests.canary import Canary
from tests.drills.conftest import ROOT, DbProbe, Serves, Standins, write_config
from tests.harness import eventually, now_ts
from tests.helpers import PNID, SIGNING_SECRET, SLACK_CHANNEL, WABA, history_chunk, inbound_text, signed, status
from tests.test_campaign_slack import form_values

METRICS_TOKEN = "drill-metrics-token"
STAFF, OUTSIDER, MANAGER, PARTNER = "U0STAFF", "U0OUTSIDER", "UMANAGER", "U0PARTNER"
WA_ID = "919812345678"
SPOOF_ID, BLANK_ID = "919812340001", "919812340002"
# "\u202e" (RIGHT-TO-LEFT OVERRIDE) would reverse "Support" and the number after it; the rest hide or reorder.
SPOOF_NAME = "\u202etroppuS\u200b\u2066 Desk\ufeff\u2069\u200f"
BLANK_NAME = "\u200b\u200d\u2060\u202e\u2800"
CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u200b\u200c\u200d\u200e\u200f\u2060\ufeff")
DEEP = "[" * 50_000 + "]" * 50_000


def _run(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "--config", str(config), *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, capture_output=True,
                          text=True, timeout=120, check=False)


class Attacker:
    """Signed and unsigned requests to one `serve`."""

    def __init__(self, http: aiohttp.ClientSession, url: str, standins: Standins) -> None:
        self.http, self.url, self.standins = http, url, standins

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        async with self.http.post(self.url + path, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def slack(self, body: bytes, content_type: str, *, sign: bool = True) -> tuple[int, str]:
        headers = {"Content-Type": content_type, **(sign_slack(SIGNING_SECRET, body) if sign else {})}
        async with self.http.post(self.url + "/slack/events", data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        slack = self.standins.slack
        data = {"team": {"id": slack.team_id}, "api_app_id": slack.app_id, "trigger_id": slack.issue_trigger_id(),
                **payload}
        return await self.slack(urlencode({"payload": json.dumps(data)}).encode(),
                                "application/x-www-form-urlencoded")

    async def event(self, event: dict[str, Any], event_id: str) -> int:
        slack = self.standins.slack
        body = {"token": "t", "team_id": slack.team_id, "api_app_id": slack.app_id, "event": event,
                "type": "event_callback", "event_id": event_id, "event_time": now_ts()}
        status, _ = await self.slack(json.dumps(body).encode(), "application/json")
        return status

    async def raw_get(self, path: str, headers: str = "") -> int:
        """A GET written byte for byte: the path reaches the server exactly as typed."""
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        await writer.drain()
        head = await reader.read()
        writer.close()
        return int(head.split(b" ", 2)[1])


async def test_every_attack_in_one_run(db_url: str, tmp_path: Path, standins: Standins, serves: Serves) -> None:
    config = write_config(tmp_path / "app.yaml", standins, db_url)
    raw = yaml.safe_load(config.read_text())
    raw["server"].pop("metrics_public", None)
    raw["server"]["metrics_token"] = METRICS_TOKEN
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    slack, graph = standins.slack, standins.graph
    for user in (STAFF, OUTSIDER, MANAGER):
        slack.add_user(user, user.lower())
    slack.add_user(PARTNER, "partner", team_id="T0PARTNER")  # another organisation's, through Slack Connect
    slack.join(SLACK_CHANNEL, STAFF, PARTNER)
    canary = Canary()
    await canary.start()
    serve = await serves.start(config, "attacked")
    db = DbProbe(db_url)
    try:
        async with aiohttp.ClientSession() as http:
            attacker = Attacker(http, serve.url, standins)
            await _attack(attacker, db, canary, slack, graph)
        await _careless_operator(tmp_path, raw, serve.port, db_url)
        await _metrics_off_by_default(tmp_path, raw, serves)
        await _doctor_counts_the_130429(config)
    finally:
        await canary.stop()
        await db.close()
    log = serve.log_text()
    assert f"listening on http://127.0.0.1:{serve.port}" in log
    assert [line for line in log.splitlines() if "metrics: " in line][-1].endswith(
        "metrics: /metrics on the main port, behind server.metrics_token")
    assert "rejected POST /webhooks/meta" in log and "rejected GET /metrics" in log
    assert "will be unused" not in log and "Traceback" not in log
    malformed = [line for line in log.splitlines() if "rejected a malformed request" in line]
    assert len(malformed) == 10 and all("request line or header too long" in line for line in malformed)
    assert "Running job" not in log and "executed successfully" not in log


async def _attack(a: Attacker, db: DbProbe, canary: Canary, slack: Any, graph: Any) -> None:
    body, headers = signed(inbound_text("wamid.ATTACK", "hello", wa_id=WA_ID, ts=now_ts(-60)))
    assert await a.post("/webhooks/meta", body, headers) == 200
    parent = (await eventually(lambda: slack.messages(SLACK_CHANNEL, top_level_only=True), timeout=30))[0]
    # The thread is known once its parent's ts is stored (a reply before that finds no thread and is ignored).
    recorded = Conversation.__table__.select().where(Conversation.slack_thread_ts == parent["ts"])
    conversation = (await eventually(lambda: db.all(recorded), timeout=30))[0]

    # 1. The token leak: a shared file and an audience CSV hosted on the canary.
    file = dict(slack.add_file(b"%PDF-1.4", "brochure.pdf", "application/pdf", user=STAFF))
    file["url_private"] = file["url_private_download"] = f"{canary.url}/metrics"
    event = slack.user_message(SLACK_CHANNEL, STAFF, "here", thread_ts=parent["ts"], files=[file])
    assert await a.event(event, "EvLEAK") == 200
    await eventually(lambda: [m for m in slack.thread(SLACK_CHANNEL, parent["ts"]) if "leaves Slack" in str(m)],
                     timeout=30)
    await db.write(insert(Template).values(waba_id=WABA, name="fee_reminder", language="en", category="UTILITY",
                                           status="APPROVED", components=[
                                               {"type": "BODY", "text": "Dear {{1}}, batch {{2}}."}]))
    audience = slack.add_file(b"name,phone,batch\nRavi,09810000001,A\n", "students.csv")
    slack.files[audience["id"]]["url_private"] = slack.files[audience["id"]]["url_private_download"] = \
        f"{canary.url}/audience.csv"
    status, _ = await a.interaction({"type": "view_submission", "user": {"id": MANAGER}, "view": {
        "id": "VAUD", "type": "modal", "callback_id": "wabridge_campaign_create", "private_metadata": "",
        "state": {"values": form_values(file_id=audience["id"])}}})
    assert status == 200
    await eventually(lambda: [c for c in slack.calls_to("views.update") if "not on Slack" in json.dumps(c.args)],
                     timeout=30)
    assert canary.hits == []
    assert graph.sends_to(WA_ID) == []

    # 2. Malformed input: deep nesting everywhere, broken picker submissions.
    deep_body, deep_headers = signed(DEEP.encode())
    statuses = [
        await a.post("/webhooks/meta", deep_body, deep_headers),
        await a.post("/webhooks/meta", deep_body, {"Content-Type": "application/json"}),
        (await a.slack(DEEP.encode(), "application/json"))[0],
        (await a.slack(urlencode({"payload": DEEP}).encode(), "application/x-www-form-urlencoded"))[0],
        await a.post("/onboard/complete", DEEP.encode(), {"Content-Type": "application/json"}),
    ]
    assert statuses == [400, 401, 400, 400, 400]
    target = json.dumps({"conversation_id": conversation.id, "channel": SLACK_CHANNEL, "thread_ts": parent["ts"]})
    await db.write(insert(Template).values(waba_id=WABA, name="hello", language="en", category="UTILITY",
                                           status="APPROVED", components=[{"type": "BODY", "text": "Hello!"}]))
    template_id = next(t.id for t in await db.all(Template.__table__.select()) if t.name == "hello")

    def picker(meta: str, value: str, view_id: str = "VPICK") -> dict[str, Any]:
        values = {TEMPLATE_BLOCK: {TEMPLATE_SELECT: {"type": "static_select", "selected_option": {"value": value}}}}
        return {"type": "view_submission", "user": {"id": STAFF}, "view": {
            "id": view_id, "type": "modal", "callback_id": PICKER_CALLBACK, "private_metadata": meta,
            "state": {"values": values}}}

    for meta, value in (("not json", str(template_id)), (target, "abc"), (target, "9" * 30)):
        status, text = await a.interaction(picker(meta, value))
        assert status == 200 and json.loads(text)["response_action"] == "errors"

    # 3. Replays and permissions: three deliveries of one submission; an opt-out from outside the channel.
    replays = [await a.interaction(picker(target, str(template_id))) for _ in range(3)]
    assert {s for s, _ in replays} == {200}, replays
    await eventually(lambda: graph.sends_to(WA_ID), timeout=30)
    assert len(graph.sends_to(WA_ID)) == 1
    message = slack.thread(SLACK_CHANNEL, parent["ts"])[0]
    await a.interaction({"type": "message_action", "callback_id": SHORTCUT_OPT_OUT, "user": {"id": OUTSIDER},
                         "channel": {"id": SLACK_CHANNEL}, "message": message, "message_ts": message["ts"],
                         "action_ts": "1.1", "response_url": f"{slack.base_url}/response-url/x"})
    await eventually(lambda: [e for e in slack.ephemerals if e["user"] == OUTSIDER], timeout=30)
    assert [c.opted_out for c in await db.all(Contact.__table__.select())] == [False]

    # 3b. A Slack Connect user replies to the customer.
    outside = slack.user_message(SLACK_CHANNEL, PARTNER, "from another company", thread_ts=parent["ts"])
    assert await a.event(outside, "EvPARTNER") == 200
    await eventually(lambda: [e for e in slack.ephemerals if e["user"] == PARTNER and "Slack Connect" in e["text"]],
                     timeout=30)

    # 4. /metrics is not reachable by spelling its path differently.
    assert [await a.raw_get(p) for p in ("/metrics", "/%6detrics")] == [401, 401]
    assert await a.raw_get("/%6detrics", f"Authorization: Bearer {METRICS_TOKEN}\r\n") == 200

    # 4b. Requests aiohttp refuses before any route: answered 400, logged in a bounded number of lines.
    for _ in range(12):
        assert await a.raw_get("/healthz?" + "q" * 100_000) == 400

    # 5. Send outcomes on replies: an answer lost after Meta took it; a 130429.
    graph.drop_answer_next()
    reply = slack.user_message(SLACK_CHANNEL, STAFF, "sent once", thread_ts=parent["ts"])
    assert await a.event(reply, "EvLOST") == 200
    await eventually(lambda: [e for e in slack.ephemerals if "may or may not" in e["text"]], timeout=30)
    graph.fail_next(PNID, to=WA_ID, code=130429)
    throttled = slack.user_message(SLACK_CHANNEL, STAFF, "too fast", thread_ts=parent["ts"])
    assert await a.event(throttled, "Ev130429") == 200
    await eventually(lambda: [e for e in slack.ephemerals if "130429" in e["text"]], timeout=30)
    texts = [s.payload.get("text", {}).get("body") for s in graph.sends_to(WA_ID)]
    assert texts.count("sent once") == 1 and "too fast" not in texts and "from another company" not in texts

    # 6. Names: bidi overrides and zero-width tricks in WhatsApp profile names.
    for wamid, wa_id, name in (("wamid.SPOOF", SPOOF_ID, SPOOF_NAME), ("wamid.BLANK", BLANK_ID, BLANK_NAME)):
        body, headers = signed(inbound_text(wamid, "hi", wa_id=wa_id, name=name, ts=now_ts(-30)))
        assert await a.post("/webhooks/meta", body, headers) == 200
    parents = await eventually(lambda: (p := slack.messages(SLACK_CHANNEL, top_level_only=True)) and len(p) >= 3
                               and p, timeout=30)
    shown = json.dumps([[p.get("text"), p.get("blocks"), p.get("username")] for p in parents], ensure_ascii=False)
    assert not set(shown) & CONTROLS
    assert f"*{FSI}troppuS Desk{PDI}* · +91 98123 40001" in shown
    assert "*Unknown name* · +91 98123 40002" in shown

    await _edges(a, db, canary, slack, graph, parent["ts"])


async def _edges(a: Attacker, db: DbProbe, canary: Canary, slack: Any, graph: Any, thread_ts: str) -> None:
    """Meta's side: another business's status, Graph answers naming another origin, Meta's largest bodies."""
    # 7. A status signed by Meta but from another business's number, naming our campaign recipient.
    channel_id = (await db.all(select(Channel.id).where(Channel.phone_number_id == PNID)))[0][0]
    await db.write(insert(Campaign).values(name="Fees", channel_id=channel_id, template_name="hello", language="en",
                                           schedule_kind="now"))
    campaign_id = (await db.all(select(Campaign.id)))[-1][0]
    await db.write(insert(CampaignRun).values(campaign_id=campaign_id, scheduled_for=utcnow(), status="done"))
    run_id = (await db.all(select(CampaignRun.id)))[-1][0]
    await db.write(insert(CampaignRecipient).values(run_id=run_id, wa_id="919810000077", status="unknown",
                                                    attempted_at=utcnow()))
    recipient_id = (await db.all(select(CampaignRecipient.id)))[-1][0]
    forged = status("wamid.FOREIGN", "delivered", recipient="919810000077", ts=now_ts())
    value = forged["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = "109999999999999"
    value["statuses"][0]["biz_opaque_callback_data"] = callback_data(recipient_id)
    assert await a.post("/webhooks/meta", *signed(forged)) == 200
    await _wait_all_applied(db, 30)
    assert [r.status for r in await db.all(select(CampaignRecipient.status).where(
        CampaignRecipient.id == recipient_id))] == ["unknown"]

    # 8. A media URL in Graph's answer on another origin: not fetched, the thread says why.
    graph.media_url_base = canary.url
    try:
        media_id = graph.add_media(b"\x89PNG\r\n\x1a\n", "image/png")
        image = inbound_text("wamid.IMGELSEWHERE", "", wa_id=WA_ID, ts=now_ts())
        image["entry"][0]["changes"][0]["value"]["messages"][0].update(
            type="image", image={"id": media_id, "mime_type": "image/png", "sha256": "x"})
        del image["entry"][0]["changes"][0]["value"]["messages"][0]["text"]
        assert await a.post("/webhooks/meta", *signed(image)) == 200
        await eventually(lambda: [m for m in slack.thread(SLACK_CHANNEL, thread_ts)
                                  if "not one of Meta's hosts" in str(m)], timeout=30)
    finally:
        graph.media_url_base = None
    assert canary.hits == []

    # 9. Meta's largest bodies: a history chunk of about 2 MB is taken; one past the limit is 413.
    chunk, headers = signed(history_chunk(200, 10, text="x" * 900))
    assert 2_000_000 < len(chunk) < 3_000_000
    assert await a.post("/webhooks/meta", chunk, headers) == 200
    huge, huge_headers = signed(b'{"pad": "' + b"x" * (9 * 1024 * 1024) + b'"}')
    assert await a.post("/webhooks/meta", huge, huge_headers) == 413
    await _wait_all_applied(db, 120)


async def _all_applied(db: DbProbe) -> bool:
    return await db.count(WebhookLog, WebhookLog.processed_at.is_(None)) == 0


async def _wait_all_applied(db: DbProbe, timeout: float) -> None:  # noqa: ASYNC109
    """Every stored delivery applied; the ones still waiting (with their errors) when it fails."""
    try:
        await eventually(lambda: _all_applied(db), timeout=timeout)
    except AssertionError:
        waiting = await db.all(select(WebhookLog.id, WebhookLog.event_type, WebhookLog.attempts, WebhookLog.error)
                               .where(WebhookLog.processed_at.is_(None)))
        raise AssertionError(f"deliveries not applied within {timeout:g} s: {waiting}") from None


async def _careless_operator(tmp_path: Path, raw: dict[str, Any], busy_port: int, db_url: str) -> None:
    def config(name: str, **changes: Any) -> Path:
        tree = json.loads(json.dumps(raw))
        for dotted, value in changes.items():
            node = tree
            *parents, last = dotted.split("__")
            for part in parents:
                node = node[int(part)] if part.isdigit() else node[part]
            node[last] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tree, sort_keys=False))
        return path

    empty = config("empty", meta__app_secret="${META_APP_SECRET}", meta__verify_token="",
                   slack__bot_token="${SLACK_BOT_TOKEN:-}", channels__0__access_token="")
    # serve needs every secret (migrate, report and the like need none of them).
    done = _run(empty, "serve", env={"META_APP_SECRET": "", "SLACK_BOT_TOKEN": ""})
    assert done.returncode == 2
    assert done.stderr.strip() == ("config error: secrets: not set or empty: meta.app_secret (export "
                                   "META_APP_SECRET), meta.verify_token, slack.bot_token (export SLACK_BOT_TOKEN), "
                                   "channels[0].access_token")
    for name, change, key in (("display", {"channels__0__phone_number_id": "+91 522 400 0000"},
                               "channels[0].phone_number_id"),
                              ("zone", {"timezone": "Asia/Kolkatta"}, "timezone"),
                              ("driver", {"database_url": "postgresql+psycopg2://u@127.0.0.1/wa"}, "database_url")):
        done = _run(config(name, **change), "serve")
        assert done.returncode == 2 and done.stderr.startswith(f"config error: {key}: "), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    plain = db_url.replace("postgresql+asyncpg://", "postgres://").replace("sqlite+aiosqlite://", "sqlite://")
    assert _run(config("plain", database_url=plain), "migrate").returncode == 0
    done = _run(config("busy", server__host="127.0.0.1", server__port=busy_port), "serve", "--no-migrate")
    assert done.returncode == 69 and done.stderr.strip().startswith(f"serve: cannot listen on 127.0.0.1:{busy_port}")
    assert len(done.stderr.strip().splitlines()) == 1


async def _metrics_off_by_default(tmp_path: Path, raw: dict[str, Any], serves: Serves) -> None:
    tree = json.loads(json.dumps(raw))
    tree["server"].pop("metrics_token")
    config = tmp_path / "no-metrics.yaml"
    config.write_text(yaml.safe_dump(tree, sort_keys=False))
    serve = await serves.start(config, "no-metrics")
    async with aiohttp.ClientSession() as http, http.get(f"{serve.url}/metrics") as resp:
        assert resp.status == 404
    await serve.stop()
    lines = [line for line in serve.log_text().splitlines() if "metrics: " in line]
    assert len(lines) == 1 and lines[0].endswith("metrics: /metrics is off; set server.metrics_token (bearer "
                                                 "token), server.metrics_port (own port) or "
                                                 "server.metrics_public: true to serve it")


async def _doctor_counts_the_130429(config: Path) -> None:
    done = _run(config, "doctor")
    line = next(line for line in done.stdout.splitlines() if "130429 throughput errors (24 h)" in line)
    assert "1 send(s)" in line, done.stdout
