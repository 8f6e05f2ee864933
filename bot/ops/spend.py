"""Estimated WhatsApp spend by month x channel x category, from the pricing objects Meta puts on statuses.

Since July 2025 Meta charges per delivered template message by category and recipient country; each
status webhook carries `pricing {billable, pricing_model, category, type}`. The estimate is: billable
messages x the configured rate for the recipient's country and category, plus the platform fee per
billable message. The maths (`compute_spend`) is pure; `load_priced_messages` is the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import PricingSettings
from storage.models import (
    Campaign,
    CampaignRecipient,
    CampaignRun,
    Channel,
    Conversation,
    Message,
    MessageStatus,
    as_utc,
)

ANY_COUNTRY = "*"  # a rates key used when the recipient's country has no entry of its own
UNKNOWN = "unknown"
LOOKBACK = timedelta(days=3)  # statuses of one message arrive within minutes; days is ample
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")


# ---- pure ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PricedMessage:
    """One outbound message as Meta priced it (one per wamid, whatever the number of statuses)."""

    wamid: str
    at: datetime  # when its first priced status happened
    channel: str
    category: str
    billable: bool
    recipient: str | None  # wa_id


@dataclass
class SpendRow:
    month: str
    channel: str
    category: str
    messages: int = 0
    billable: int = 0
    unpriced: int = 0  # billable messages with no configured rate (cost unknown)
    meta_cost: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.meta_cost + self.fees


@dataclass
class SpendReport:
    currency: str
    rows: list[SpendRow] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((r.total for r in self.rows), Decimal(0))

    @property
    def messages(self) -> int:
        return sum(r.messages for r in self.rows)

    @property
    def billable(self) -> int:
        return sum(r.billable for r in self.rows)

    @property
    def unpriced(self) -> int:
        return sum(r.unpriced for r in self.rows)

    def by_channel(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for r in self.rows:
            out[r.channel] = out.get(r.channel, Decimal(0)) + r.total
        return out


@lru_cache(maxsize=4096)
def region_of(wa_id: str | None, default: str | None = None) -> str | None:
    """ISO country of a WhatsApp ID (digits with country code), e.g. '919812345678' -> 'IN'."""
    digits = re.sub(r"\D", "", wa_id or "")
    if not digits:
        return default
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return default
    region = phonenumbers.region_code_for_number(number)
    if (not region or region == "ZZ") and number.country_code:
        # A valid country code whose number does not match a region's pattern: take the main region.
        region = phonenumbers.region_code_for_country_code(number.country_code)
    return region if region and region != "ZZ" else default


def is_billable(pricing: Mapping[str, Any]) -> bool:
    """Whether Meta charges for the message: `type` regular (the newer field), else `billable`."""
    kind = pricing.get("type")
    if kind:
        return str(kind).lower() == "regular"
    return bool(pricing.get("billable"))


def rate_for(pricing: PricingSettings, country: str | None, category: str) -> Decimal | None:
    """Meta's per-message rate for a country and category from settings, or None when not configured."""
    rates: Mapping[str, Mapping[str, float]] = pricing.rates
    table = rates.get(country or "") or rates.get(ANY_COUNTRY)
    if table is None:
        return None
    value = table.get(category.lower())
    return None if value is None else Decimal(str(value))


def month_of(at: datetime, tz: ZoneInfo) -> str:
    """YYYY-MM of a moment in the business's timezone."""
    return at.astimezone(tz).strftime("%Y-%m")


def compute_spend(messages: Iterable[PricedMessage], pricing: PricingSettings, tz: ZoneInfo,
                  default_region: str | None = None) -> SpendReport:
    """Group priced messages by month x channel x category and price the billable ones."""
    fee = Decimal(str(pricing.platform_fee))
    rows: dict[tuple[str, str, str], SpendRow] = {}
    for m in messages:
        category = (m.category or UNKNOWN).lower()
        key = (month_of(m.at, tz), m.channel, category)
        row = rows.setdefault(key, SpendRow(*key))
        row.messages += 1
        if not m.billable:
            continue
        row.billable += 1
        row.fees += fee
        rate = rate_for(pricing, region_of(m.recipient, default_region), category)
        if rate is None:
            row.unpriced += 1
        else:
            row.meta_cost += rate
    return SpendReport(pricing.currency, [rows[k] for k in sorted(rows)])


