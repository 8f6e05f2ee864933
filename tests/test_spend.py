"""Spend: pricing objects from status webhooks, priced by the recipient's country, category and fee."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bot.app.factory import create_app
from bot.core.config import PricingSettings
from bot.handlers import appkeys
from bot.handlers.slack_ops import spend_reply
from bot.ops.spend import (
    PricedMessage,
    compute_spend,
    is_billable,
    parse_month,
    region_of,
    render_text,
    spend_for_month,
)
from tests.harness import drain_webhooks, post_webhook
from tests.helpers import echo_text, make_settings, status

PRICING = {"currency": "INR", "platform_fee": 0.20,
           "rates": {"IN": {"marketing": 0.86, "utility": 0.115, "authentication": 0.115, "service": 0},
                     "GB": {"marketing": 4.50}}}
IST = ZoneInfo("Asia/Kolkata")
IN_1, IN_2, GB, US = "919812345678", "919800000001", "447700900123", "15551234567"


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _pricing(category: str, billable: bool = True) -> dict[str, Any]:
    kind = "regular" if billable else "free_customer_service"
    return {"billable": billable, "pricing_model": "PMP", "category": category, "type": kind}




async def test_spend_totals_come_from_pricing_objects_on_statuses(aiohttp_client, db_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(db_url, pricing=PRICING)
    client = await aiohttp_client(create_app(settings, workers=False))
    july = _ts("2025-07-10T10:00:00+05:30")
    sent = [  # (wamid, recipient, category, billable, statuses)
        ("wamid.M1", IN_1, "marketing", True, ["sent", "delivered", "read"]),
        ("wamid.M2", IN_2, "marketing", True, ["sent", "delivered"]),
        ("wamid.U1", IN_1, "utility", True, ["sent"]),
        ("wamid.S1", IN_2, "service", False, ["sent", "delivered"]),
        ("wamid.G1", GB, "marketing", True, ["sent"]),
        ("wamid.X1", US, "marketing", True, ["sent"]),  # no US rate configured
    ]
    for i, (wamid, to, category, billable, states) in enumerate(sent):
        await post_webhook(client, echo_text(wamid, f"message {i}", to=to, ts=july + i))
        for j, state in enumerate(states):
            await post_webhook(client, status(wamid, state, recipient=to, ts=july + i + 10 * j,
                                       pricing=_pricing(category, billable)))
    # A status for a message sent in June must not count in July, even when it arrives in July.
    await post_webhook(client, status("wamid.JUNE", "sent", recipient=IN_1, ts=_ts("2025-06-30T23:59:00+05:30"),
                               pricing=_pricing("marketing")))
    await post_webhook(client, status("wamid.JUNE", "read", recipient=IN_1, ts=_ts("2025-07-01T00:05:00+05:30"),
                               pricing=_pricing("marketing")))
    await drain_webhooks(client.app)

    label, report = await spend_for_month(client.app[appkeys.SESSIONS], settings.pricing, settings.timezone,
                                          "2025-07", default_region="IN")
    assert label == "2025-07"
    rows = {(r.channel, r.category): r for r in report.rows}
    assert set(rows) == {("lucknow", "marketing"), ("lucknow", "utility"), ("lucknow", "service")}
    marketing = rows[("lucknow", "marketing")]
    assert (marketing.messages, marketing.billable, marketing.unpriced) == (4, 4, 1)
    assert marketing.meta_cost == Decimal("0.86") * 2 + Decimal("4.50")
    assert marketing.fees == Decimal("0.20") * 4
    assert rows[("lucknow", "utility")].total == Decimal("0.315")
    assert (rows[("lucknow", "service")].messages, rows[("lucknow", "service")].total) == (1, Decimal(0))
    assert report.total == Decimal("0.86") * 2 + Decimal("4.50") + Decimal("0.115") + Decimal("0.20") * 5

    reply = await spend_reply(client.app[appkeys.DEPS], "2025-07")
    assert reply.text == "Spend 2025-07: INR 7.34 (lucknow INR 7.34)"
    assert "* 1 billable message(s) have no rate in pricing.rates" in reply.blocks[1]["text"]["text"]
    assert (await spend_reply(client.app[appkeys.DEPS], "July")).text.startswith("month must look like")

    _, june = await spend_for_month(client.app[appkeys.SESSIONS], settings.pricing, settings.timezone,
                                    "2025-06")
    assert [(r.channel, r.category, r.messages) for r in june.rows] == [("unknown", "marketing", 1)]


def test_compute_spend_groups_by_month_in_the_business_timezone() -> None:
    pricing = PricingSettings.model_validate(PRICING)
    late_july_utc = datetime(2025, 7, 31, 20, 0, tzinfo=UTC)  # 1 August 01:30 in India
    messages = [
        PricedMessage("a", late_july_utc, "lucknow", "marketing", True, IN_1),
        PricedMessage("b", datetime(2025, 7, 31, 12, 0, tzinfo=UTC), "lucknow", "MARKETING", True, IN_1),
        PricedMessage("c", datetime(2025, 7, 5, tzinfo=UTC), "kanpur", "authentication", True, IN_2),
    ]
    report = compute_spend(messages, pricing, IST)
    assert [(r.month, r.channel, r.category, r.billable) for r in report.rows] == [
        ("2025-07", "kanpur", "authentication", 1), ("2025-07", "lucknow", "marketing", 1),
        ("2025-08", "lucknow", "marketing", 1)]
    assert report.by_channel() == {"kanpur": Decimal("0.315"), "lucknow": Decimal("2.12")}
    text = render_text(report, "2025-07..08")
    assert "total: 3 messages, 3 billable, INR 2.44" in text


def test_rates_fall_back_to_the_any_country_entry_and_regions_come_from_numbers() -> None:
    pricing = PricingSettings.model_validate({"rates": {"*": {"marketing": 1.0}, "IN": {"marketing": 0.5}}})
    report = compute_spend([PricedMessage("a", datetime(2025, 7, 1, tzinfo=UTC), "x", "marketing", True, US),
                            PricedMessage("b", datetime(2025, 7, 1, tzinfo=UTC), "x", "marketing", True, IN_1)],
                           pricing, IST)
    assert report.total == Decimal("1.5")
    assert [region_of(n) for n in (IN_1, GB, US)] == ["IN", "GB", "US"]


def test_billable_follows_pricing_type_when_meta_sends_it() -> None:
    assert is_billable({"billable": True, "type": "regular", "category": "marketing"})
    assert not is_billable({"billable": True, "type": "free_entry_point", "category": "service"})
    assert not is_billable({"type": "free_customer_service", "category": "service"})
    assert is_billable({"billable": True, "category": "utility"})  # before pricing.type existed


def test_month_bounds_are_local_midnights() -> None:
    start, end, label = parse_month("2025-12", datetime(2025, 7, 1, tzinfo=UTC), IST)
    assert (start, end, label) == (datetime(2025, 11, 30, 18, 30, tzinfo=UTC),
                                   datetime(2025, 12, 31, 18, 30, tzinfo=UTC), "2025-12")
    assert parse_month(None, datetime(2025, 7, 31, 20, 0, tzinfo=UTC), IST)[2] == "2025-08"


async def test_campaign_spend_in_slack_answers_managers_only(aiohttp_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.app.slack_component import make_slack_component
    from bot.standins.slack import SlackStandin
    from tests.helpers import BOT_TOKEN, SIGNING_SECRET

    async with SlackStandin(bot_token=BOT_TOKEN) as slack:
        settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'slash.db'}", slack_url=slack.api_url,
                                 pricing=PRICING)
        client = await aiohttp_client(create_app(settings, workers=False,
                                                 components=[make_slack_component(outbox=False)]))
        july = _ts("2025-07-10T10:00:00+05:30")
        await post_webhook(client, echo_text("wamid.M1", "offer", to=IN_1, ts=july))
        await post_webhook(client, status("wamid.M1", "delivered", recipient=IN_1, ts=july + 5,
                                   pricing=_pricing("marketing")))
        await drain_webhooks(client.app)
        url = str(client.make_url("/slack/events"))

        code, body = await slack.send_slash_command(url, "/campaign", "spend 2025-07", user_id="USOMEONE",
                                                    channel_id="C0LUCKNOW", signing_secret=SIGNING_SECRET)
        assert code == 200 and "Only campaign managers" in body
        code, body = await slack.send_slash_command(url, "/campaign", "spend 2025-07", user_id="UMANAGER",
                                                    channel_id="C0LUCKNOW", signing_secret=SIGNING_SECRET)
        assert code == 200 and "Working on it" in body
        for _ in range(100):
            answers = slack.calls_to("response_url")
            if answers:
                break
            await asyncio.sleep(0.05)
        [answer] = slack.calls_to("response_url")
        assert answer.args["text"] == "Spend 2025-07: INR 1.06 (lucknow INR 1.06)"
        assert answer.args["response_type"] == "ephemeral"
