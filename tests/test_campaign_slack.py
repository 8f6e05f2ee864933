"""`/campaign` in Slack, end to end: signed Slack requests into the real app, Slack and Graph stand-ins,
a real scheduler and runner; the live progress message; a customer's reply attributed to the campaign."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.app.campaign_component import campaign_component
from bot.app.factory import create_app
from bot.app.slack_component import make_slack_component
from bot.handlers import appkeys
from bot.slack import limits
from bot.standins import GraphStandin, SlackStandin, sign_slack
from scheduler.campaigns import audience_text
from scheduler.campaigns.forms import CONFIRM_CALLBACK, CREATE_CALLBACK, NAME_MAX, REFUSAL, TEMPLATE_ACTION
from storage.models import Campaign, CampaignRecipient, Message, SlackOutbox, Template
from tests.canary import Canary
from tests.harness import eventually
from tests.helpers import BOT_TOKEN, SIGNING_SECRET, SLACK_CHANNEL, WABA, inbound_text, signed
from tests.test_campaign_support import campaign_settings

MANAGER = "UMANAGER"
STRANGER = "U0STRANGER"
AUDIENCE = b"name,phone,batch\nRavi,09810000001,A\nSita,+91 98100 00002,B\nbad,123,C\n"


@dataclass
class App:
    client: TestClient
    slack: SlackStandin
    graph: GraphStandin

    async def post(self, body: bytes, content_type: str) -> tuple[int, str]:
        headers = {"Content-Type": content_type, **sign_slack(SIGNING_SECRET, body)}
        resp = await self.client.post("/slack/events", data=body, headers=headers)
        return resp.status, await resp.text()

    async def command(self, text: str, user: str = MANAGER) -> tuple[int, str]:
        form = {"token": "t", "team_id": self.slack.team_id, "channel_id": SLACK_CHANNEL, "user_id": user,
                "command": "/campaign", "text": text, "api_app_id": self.slack.app_id,
                "response_url": f"{self.slack.base_url}/response-url/x", "trigger_id": self.slack.issue_trigger_id()}
        return await self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        data = {"team": {"id": self.slack.team_id}, "api_app_id": self.slack.app_id,
                "trigger_id": self.slack.issue_trigger_id(), **payload}
        return await self.post(urlencode({"payload": json.dumps(data)}).encode(), "application/x-www-form-urlencoded")

    async def submit(self, callback: str, values: dict[str, Any], *, user: str = MANAGER, view_id: str = "V1",
                     private_metadata: str = "") -> dict[str, Any]:
        status, text = await self.interaction({
            "type": "view_submission", "user": {"id": user},
            "view": {"id": view_id, "type": "modal", "callback_id": callback, "private_metadata": private_metadata,
                     "state": {"values": values}}})
        assert status == 200
        return json.loads(text) if text else {}

    def sessions(self) -> Any:
        return self.client.app[appkeys.SESSIONS]


def said(body: str) -> str:
    """What a slash command's answer says (bolt answers plain text, or JSON when there is more)."""
    try:
        return str(json.loads(body)["text"])
    except ValueError:
        return body


@pytest.fixture
async def app(aiohttp_client: Any, db_url: str) -> AsyncIterator[App]:
    slack = SlackStandin(bot_token=BOT_TOKEN)
    graph = GraphStandin()
    await slack.start()
    await graph.start()
    slack.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
    slack.add_channel("C0ALERTS", "alerts")
    slack.add_user(MANAGER, "asha")
    slack.add_user(STRANGER, "ravi")
    settings = campaign_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url, mps=20,
                                 pricing={"currency": "INR", "platform_fee": 0.2,
                                          "rates": {"IN": {"marketing": 0.86, "utility": 0.115}}},
                                 more_channels=[{"name": "kanpur", "phone_number_id": "100000000000002",
                                                 "waba_id": "999", "mode": "cloud_api", "access_token": "t2",
                                                 "slack_channel": "C0KANPUR"}])
    components = [make_slack_component(poll_interval=0.1, backoff_base=0.2, backoff_cap=1.0), campaign_component]
    client = await aiohttp_client(create_app(settings, components=components))
    async with client.app[appkeys.SESSIONS]() as s, s.begin():
        s.add(Template(waba_id=WABA, name="fee_reminder", language="en", category="UTILITY", status="APPROVED",
                       components=[{"type": "BODY", "text": "Dear {{1}}, fees for batch {{2}} are due."}]))
        s.add(Template(waba_id="999", name="other_waba", language="en", category="UTILITY", status="APPROVED",
                       components=[]))
    try:
        yield App(client, slack, graph)
    finally:
        await slack.stop()
        await graph.stop()


