# ruff: noqa: F811  (the harness fixtures are imported, then named as parameters)
"""Connecting a WhatsApp Business App number through /onboard: one-time links, the code exchange, the stored
channel (token encrypted), the WABA subscription, the two syncs, and reports in plain words."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from bot.bridge.meta_events import EventContext, apply_event
from bot.cli.entry import main
from bot.handlers import appkeys
from bot.meta.parser import parse_delivery
from bot.onboarding import channels as onboarded
from bot.onboarding.crypto import TokenBox
from bot.onboarding.flow import InvalidSignup, channel_name, parse_signup
from bot.onboarding.links import create_link, token_hash
from bot.onboarding.slack_commands import parse_connect
from storage.models import Conversation, OnboardedChannel, OnboardingLink, SmbSync, utcnow
from storage.repository import sync_channels
from tests.harness import all_text, eventually
from tests.helpers import inbound_text
from tests.test_onboarding_harness import (  # noqa: F401  (fixtures)
    ALERTS,
    CONFIG_ID,
    MANAGER,
    PUBLIC_URL,
    SHOP_SLACK,
    TOKEN_KEY,
    Harness,
    HarnessFactory,
    fixture,
    harness,
    make_harness,
    onboarding_settings,
)

NEW_PNID = "100000000000077"
NEW_WABA = "200000000000077"
BUSINESS_TOKEN = "EAAB-business-token-never-logged-8c1f"
CODE = "signup-code-1"


def grant(h: Harness, code: str = CODE) -> None:
    """Meta's side of a finished signup: the code, and the number the business connected."""
    h.graph.add_oauth_code(code, BUSINESS_TOKEN, NEW_PNID, NEW_WABA)
    h.graph.add_phone_number(NEW_PNID, NEW_WABA, display_phone_number="+91 98100 00077",
                             verified_name="Sharma Sweets")


async def new_link(h: Harness, *, name: str | None = None) -> str:
    token, _ = await create_link(h.sessions, slack_channel=SHOP_SLACK, channel_name=name, requested_by=MANAGER)
    return token


async def complete(h: Harness, token: str, code: str = CODE) -> tuple[int, dict[str, Any]]:
    resp = await h.client.post("/onboard/complete", json={"token": token, "code": code, "waba_id": NEW_WABA,
                                                          "phone_number_id": NEW_PNID})
    return resp.status, await resp.json()


