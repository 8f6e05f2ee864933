"""doctor: every check against the stand-ins, failing on a missing webhook field and passing once fixed;
phone-number quality alerts once per change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.app.factory import create_app
from bot.cli.entry import main
from bot.core.config import Settings
from bot.handlers import appkeys
from bot.handlers.slack_ops import doctor_reply
from bot.meta.graph import GraphClient
from bot.ops.doctor import (
    REQUIRED_SLACK_SCOPES,
    USEFUL_SLACK_SCOPES,
    DoctorEnv,
    Severity,
    all_passed,
    check_error_counts,
    check_throughput,
    check_traffic,
    run_doctor,
)
from bot.standins.graph import DEFAULT_APP_FIELDS, GraphStandin
from bot.standins.slack import SlackStandin
from storage.models import MessageStatus, SlackOutbox, utcnow
from tests.harness import drain_webhooks, post_webhook
from tests.helpers import (
    APP_SECRET,
    BOT_TOKEN,
    PNID,
    WA_TOKEN,
    WABA,
    echo_text,
    envelope,
    inbound_text,
    make_settings,
)


@pytest.fixture
async def standins() -> AsyncIterator[tuple[GraphStandin, SlackStandin]]:
    async with GraphStandin(app_secret=APP_SECRET, tokens={WA_TOKEN: [PNID, WABA]}) as graph, \
            SlackStandin(bot_token=BOT_TOKEN, scopes=REQUIRED_SLACK_SCOPES) as slack:
        graph.add_phone_number(PNID, WABA, is_on_biz_app=True, platform_type="CLOUD_API")
        async with GraphClient(graph.base_url, "v23.0") as client:
            assert await client.subscribe_app(WABA, WA_TOKEN)
        yield graph, slack




async def _doctor(settings: Settings, app) -> list[Any]:  # type: ignore[no-untyped-def]
    slack = AsyncWebClient(token=settings.slack.bot_token, base_url=settings.slack.api_url)
    async with GraphClient(settings.meta.graph_url, settings.meta.api_version) as graph:
        return await run_doctor(DoctorEnv(settings, app[appkeys.SESSIONS], graph, slack))


def _by_name(results: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in results}


async def test_doctor_fails_on_missing_echo_field_and_passes_once_subscribed(
    aiohttp_client, db_url: str, redis_url: str, standins: tuple[GraphStandin, SlackStandin],  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph, slack = standins
    settings = make_settings(db_url, redis_url=redis_url, graph_url=graph.base_url, slack_url=slack.api_url)
    client = await aiohttp_client(create_app(settings, workers=False))
    await post_webhook(client, inbound_text("wamid.IN1", "Is the batch full?"))
    await post_webhook(client, echo_text("wamid.ECHO1", "Not yet"))
    graph.set_app_fields([f for f in DEFAULT_APP_FIELDS if f != "smb_message_echoes"])

    results = _by_name(await _doctor(settings, client.app))
    fields = results["webhook fields"]
    assert not fields.ok
    assert fields.detail.startswith("missing webhook field: smb_message_echoes")
    assert "App Dashboard > WhatsApp > Configuration > Webhook fields: subscribe smb_message_echoes" in fields.fix
    assert "/300000000000001/subscriptions' -d object=whatsapp_business_account" in fields.fix
    others = [r for name, r in results.items() if name != "webhook fields"]
    assert all(r.ok for r in others), [r for r in others if not r.ok]
    assert results["lucknow: access token"].detail.startswith("valid, scoped for WhatsApp")
    assert results["redis"].detail == "reachable"
    assert "Wabridge defaults Coexistence numbers to 5" in results["lucknow: throughput"].detail

    reply = await doctor_reply(client.app[appkeys.DEPS])
    assert reply.text == "Doctor: 1 check(s) failed"
    first = reply.blocks[1]["text"]["text"]
    assert first.startswith(":x: *webhook fields*: missing webhook field: smb_message_echoes")
    assert "_fix:_ App Dashboard &gt; WhatsApp &gt; Configuration &gt; Webhook fields" in first

    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    assert await asyncio.to_thread(main, ["--config", str(config), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL webhook fields: missing webhook field: smb_message_echoes" in out
    assert "fix: App Dashboard > WhatsApp > Configuration > Webhook fields" in out

    graph.set_app_fields(DEFAULT_APP_FIELDS)
    assert all_passed(await _doctor(settings, client.app))
    assert await asyncio.to_thread(main, ["--config", str(config), "doctor"]) == 0
    assert "all checks passed" in capsys.readouterr().out


async def test_doctor_reports_what_is_broken_on_meta_and_slack(
    aiohttp_client, db_url: str, standins: tuple[GraphStandin, SlackStandin]  # type: ignore[no-untyped-def]
) -> None:
    graph, slack = standins
    settings = make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url)
    client = await aiohttp_client(create_app(settings, workers=False))
    graph.subscribed_apps.clear()
    graph.revoke_token(WA_TOKEN)
    slack.scopes = [s for s in slack.scopes if s != "files:write"]
    async with client.app[appkeys.SESSIONS]() as s, s.begin():
        s.add(MessageStatus(wamid="wamid.P", status="failed", wa_timestamp=utcnow(), error_code=131042,
                            error_title="Business eligibility payment issue"))

    results = _by_name(await _doctor(settings, client.app))
    failing = {name for name, r in results.items() if not r.ok}
    assert failing == {"lucknow: access token", "lucknow: app subscribed to WABA", "lucknow: throughput",
                       "last webhook", "131042 payment errors (24 h)", "slack scopes"}
    assert results["slack scopes"].detail == "missing: files:write"
    assert "Payment methods" in results["131042 payment errors (24 h)"].fix
    assert "subscribed_apps" in results["lucknow: app subscribed to WABA"].fix
    assert results["redis"].ok and results["redis"].detail.startswith("not configured")


async def test_phone_number_quality_alert_is_raised_once_per_change(
    aiohttp_client, db_url: str  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    states = [("FLAGGED", "TIER_2K"), ("FLAGGED", "TIER_2K"), ("UNFLAGGED", "TIER_2K"), ("DOWNGRADE", "TIER_250")]
    for event, limit in states:
        await post_webhook(client, envelope("phone_number_quality_update", {
            "display_phone_number": "915224000000", "event": event, "current_limit": limit}))
        await drain_webhooks(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        alerts = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "alert")
                                  .order_by(SlackOutbox.id))).all()
    assert [a.payload["state"] for a in alerts] == ["FLAGGED/TIER_2K", "UNFLAGGED/TIER_2K", "DOWNGRADE/TIER_250"]
    assert "slow down marketing" in alerts[0].payload["text"]
    assert alerts[2].payload["text"].startswith("915224000000 had its messaging limit lowered; messaging limit now "
                                                "250 customers a day.")


def test_doctor_asks_for_exactly_the_scopes_of_the_app_manifest() -> None:
    manifest = yaml.safe_load((Path(__file__).parent.parent / "slack-manifest.yaml").read_text())
    assert sorted(REQUIRED_SLACK_SCOPES + USEFUL_SLACK_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"])


def _channel(mode: str, mps: int = 0) -> Any:
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    raw = settings.channels[0].model_dump(mode="json") | {"mode": mode, "mps": mps}
    return type(settings.channels[0]).model_validate(raw)


def test_throughput_check_compares_configured_mps_with_meta() -> None:
    coexistence = check_throughput(_channel("coexistence"), {"throughput": {"level": "STANDARD"}})
    too_fast = check_throughput(_channel("coexistence", 50), {"throughput": {"level": "STANDARD"}})
    cloud = check_throughput(_channel("cloud_api"), {"throughput": {"level": "STANDARD"}})
    high = check_throughput(_channel("cloud_api", 200), {"throughput": {"level": "HIGH"}})
    assert coexistence.ok and "below Meta's 20" in coexistence.detail
    assert not too_fast.ok and too_fast.fix == "set channels[lucknow].mps to 20 or less"
    assert cloud.ok and "= Meta's 80" in cloud.detail
    assert high.ok and "below Meta's 1000" in high.detail


def test_silent_echo_feed_on_a_busy_coexistence_number_is_a_warning() -> None:
    now = datetime(2025, 7, 20, tzinfo=UTC)
    silent = check_traffic(now - timedelta(minutes=5), now - timedelta(days=9), now - timedelta(minutes=5),
                           True, now)
    quiet = check_traffic(now - timedelta(days=12), now - timedelta(days=12), now - timedelta(days=12), True, now)
    cloud = check_traffic(now - timedelta(minutes=5), None, now - timedelta(minutes=5), False, now)
    assert silent[1].level is Severity.WARN and "smb_message_echoes" in silent[1].fix
    assert [r.level for r in quiet] == [Severity.OK, Severity.OK]
    assert [r.name for r in cloud] == ["last webhook"]
    assert [r.level for r in check_error_counts(0, 3)] == [Severity.OK, Severity.WARN]