def form_values(*, file_id: str | None, template: str = f"{WABA}|fee_reminder|en", when: str = "now",
                variables: str = "1=name\n2=batch", **extra: Any) -> dict[str, Any]:
    def v(block: str, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return block, {"value": value}

    values = dict([
        v("name", {"type": "plain_text_input", "value": "Fee reminder"}),
        v("channel", {"type": "static_select", "selected_option": {"value": "lucknow"}}),
        v("template", {"type": "static_select", "selected_option": {"value": template}}),
        v("audience", {"type": "file_input", "files": [{"id": file_id, "name": "students.csv"}] if file_id else []}),
        v("variables", {"type": "plain_text_input", "value": variables}),
        v("when", {"type": "radio_buttons", "selected_option": {"value": when}}),
        v("date", {"type": "datepicker", "selected_date": extra.get("date")}),
        v("time", {"type": "timepicker", "selected_time": extra.get("time")}),
        v("days", {"type": "checkboxes", "selected_options": [{"value": d} for d in extra.get("days", [])]}),
        v("monthday", {"type": "static_select", "selected_option": extra.get("monthday")}),
        v("timezone", {"type": "plain_text_input", "value": extra.get("timezone", "Asia/Kolkata")}),
    ])
    return values


async def test_unauthorised_user_is_refused_but_may_list(app: App) -> None:
    for text in ("", "pause 1", "cancel 1"):
        status, body = await app.command(text, user=STRANGER)
        assert status == 200 and said(body) == REFUSAL
    assert app.slack.calls_to("views.open") == []
    status, body = await app.command("list", user=STRANGER)
    assert "No campaigns yet" in said(body)
    # A stranger submitting a form (replayed or forged) gets the same refusal.
    file_id = app.slack.add_file(AUDIENCE, "students.csv")["id"]
    answer = await app.submit(CREATE_CALLBACK, form_values(file_id=file_id), user=STRANGER)
    assert answer == {"response_action": "errors", "errors": {"channel": REFUSAL}}


async def test_unknown_subcommand_shows_usage(app: App) -> None:
    _, body = await app.command("launch everything")
    text = said(body)
    assert "I don't know `/campaign launch everything`" in text and "*/campaign list*" in text
    _, body = await app.command("pause")
    assert "needs a campaign number" in said(body)


async def test_manager_gets_the_modal_with_approved_templates_per_waba(app: App) -> None:
    status, _ = await app.command("")
    assert status == 200
    opened = await eventually(lambda: app.slack.calls_to("views.open"))
    view = json.loads(opened[0].args["view"]) if isinstance(opened[0].args["view"], str) else opened[0].args["view"]
    blocks = {b["block_id"]: b for b in view["blocks"] if b.get("block_id")}
    assert {"channel", "template", "audience", "variables", "when", "date", "time", "days", "monthday",
            "timezone"} <= set(blocks)
    assert blocks["channel"]["element"]["initial_option"]["value"] == "lucknow"  # typed in lucknow's channel
    assert blocks["template"]["element"]["type"] == "external_select"
    assert blocks["name"]["element"]["max_length"] == NAME_MAX
    assert limits.view_problems(view) == []

    async def suggest(value: str, channel: str | None) -> dict[str, Any]:
        state = {"channel": {"value": {"type": "static_select",
                                       "selected_option": {"value": channel} if channel else None}}}
        status, text = await app.interaction({
            "type": "block_suggestion", "user": {"id": MANAGER}, "action_id": TEMPLATE_ACTION,
            "block_id": "template", "value": value, "view": {**view, "state": {"values": state}}})
        assert status == 200
        return dict(json.loads(text))

    async with app.sessions()() as s:
        ids = {t.name: str(t.id) for t in (await s.scalars(select(Template))).all()}
    answer = await suggest("", None)  # no number chosen yet: every WABA's, grouped by its numbers
    assert [(g["label"]["text"], [o["value"] for o in g["options"]]) for g in answer["option_groups"]] == [
        ("lucknow", [ids["fee_reminder"]]), ("kanpur", [ids["other_waba"]])]
    assert await suggest("fee", "kanpur") == {"options": []}  # only the chosen number's WABA
    answer = await suggest("FEE rem", "lucknow")
    assert [o["value"] for o in answer["options"]] == [ids["fee_reminder"]]
    status, text = await app.interaction({"type": "block_suggestion", "user": {"id": STRANGER},
                                          "action_id": TEMPLATE_ACTION, "block_id": "template", "value": "",
                                          "view": view})
    assert json.loads(text) == {"options": []}
    assert blocks["timezone"]["element"]["initial_value"] == "Asia/Kolkata"
    assert blocks["audience"]["element"]["type"] == "file_input"


async def test_modal_validation_errors_are_inline(app: App) -> None:
    no_file = await app.submit(CREATE_CALLBACK, form_values(file_id=None, when="at", timezone="Mars/Base",
                                                            variables="1=name"))
    assert no_file["response_action"] == "errors"
    errors = no_file["errors"]
    assert set(errors) == {"audience", "timezone", "variables"}
    assert "map {{2}}" in errors["variables"].lower()

    file_id = app.slack.add_file(AUDIENCE, "students.csv")["id"]
    cases = [
        (form_values(file_id=file_id, when="at", time="09:00"), {"date"}),
        (form_values(file_id=file_id, when="at", date="2020-01-06", time="09:00"), {"date"}),
        (form_values(file_id=file_id, when="weekly", time="09:00"), {"days"}),
        (form_values(file_id=file_id, when="monthly", days=["mon"]), {"monthday", "time"}),
        (form_values(file_id=file_id, template="999|other_waba|en", variables=""), {"template"}),
        (form_values(file_id=file_id, variables="1=name\n2=fees"), {"variables"}),  # not a column of the file
    ]
    for values, blocks in cases:
        answer = await app.submit(CREATE_CALLBACK, values)
        assert answer["response_action"] == "errors" and set(answer["errors"]) == blocks, answer
    no_phone = app.slack.add_file(b"name,batch\nRavi,A\n", "nophone.csv")["id"]
    answer = await app.submit(CREATE_CALLBACK, form_values(file_id=no_phone))
    assert "no phone column" in answer["errors"]["audience"]


async def test_confirmation_shows_estimates_and_scheduling_sends_with_one_live_progress_message(app: App) -> None:
    async with app.sessions()() as s, s.begin():
        from storage.models import Contact
        s.add(Contact(wa_id="919810000002", opted_out=False))
    file_id = app.slack.add_file(AUDIENCE, "students.csv")["id"]
    meta = json.dumps({"origin": SLACK_CHANNEL})
    answer = await app.submit(CREATE_CALLBACK, form_values(file_id=file_id), private_metadata=meta, view_id="VCREATE")
    assert answer["response_action"] == "update" and "Importing" in json.dumps(answer["view"])

    updated = await eventually(lambda: app.slack.calls_to("views.update"))
    view = updated[0].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    text = json.dumps(view)
    assert updated[0].args["view_id"] == "VCREATE"
    assert "*Recipients:* 2 from 3 rows" in text
    assert "*Opted out, skipped:* 0 (not marketing: none skipped)" in text
    assert "Estimated duration:*" in text and "20 messages/s" in text
    assert "*Estimated cost:* 0.63 INR" in text  # 2 utility messages at 0.115 + 0.20 fee
    assert "line 4:" in text and "not a valid phone number" in text
    campaign_id = json.loads(view["private_metadata"])["campaign_id"]
    async with app.sessions()() as s:
        assert (await s.get(Campaign, campaign_id)).status == "draft"

    answer = await app.submit(CONFIRM_CALLBACK, {}, private_metadata=view["private_metadata"])
    assert answer == {"response_action": "clear"}
    confirmed = await eventually(lambda: app.slack.calls_to("chat.postEphemeral"))
    assert f"Campaign #{campaign_id} Fee reminder scheduled: now" in confirmed[0].args["text"]

    # The running scheduler fires it, the runner sends it, the progress message ends as a final report.
    await eventually(lambda: len(app.graph.sends) == 2)
    sent = {s.to: s for s in app.graph.sends}
    assert sent["919810000001"].payload["template"]["components"][0]["parameters"][0]["text"] == "Ravi"

    def progress_posts() -> list[dict[str, Any]]:
        return [m for m in app.slack.messages(SLACK_CHANNEL, top_level_only=True) if "Campaign #" in m["text"]]

    final = await eventually(lambda: [m for m in progress_posts() if "finished" in json.dumps(m)])
    assert len(progress_posts()) == 1  # one message, edited in place; no thread per recipient
    assert "Sent *2*" in json.dumps(final[0]) and "2 of 2" in json.dumps(final[0])
    # Refreshes owed while one was waiting are coalesced (a fast run may post its final report at once);
    # any later one edits the same message.
    await eventually(lambda: _outbox_settled(app))
    assert len(progress_posts()) == 1

    # A customer's reply to the campaign lands in their thread, attributed to the campaign.
    async with app.sessions()() as s:
        wamid = (await s.scalars(select(CampaignRecipient.wamid).where(
            CampaignRecipient.wa_id == "919810000001"))).one()
    body, headers = signed(inbound_text("wamid.reply1", "Paid already", wa_id="919810000001",
                                        ts=int(time.time()), context_id=wamid))
    assert (await app.client.post("/webhooks/meta", data=body, headers=headers)).status == 200
    msg = await eventually(lambda: _message(app, "wamid.reply1"))
    assert msg.campaign_id == campaign_id
    parent = await eventually(lambda: [m for m in app.slack.messages(SLACK_CHANNEL, top_level_only=True)
                                       if "Campaign #" not in m["text"]])
    await eventually(lambda: "Reply to campaign *Fee reminder*" in json.dumps(
        app.slack.thread(SLACK_CHANNEL, parent[0]["ts"])))


async def _message(app: App, wamid: str) -> Message | None:
    # A fresh session each time: on SQLite an open transaction holds the write lock the app needs.
    async with app.sessions()() as s:
        return (await s.scalars(select(Message).where(Message.wamid == wamid))).first()


async def test_closing_the_confirmation_discards_the_draft(app: App) -> None:
    file_id = app.slack.add_file(AUDIENCE, "students.csv")["id"]
    await app.submit(CREATE_CALLBACK, form_values(file_id=file_id, when="weekly", time="09:30", days=["mon", "thu"]))
    updated = await eventually(lambda: app.slack.calls_to("views.update"))
    view = updated[0].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert "every Mon, Thu at 09:30 (Asia/Kolkata)" in json.dumps(view)
    campaign_id = json.loads(view["private_metadata"])["campaign_id"]
    status, _ = await app.interaction({"type": "view_closed", "user": {"id": MANAGER},
                                       "view": {"id": "V1", "type": "modal", "callback_id": CONFIRM_CALLBACK,
                                                "private_metadata": view["private_metadata"]}})
    assert status == 200
    assert await eventually(lambda: _gone(app, campaign_id))


async def _gone(app: App, campaign_id: int) -> bool:
    async with app.sessions()() as s:
        return await s.get(Campaign, campaign_id) is None


async def test_pause_resume_cancel_from_slack(app: App) -> None:
    async with app.sessions()() as s, s.begin():
        c = Campaign(name="Exams", channel_id=1, template_name="fee_reminder", language="en", schedule_kind="at",
                     run_at=datetime.now(UTC) + timedelta(days=3), timezone="Asia/Kolkata", status="scheduled")
        s.add(c)
        await s.flush()
        cid = c.id
    _, body = await app.command(f"pause {cid}")
    assert said(body) == f"Campaign {cid} paused."
    _, body = await app.command(f"show #{cid}")
    assert f"paused by <@{MANAGER}>" in said(body)
    _, body = await app.command(f"resume {cid}")
    assert "resumed" in said(body)
    _, body = await app.command(f"cancel {cid}")
    assert "cancelled" in said(body)
    _, body = await app.command(f"resume {cid}")
    assert "only a paused or missed one can be resumed" in said(body)
    _, body = await app.command("list")
    assert f"*#{cid}* Exams" in said(body) and "*cancelled*" in said(body)


async def test_member_of_a_manager_user_group_may_run_campaigns(app: App) -> None:
    status, body = await app.command("", user=STRANGER)
    assert said(body) == REFUSAL
    app.slack.usergroups["S0TEACHERS"] = [STRANGER]
    app.client.app[appkeys.SETTINGS].slack.campaign_managers.append("S0TEACHERS")
    status, _ = await app.command("", user=STRANGER)
    assert status == 200
    await eventually(lambda: app.slack.calls_to("views.open"))
    assert app.slack.calls_to("usergroups.users.list")[0].args["usergroup"] == "S0TEACHERS"


async def test_audience_file_hosted_off_slack_is_refused_without_the_token(app: App) -> None:
    canary = Canary()
    await canary.start()
    try:
        file_id = app.slack.add_file(AUDIENCE, "students.csv")["id"]
        app.slack.files[file_id]["url_private"] = f"{canary.url}/metrics"
        app.slack.files[file_id]["url_private_download"] = f"{canary.url}/metrics"
        await app.submit(CREATE_CALLBACK, form_values(file_id=file_id))
        updated = await eventually(lambda: app.slack.calls_to("views.update"))
        assert "not on Slack" in json.dumps(updated[-1].args["view"])
        assert canary.hits == []
    finally:
        await canary.stop()


async def test_audience_limits_from_slack_are_those_of_the_command_line(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience_text, "MAX_LINE_CHARS", 1024)
    monkeypatch.setattr(audience_text, "MAX_FILE_BYTES", 4096)
    long_line = app.slack.add_file(b"name,phone,batch\nRavi,09810000001,A\nSita,09810000002,B\n"
                                   + b"Asha," + b"9" * 2000 + b",C\n", "students.csv")["id"]
    big = app.slack.add_file(b"name,phone,batch\n" + b"Ravi,09810000001,A\n" * 400, "everyone.csv")["id"]
    shown = []
    for n, file_id in enumerate((long_line, big), 1):
        await app.submit(CREATE_CALLBACK, form_values(file_id=file_id), view_id=f"VLIMIT{n}")
        updated = await eventually(lambda n=n: [c for c in app.slack.calls_to("views.update")
                                                if c.args["view_id"] == f"VLIMIT{n}"])
        shown.append(json.dumps(updated[-1].args["view"]))
    assert "Line 4 of students.csv is longer than 1,024 characters" in shown[0]
    assert "The file everyone.csv is larger than 4 KB" in shown[1]


async def _outbox_settled(app: App) -> bool:
    async with app.sessions()() as s:
        return not (await s.scalars(select(SlackOutbox.id).where(SlackOutbox.done_at.is_(None)))).first()
