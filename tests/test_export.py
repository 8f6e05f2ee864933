"""Audit export: a conversation with customer, phone-app, Slack and campaign messages, in WhatsApp order."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import select

from bot.app.factory import create_app
from bot.cli.entry import main
from bot.handlers import appkeys
from bot.handlers.slack_ops import export_reply
from bot.ops.export import ExportError, Format, load_transcript, normalize_number, render
from bot.slack.display_names import isolate
from bot.standins.slack import SlackStandin
from storage import repository as repo
from storage.models import Conversation
from tests.harness import drain_webhooks, post_webhook
from tests.helpers import BOT_TOKEN, echo_text, inbound_text, make_settings, status

T0 = 1_760_000_000
CUSTOMER = "919812345678"


class SlackWithDirectMessages(SlackStandin):
    """The Slack stand-in plus conversations.open, which a DM upload needs (files go to D… channels)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._methods["conversations.open"] = self._conversations_open
        self.add_user("U0ASHA", "asha", real_name="Asha Verma")
        self.add_user("UMANAGER", "meera", real_name="Meera")

    async def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._user(args.get("users"))
        dm = "D" + user["id"][1:]
        if dm not in self.channels:
            self.add_channel(dm, dm.lower(), is_private=True)
        return {"channel": {"id": dm}}


@pytest.fixture
async def slack() -> AsyncIterator[SlackWithDirectMessages]:
    async with SlackWithDirectMessages(bot_token=BOT_TOKEN) as standin:
        yield standin




async def _conversation(client) -> None:  # type: ignore[no-untyped-def]
    """Customer, phone app, Slack user and campaign, delivered out of order."""
    app = client.app
    await post_webhook(client, inbound_text("wamid.C2", "Thanks, see you <b>Saturday</b>", ts=T0 + 300))
    await post_webhook(client, inbound_text("wamid.C1", "When is the exam?", ts=T0))
    await post_webhook(client, echo_text("wamid.P1", "Saturday 10am", ts=T0 + 60))
    await post_webhook(client, status("wamid.P1", "delivered", ts=T0 + 65))
    await post_webhook(client, status("wamid.P1", "read", ts=T0 + 90))
    await drain_webhooks(app)
    async with app[appkeys.SESSIONS]() as s, s.begin():
        conv = (await s.scalars(select(Conversation))).one()
        await repo.insert_message(s, {
            "wamid": "wamid.S1", "conversation_id": conv.id, "direction": "outbound", "source": "slack",
            "type": "text", "text": "Bring your admit card, a pen | pencil", "slack_user": "U0ASHA",
            "status": "delivered", "wa_timestamp": datetime.fromtimestamp(T0 + 120, UTC)})
        await repo.insert_message(s, {
            "wamid": None, "conversation_id": conv.id, "direction": "outbound", "source": "slack",
            "type": "text", "text": "called her about fees", "slack_user": "U0ASHA", "is_note": True,
            "wa_timestamp": datetime.fromtimestamp(T0 + 150, UTC)})
        await repo.insert_message(s, {
            "wamid": "wamid.K1", "conversation_id": conv.id, "direction": "outbound", "source": "campaign",
            "type": "template", "text": None, "content": {"template": {"name": "fee_reminder"}},
            "campaign_id": 7, "status": "failed", "error_code": 131026, "error_title": "Message undeliverable",
            "wa_timestamp": datetime.fromtimestamp(T0 + 200, UTC)})


EXPECTED = [
    ("inbound", "customer", "Ravi", "When is the exam?"),
    ("outbound", "phone app", "phone app", "Saturday 10am"),
    ("outbound", "Slack user", "U0ASHA", "Bring your admit card, a pen | pencil"),
    ("outbound", "Slack note", "U0ASHA", "called her about fees"),
    ("outbound", "campaign", "#7", "Template fee_reminder"),
    ("inbound", "customer", "Ravi", "Thanks, see you <b>Saturday</b>"),
]


async def test_transcript_has_every_source_in_whatsapp_order(aiohttp_client, db_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(db_url)
    client = await aiohttp_client(create_app(settings, workers=False))
    await _conversation(client)
    t = await load_transcript(client.app[appkeys.SESSIONS], "lucknow", "+91 98123 45678",
                              timezone="Asia/Kolkata")
    assert [(x.direction, x.source, x.author, x.text) for x in t.lines] == EXPECTED
    echo = t.lines[1]
    assert (echo.status, echo.status_history) == ("read", "delivered 14:24:25, read 14:24:50")

    rows = list(csv.DictReader(io.StringIO(render(t, Format.CSV))))
    assert [(r["direction"], r["source"], r["text"]) for r in rows] == [(d, s, x) for d, s, _, x in EXPECTED]
    assert rows[0]["time"] == "2025-10-09 14:23:20"  # in the business's timezone
    assert rows[4]["error"] == "131026 Message undeliverable" and rows[4]["status"] == "failed"

    md = render(t, Format.MD)
    assert "a pen \\| pencil" in md and "| Slack user: U0ASHA |" in md
    page = render(t, Format.HTML)
    assert "&lt;b&gt;Saturday&lt;/b&gt;" in page and "<b>Saturday" not in page
    assert page.index("When is the exam?") < page.index("Saturday 10am") < page.index("Bring your admit card")

    with pytest.raises(ExportError, match="no contact"):
        await load_transcript(client.app[appkeys.SESSIONS], "lucknow", "919800000000")


async def test_slack_export_uploads_csv_and_html_to_the_requester(
    aiohttp_client, db_url: str, slack: SlackWithDirectMessages  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(db_url, slack_url=slack.api_url)
    client = await aiohttp_client(create_app(settings, workers=False))
    await _conversation(client)
    reply = await export_reply(client.app[appkeys.DEPS], user_id="UMANAGER", query="@ravi",
                               slack_channel="C0LUCKNOW")
    assert reply.text.startswith(f"Sent you the transcript of Conversation with {isolate('Ravi')} (+919812345678)")
    [upload] = [m for m in slack.messages("DMANAGER") if m.get("files")]
    names = [f["name"] for f in upload["files"]]
    assert names == ["transcript-lucknow-919812345678.csv", "transcript-lucknow-919812345678.html"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as http, \
            http.get(upload["files"][0]["url_private_download"]) as resp:
        body = await resp.text()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["author"] for r in rows][:3] == ["Ravi", "phone app", "Asha Verma (U0ASHA)"]

    missing = await export_reply(client.app[appkeys.DEPS], user_id="UMANAGER", query="+44 7700 900123")
    assert missing.text == "Nothing to export: no contact '+44 7700 900123'"


async def test_export_command_writes_the_format_of_the_file_name(
    aiohttp_client, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'export.db'}")
    client = await aiohttp_client(create_app(settings, workers=False))
    await _conversation(client)
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    out = tmp_path / "ravi.md"
    code = await asyncio.to_thread(main, ["--config", str(config), "export", "--channel", "lucknow",
                                          "--contact", "9812345678", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert text.startswith("# Conversation with Ravi (+919812345678) on lucknow")
    assert text.count("\n| 20") == len(EXPECTED)


def test_numbers_are_read_the_way_people_type_them() -> None:
    assert normalize_number("+91 98123-45678", "IN") == CUSTOMER
    assert normalize_number("098123 45678", "IN") == CUSTOMER
    assert normalize_number("9812345678", "IN") == CUSTOMER
    assert normalize_number("0044 7700 900123", "IN") == "447700900123"