async def test_full_onboarding_stores_the_channel_with_its_token_encrypted_and_never_logged(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness
    grant(h)
    token = await new_link(h)
    page = await h.client.get(f"/onboard?t={token}")
    html = await page.text()
    assert page.status == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert CONFIG_ID in html and "whatsapp_business_app_onboarding" in html and "sessionInfoVersion" in html

    status, answer = await complete(h, token)

    assert status == 200 and answer["connected"] is True, answer
    assert [s["step"] for s in answer["steps"]] == ["token", "number", "store", "subscribe",
                                                     "sync:smb_app_state_sync", "sync:history"]
    assert all(s["ok"] for s in answer["steps"])
    [row] = await h.rows(OnboardedChannel)
    assert (row.name, row.phone_number_id, row.waba_id, row.mode, row.mps, row.slack_channel) == (
        "sharma-sweets", NEW_PNID, NEW_WABA, "coexistence", 5, SHOP_SLACK)
    assert BUSINESS_TOKEN not in row.token_ciphertext
    assert TokenBox(TOKEN_KEY).open(row.token_ciphertext) == BUSINESS_TOKEN
    # Meta's side: subscribed, both syncs asked for once, and no /register for a Business App number.
    assert h.graph.subscribed_apps[NEW_WABA]
    assert h.graph.register_calls == []
    requested = {s: r for p, s, r in h.graph.smb_sync_requests if p == NEW_PNID}
    assert set(requested) == {"smb_app_state_sync", "history"}
    syncs = {s.sync_type: s for s in await h.rows(SmbSync)}
    assert {t: (s.request_id, s.state) for t, s in syncs.items()} == {
        t: (r, "requested") for t, r in requested.items()}
    # In use at once: a customer's message to the new number opens a thread in its Slack channel.
    channel = h.settings.channel_by_phone_number_id(NEW_PNID)
    assert channel is not None and channel.access_token == BUSINESS_TOKEN
    msg = inbound_text("wamid.NEW1", "Do you deliver?", wa_id="919800000001")
    msg["entry"][0]["id"] = NEW_WABA
    msg["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = NEW_PNID
    await h.webhook(msg)
    await eventually(lambda: h.parents(SHOP_SLACK))
    notice = await eventually(lambda: h.slack.messages(ALERTS))
    assert "sharma-sweets" in all_text(notice[0]) and ":white_check_mark:" in notice[0]["text"]
    # The token was never logged, nor shown on the page or in Slack.
    assert BUSINESS_TOKEN not in caplog.text
    assert h.graph.app_secret not in caplog.text and CODE not in caplog.text
    assert BUSINESS_TOKEN not in str(answer) and all(BUSINESS_TOKEN not in all_text(m) for m in notice)
    # The link is spent.
    again, refused = await complete(h, token)
    assert again == 410 and "already used" in refused["message"]
    assert (await h.client.get(f"/onboard?t={token}")).status == 410


async def test_failed_token_exchange_is_reported_clearly_and_the_link_stays_usable(harness: Harness) -> None:
    h = harness
    grant(h)
    token = await new_link(h)

    status, answer = await complete(h, token, code="expired-code")

    assert status == 200 and answer["connected"] is False and answer["retry"] is True
    [step] = answer["steps"]
    assert step["step"] == "token" and not step["ok"]
    assert "Facebook did not accept the sign-in" in step["message"] and "again" in step["message"]
    assert "try again" in answer["message"]
    assert await h.count(OnboardedChannel) == 0 and await h.count(SmbSync) == 0
    assert h.graph.subscribed_apps.get(NEW_WABA) is None
    notice = await eventually(lambda: h.slack.messages(ALERTS))
    text = all_text(notice[0])
    assert ":x: Connecting a WhatsApp number failed" in text and "Facebook did not accept the sign-in" in text
    assert "Invalid verification code format" in text  # Meta's own words, for whoever fixes it
    # Nothing was stored, so the same link works for the next try.
    status, answer = await complete(h, token)
    assert answer["connected"] is True


async def test_page_refuses_unknown_expired_and_used_links(harness: Harness) -> None:
    h = harness
    assert (await h.client.get("/onboard?t=not-a-link")).status == 404
    assert (await h.client.get("/onboard")).status == 404
    token = await new_link(h)
    async with h.sessions() as s, s.begin():
        await s.execute(update(OnboardingLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    page = await h.client.get(f"/onboard?t={token}")
    text = await page.text()
    assert page.status == 410 and "expired" in text
    assert "ask the person who sent it to you for a new link" in text and "/campaign" not in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    status, answer = await complete(h, token)
    assert status == 410 and answer["connected"] is False
    [row] = await h.rows(OnboardingLink)
    assert row.token_hash == token_hash(token) and token not in (row.outcome or "")


async def test_number_already_in_app_yaml_is_not_taken_over(harness: Harness) -> None:
    h = harness
    configured = h.settings.channels[0]
    h.graph.add_oauth_code(CODE, BUSINESS_TOKEN, configured.phone_number_id, configured.waba_id)
    token = await new_link(h)
    resp = await h.client.post("/onboard/complete", json={
        "token": token, "code": CODE, "waba_id": configured.waba_id, "phone_number_id": configured.phone_number_id})
    answer = await resp.json()
    assert answer["connected"] is False
    assert any("already connected" in s["message"] for s in answer["steps"])
    assert h.settings.channels[0] is configured and await h.count(OnboardedChannel) == 0


async def test_other_processes_use_the_new_number_at_once_and_merge_it_within_seconds(
        make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onboarded, "REFRESH_SECONDS", 3600.0)
    first = await make_harness()
    idle = await make_harness(slack=first.slack, graph=first.graph, run_migrations=False)
    monkeypatch.setattr(onboarded, "REFRESH_SECONDS", 0.2)
    polling = await make_harness(slack=first.slack, graph=first.graph, run_migrations=False)
    grant(first)
    assert (await complete(first, await new_link(first)))[1]["connected"]
    # A process that has not refreshed yet takes the channel on sight of its first webhook.
    stale = onboarding_settings(first.settings.database_url, first.graph, first.slack)
    stale_ids = await sync_channels(first.sessions, stale.channels)
    msg = inbound_text("wamid.NEW2", "Hello?", wa_id="919800000002")
    msg["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = NEW_PNID
    async with first.sessions() as session, session.begin():
        for event in parse_delivery(msg):
            await apply_event(session, EventContext(settings=stale, channel_ids=stale_ids), event)
    assert await idle.count(Conversation) == 1
    assert stale_ids[NEW_PNID] == first.app[appkeys.CHANNEL_IDS][NEW_PNID]
    assert stale.channel_by_phone_number_id(NEW_PNID) is not None
    assert idle.settings.channel_by_phone_number_id(NEW_PNID) is None  # its refresh is an hour away
    # The periodic refresh brings it to a process that has seen no webhook for it ...
    await eventually(lambda: polling.settings.channel_by_phone_number_id(NEW_PNID))
    assert polling.app[appkeys.CHANNEL_IDS][NEW_PNID] == first.app[appkeys.CHANNEL_IDS][NEW_PNID]
    # ... and a process starting later has it from the start.
    later = await make_harness(slack=first.slack, graph=first.graph, run_migrations=False)
    assert later.settings.channel_by_phone_number_id(NEW_PNID) is not None


async def test_connect_command_gives_managers_a_one_time_link(harness: Harness) -> None:
    h = harness
    assert await h.command(f"connect <#{SHOP_SLACK}|shop> sharma", user="USOMEONE") == 200
    assert await h.count(OnboardingLink) == 0  # not a manager: refused before anything is made
    assert await h.command(f"connect <#{SHOP_SLACK}|shop> sharma") == 200
    reply = await eventually(lambda: [r for r in h.responses() if PUBLIC_URL in r])
    url = reply[0].split(PUBLIC_URL, 1)[1].split()[0]
    assert url.startswith("/onboard?t=")
    [link] = await h.rows(OnboardingLink)
    assert (link.slack_channel, link.channel_name, link.requested_by) == (SHOP_SLACK, "sharma", MANAGER)
    assert link.token_hash == token_hash(url.split("t=", 1)[1])
    assert (await h.client.get(url)).status == 200


def test_connect_arguments() -> None:
    assert parse_connect("<#C0SHOP|shop> sweets", None) == ("C0SHOP", "sweets")
    assert parse_connect("", "C0HERE") == ("C0HERE", None)
    assert "Pick the channel" in str(parse_connect("#shop", None))
    assert "Say which Slack channel" in str(parse_connect("", None))


def test_signup_result_and_names() -> None:
    assert parse_signup({"code": "c", "waba_id": "2", "phone_number_id": "1"}).phone_number_id == "1"
    with pytest.raises(InvalidSignup, match="which phone number"):
        parse_signup({"code": "c", "waba_id": "2"})
    assert channel_name(None, "Sharma Sweets & Co.", "+91 1", {"sharma-sweets-co"}) == "sharma-sweets-co-2"
    assert channel_name(None, "", "+91 98100 00077", set()) == "wa-919810000077"
    assert channel_name("shop", "X", "", set()) == "shop"


def test_cli_connect_prints_a_one_time_link(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "w.db"
    config = tmp_path / "app.yaml"
    config.write_text(f"""
database_url: sqlite+aiosqlite:///{db}
server: {{public_url: "{PUBLIC_URL}"}}
meta: {{app_id: "1", app_secret: s, verify_token: v, embedded_signup_config_id: "9", token_key: "{TOKEN_KEY}"}}
slack: {{bot_token: xoxb-1, signing_secret: s}}
""")
    assert main(["--config", str(config), "connect", "--slack-channel", "C0SHOP", "--name", "shop"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith(f"{PUBLIC_URL}/onboard?t=")
    assert main(["--config", str(config), "connect", "--slack-channel", "#shop"]) == 1


async def test_syncs_asked_for_at_onboarding_follow_the_webhooks_that_answer_them(harness: Harness) -> None:
    h = harness
    grant(h)
    assert (await complete(h, await new_link(h)))[1]["connected"]
    chunk = fixture("history_phase0_chunk1.json")
    contacts = fixture("state_sync_rename.json")
    for payload in (chunk, contacts):
        payload["entry"][0]["id"] = NEW_WABA
        payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = NEW_PNID
    await h.webhook(chunk)
    await h.webhook(contacts)

    async def answered() -> dict[str, SmbSync] | None:
        rows = {s.sync_type: s for s in await h.rows(SmbSync)}
        return rows if all(s.state != "requested" for s in rows.values()) else None

    rows = await eventually(answered)
    assert len(rows) == 2 and all(s.request_id for s in rows.values())  # the same rows the requests made
    assert (rows["history"].state, rows["history"].progress, rows["history"].items) == ("in_progress", 20, 2)
    assert rows["smb_app_state_sync"].state == "completed"
    progress = await eventually(lambda: [m for m in h.slack.messages(ALERTS) if "History import" in m["text"]])
    assert "sharma-sweets" in progress[0]["text"] and "20%" in progress[0]["text"]
    assert h.parents(SHOP_SLACK) == []  # history is not posted one by one