def parse_month(text: str | None, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime, str]:
    """[start, end) in UTC and the YYYY-MM label of a month given as YYYY-MM (default: this month)."""
    if text:
        m = _MONTH.match(text.strip())
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ValueError(f"month must look like 2025-07, not {text!r}")
        year, month = int(m.group(1)), int(m.group(2))
    else:
        local = now.astimezone(tz)
        year, month = local.year, local.month
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC), f"{year:04d}-{month:02d}"


def money(value: Decimal, currency: str) -> str:
    return f"{currency} {value.quantize(Decimal('0.01')):,}"


def render_text(report: SpendReport, label: str = "") -> str:
    """A plain table: month, channel, category, messages, billable, estimated cost."""
    head = f"Spend {label}".strip() + f" (estimate, {report.currency})"
    if not report.rows:
        return head + "\nno priced messages"
    lines = [head, f"{'month':<8} {'channel':<16} {'category':<15} {'messages':>8} {'billable':>8} "
                   f"{'cost':>14}"]
    for r in report.rows:
        cost = money(r.total, report.currency) + (" *" if r.unpriced else "")
        lines.append(f"{r.month:<8} {r.channel:<16} {r.category:<15} {r.messages:>8} {r.billable:>8} "
                     f"{cost:>14}")
    lines.append(f"total: {report.messages} messages, {report.billable} billable, "
                 f"{money(report.total, report.currency)}")
    if report.unpriced:
        lines.append(f"* {report.unpriced} billable message(s) have no rate in pricing.rates: cost not "
                     "included")
    return "\n".join(lines)


# ---- query --------------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return as_utc(value)


async def load_priced_messages(sessions: async_sessionmaker[AsyncSession], start: datetime, end: datetime,
                               channel: str | None = None) -> list[PricedMessage]:
    """Messages whose first priced status falls in [start, end), with their channel's name."""
    async with sessions() as session:
        # Look back a little: a message sent just before start whose later statuses fall inside the
        # month belongs to the earlier month, and must not be counted again here.
        statuses = (await session.execute(
            select(MessageStatus.wamid, MessageStatus.wa_timestamp, MessageStatus.recipient_id,
                   MessageStatus.pricing)
            .where(MessageStatus.wa_timestamp >= start - LOOKBACK, MessageStatus.wa_timestamp < end)
            .order_by(MessageStatus.wa_timestamp, MessageStatus.id)
        )).all()
        first: dict[str, tuple[datetime, str | None, dict[str, Any]]] = {}
        for wamid, at, recipient, pricing in statuses:
            if isinstance(pricing, dict) and pricing and wamid not in first:
                first[wamid] = (_aware(at), recipient, pricing)
        first = {w: v for w, v in first.items() if v[0] >= start}
        channels = await _channels_of(session, list(first))
    out = []
    for wamid, (at, recipient, pricing) in first.items():
        name = channels.get(wamid, UNKNOWN)
        if channel is not None and name != channel:
            continue
        out.append(PricedMessage(wamid=wamid, at=at, channel=name,
                                 category=str(pricing.get("category") or UNKNOWN),
                                 billable=is_billable(pricing), recipient=recipient))
    return out


async def _channels_of(session: AsyncSession, wamids: Sequence[str]) -> dict[str, str]:
    """Channel name per wamid, from the stored message or else the campaign recipient."""
    out: dict[str, str] = {}
    for i in range(0, len(wamids), 500):
        chunk = wamids[i:i + 500]
        rows = await session.execute(
            select(Message.wamid, Channel.name)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(Message.wamid.in_(chunk)))
        out.update({w: n for w, n in rows.all() if w})
        missing = [w for w in chunk if w not in out]
        if missing:
            rows = await session.execute(
                select(CampaignRecipient.wamid, Channel.name)
                .join(CampaignRun, CampaignRun.id == CampaignRecipient.run_id)
                .join(Campaign, Campaign.id == CampaignRun.campaign_id)
                .join(Channel, Channel.id == Campaign.channel_id)
                .where(CampaignRecipient.wamid.in_(missing)))
            out.update({w: n for w, n in rows.all() if w})
    return out


async def spend_for_month(sessions: async_sessionmaker[AsyncSession], pricing: PricingSettings,
                          timezone: str, month: str | None = None, *, channel: str | None = None,
                          default_region: str | None = None, now: datetime | None = None
                          ) -> tuple[str, SpendReport]:
    """(YYYY-MM, report) for one month in the business's timezone (default: the current month)."""
    tz = ZoneInfo(timezone)
    start, end, label = parse_month(month, now or datetime.now(UTC), tz)
    messages = await load_priced_messages(sessions, start, end, channel)
    return label, compute_spend(messages, pricing, tz, default_region)
