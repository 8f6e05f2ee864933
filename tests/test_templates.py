"""Templates: sync with pagination, status and quality webhooks with alerts, copy between two WABAs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from bot.app.factory import create_app
from bot.cli.entry import main
from bot.handlers import appkeys
from bot.meta.graph import GraphClient
from bot.ops.templates import CopyOutcome, CopyResult, copy_templates, create_payload, sync_templates
from bot.standins.graph import GraphStandin
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import SlackOutbox, Template
from tests.helpers import APP_SECRET, WABA, envelope, make_settings, signed

WABA_B = "200000000000002"
PNID_B = "100000000000002"
TOKEN_B = "EAAG-token-b"


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the network and remembers their paths."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def graph() -> AsyncIterator[GraphStandin]:
    async with GraphStandin(app_secret=APP_SECRET) as standin:
        yield standin


def two_channel_settings(db_url: str, graph_url: str) -> Any:
    settings = make_settings(db_url, graph_url=graph_url)
    raw = settings.model_dump(mode="json")
    raw["channels"].append({"name": "kanpur", "phone_number_id": PNID_B, "waba_id": WABA_B,
                            "mode": "cloud_api", "access_token": TOKEN_B, "slack_channel": "C0KANPUR"})
    return type(settings).model_validate(raw)


async def _sessions(db_url: str):  # type: ignore[no-untyped-def]
    await migrate(db_url)
    engine = make_engine(db_url)
    return engine, make_sessionmaker(engine)


async def _templates(sessions, waba: str) -> dict[tuple[str, str], Template]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        rows = (await s.scalars(select(Template).where(Template.waba_id == waba))).all()
    return {(t.name, t.language): t for t in rows}


async def test_sync_follows_every_page_and_mirrors_changes(db_url: str, graph: GraphStandin) -> None:
    for i in range(7):
        graph.add_template(WABA, f"notice_{i}", "en", category="UTILITY", body=f"Notice {i}: {{{{1}}}}")
    graph.templates[WABA][2]["quality_score"] = {"score": "YELLOW", "date": 1751275500}
    graph.add_template(WABA_B, "other_waba", "en")
    settings = make_settings(db_url, graph_url=graph.base_url)
    engine, sessions = await _sessions(db_url)
    transport = CountingTransport()
    client = GraphClient(graph.base_url, "v23.0", transport=transport)
    try:
        [result] = await sync_templates(sessions, client, settings.channels, page_size=3)
        assert (result.fetched, result.created, result.updated, result.removed) == (7, 7, 0, 0)
        listings = [p for p in transport.paths if p.endswith(f"/{WABA}/message_templates")]
        assert len(listings) == 3  # 3 + 3 + 1
        stored = await _templates(sessions, WABA)
        assert sorted(name for name, _ in stored) == [f"notice_{i}" for i in range(7)]
        assert stored[("notice_2", "en")].quality == "YELLOW"
        assert stored[("notice_0", "en")].components == [{"type": "BODY", "text": "Notice 0: {{1}}"}]
        assert (stored[("notice_0", "en")].category, stored[("notice_0", "en")].status) == ("UTILITY",
                                                                                            "APPROVED")

        graph.set_template_status(WABA, "notice_1", "en", "PAUSED")
        graph.templates[WABA] = [t for t in graph.templates[WABA] if t["name"] != "notice_6"]
        [again] = await sync_templates(sessions, client, settings.channels, page_size=3)
        assert (again.fetched, again.created, again.updated, again.removed) == (6, 0, 1, 1)
        stored = await _templates(sessions, WABA)
        assert stored[("notice_1", "en")].status == "PAUSED"
        assert ("notice_6", "en") not in stored
        assert await _templates(sessions, WABA_B) == {}
    finally:
        await client.aclose()
        await engine.dispose()


async def _drain(app) -> None:  # type: ignore[no-untyped-def]
    from bot.bridge.meta_events import EventContext
    from bot.bridge.webhook_worker import WebhookWorker

    worker = WebhookWorker(app[appkeys.SESSIONS],
                           lambda: EventContext(app[appkeys.SETTINGS], app[appkeys.CHANNEL_IDS]),
                           app[appkeys.METRICS])
    while await worker.process_available():
        pass


async def _post(client, payload: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    body, headers = signed(payload)
    resp = await client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 200


def _template_status(event: str, reason: str = "NONE") -> dict[str, Any]:
    return envelope("message_template_status_update", {
        "event": event, "message_template_id": 1689556908129835, "message_template_name": "fee_reminder",
        "message_template_language": "en", "reason": reason, "message_template_category": "UTILITY"})


def _template_quality(previous: str, new: str) -> dict[str, Any]:
    return envelope("message_template_quality_update", {
        "previous_quality_score": previous, "new_quality_score": new, "message_template_id": 1689556908129835,
        "message_template_name": "fee_reminder", "message_template_language": "en"})


async def _alerts(app, kind: str) -> list[SlackOutbox]:  # type: ignore[no-untyped-def]
    async with app[appkeys.SESSIONS]() as s:
        rows = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "alert")
                                .order_by(SlackOutbox.id))).all()
    return [r for r in rows if r.payload["alert"] == kind]


async def test_template_status_webhook_updates_the_template_and_alerts_once(
    aiohttp_client, db_url: str  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    async with app[appkeys.SESSIONS]() as s, s.begin():
        s.add(Template(waba_id=WABA, name="fee_reminder", language="en", category="UTILITY", status="PENDING",
                       components=[]))
    await _post(client, _template_status("REJECTED", "INVALID_FORMAT"))
    await _post(client, _template_status("REJECTED", "INVALID_FORMAT"))  # Meta's retry
    await _drain(app)
    stored = await _templates(app[appkeys.SESSIONS], WABA)
    assert (stored[("fee_reminder", "en")].status, stored[("fee_reminder", "en")].rejected_reason) == (
        "REJECTED", "INVALID_FORMAT")
    [alert] = await _alerts(app, "template_status")
    assert alert.thread_key == "alerts"
    assert alert.payload["text"] == "fee_reminder (en) was rejected (reason: INVALID_FORMAT)"

    await _post(client, _template_status("APPROVED"))
    await _drain(app)
    alerts = await _alerts(app, "template_status")
    assert [a.payload["state"] for a in alerts] == ["REJECTED", "APPROVED"]


async def test_template_quality_alerts_once_per_change(aiohttp_client, db_url: str) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    async with app[appkeys.SESSIONS]() as s, s.begin():
        s.add(Template(waba_id=WABA, name="fee_reminder", language="en", category="UTILITY",
                       status="APPROVED", quality="GREEN", components=[]))
    for previous, new in [("GREEN", "YELLOW"), ("GREEN", "YELLOW"), ("YELLOW", "GREEN")]:
        await _post(client, _template_quality(previous, new))
        await _drain(app)
    alerts = await _alerts(app, "template_quality")
    assert [a.payload["state"] for a in alerts] == ["YELLOW", "GREEN"]
    assert "blocking or reporting" in alerts[0].payload["text"]
    stored = await _templates(app[appkeys.SESSIONS], WABA)
    assert stored[("fee_reminder", "en")].quality == "GREEN"


async def test_copy_reports_created_existing_and_refused_templates(db_url: str, graph: GraphStandin) -> None:
    graph.add_template(WABA, "fee_reminder", "en", body="Fees of {{1}} are due on {{2}}.")
    graph.add_template(WABA, "fee_reminder", "hi", body="{{1}} की फीस {{2}} तक जमा करें।")
    graph.add_template(WABA, "welcome", "en", category="MARKETING", body="Welcome {{first_name}}!")
    graph.add_template(WABA, "zz_results", "en", body="Results are out.")
    graph.add_template(WABA_B, "welcome", "en", category="MARKETING", body="Welcome!")
    settings = two_channel_settings(db_url, graph.base_url)
    source, dest = settings.channel("lucknow"), settings.channel("kanpur")
    engine, sessions = await _sessions(db_url)
    client = GraphClient(graph.base_url, "v23.0")
    seen: list[tuple[int, int, str]] = []

    def progress(i: int, total: int, result: CopyResult) -> None:
        seen.append((i, total, result.line()))
        if i == 2:  # someone submits zz_results on the other WABA by hand while the copy runs
            graph.add_template(WABA_B, "zz_results", "en", status="PENDING", body="Results!")

    try:
        results = await copy_templates(sessions, client, source, dest, progress)
    finally:
        await client.aclose()
    outcomes = {(r.name, r.language): r for r in results}
    assert {k: r.outcome for k, r in outcomes.items()} == {
        ("fee_reminder", "en"): CopyOutcome.CREATED, ("fee_reminder", "hi"): CopyOutcome.CREATED,
        ("welcome", "en"): CopyOutcome.EXISTS, ("zz_results", "en"): CopyOutcome.FAILED}
    assert outcomes[("zz_results", "en")].detail == "Content for zz_results in en already exists."
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    on_b = {(t["name"], t["language"]): t for t in graph.templates[WABA_B]}
    assert on_b[("fee_reminder", "hi")]["components"] == [
        {"type": "BODY", "text": "{{1}} की फीस {{2}} तक जमा करें।"}]
    assert on_b[("welcome", "en")]["components"] == [{"type": "BODY", "text": "Welcome!"}]  # untouched
    stored_b = await _templates(sessions, WABA_B)
    assert stored_b[("fee_reminder", "en")].status == "PENDING"
    await engine.dispose()


def test_payload_for_authentication_template_uses_presets_not_text() -> None:
    listed = {"name": "login_code", "language": "en_US", "category": "AUTHENTICATION", "components": [
        {"type": "BODY", "text": "*{{1}}* is your verification code. For your security, do not share this code.",
         "add_security_recommendation": True},
        {"type": "FOOTER", "text": "This code expires in 10 minutes.", "code_expiration_minutes": 10},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Copy code",
                                         "url": "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE"}]}]}
    assert create_payload(listed) == {"name": "login_code", "language": "en_US", "category": "AUTHENTICATION",
                                      "components": [
                                          {"type": "BODY", "add_security_recommendation": True},
                                          {"type": "FOOTER", "code_expiration_minutes": 10},
                                          {"type": "BUTTONS", "buttons": [
                                              {"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]}]}


def test_payload_marks_named_parameters() -> None:
    named = create_payload({"name": "welcome", "language": "en", "category": "marketing",
                            "components": [{"type": "BODY", "text": "Hi {{first_name}}"}]})
    positional = create_payload({"name": "welcome", "language": "en", "category": "MARKETING",
                                 "components": [{"type": "BODY", "text": "Hi {{1}}"}]})
    assert (named["category"], named.get("parameter_format")) == ("MARKETING", "NAMED")
    assert "parameter_format" not in positional


async def test_templates_copy_command_prints_progress_and_fails_on_a_refusal(
    tmp_path: Path, graph: GraphStandin, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_template(WABA, "fee_reminder", "en", body="Fees due {{1}}")
    graph.add_template(WABA, "no_body", "en", components=[])  # Meta refuses a template without components
    settings = two_channel_settings(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", graph.base_url)
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    code = await asyncio.to_thread(main, ["--config", str(config), "templates", "copy", "--from", "lucknow",
                                          "--to", "kanpur"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[1/2] fee_reminder (en): created: PENDING" in out
    assert "[2/2] no_body (en): failed: The parameter components is required." in out
    assert "1 created, 0 exists, 1 failed" in out


async def test_slack_templates_lists_fresh_statuses_or_the_stored_ones_when_meta_refuses(
    aiohttp_client, tmp_path: Path, graph: GraphStandin  # type: ignore[no-untyped-def]
) -> None:
    from bot.handlers.slack_ops import templates_reply

    graph.add_template(WABA, "fee_reminder", "en", body="Fees due {{1}}")
    graph.add_template(WABA, "diwali_offer", "hi", category="MARKETING", status="REJECTED", body="Offer!")
    graph.templates[WABA][1]["rejected_reason"] = "PROMOTIONAL"
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'slack.db'}", graph_url=graph.base_url)
    client = await aiohttp_client(create_app(settings, workers=False))
    deps = client.app[appkeys.DEPS]

    reply = await templates_reply(deps, slack_channel="C0LUCKNOW")
    shown = "\n".join(b["text"]["text"] for b in reply.blocks if b["type"] == "section")
    assert reply.text == "Templates: lucknow: 2 templates"
    assert "• diwali_offer (hi) · marketing · REJECTED: PROMOTIONAL\n• fee_reminder (en) · utility · APPROVED" \
        in shown

    graph.set_template_status(WABA, "fee_reminder", "en", "PAUSED")
    graph.revoke_token("anything")  # every channel token is now refused
    stale = await templates_reply(deps)
    assert "fee_reminder (en) · utility · APPROVED" in str(stale.blocks)
    assert stale.blocks[-1]["type"] == "context" and "Could not refresh from Meta" in str(stale.blocks[-1])
