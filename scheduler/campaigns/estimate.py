"""Campaign estimates and spend (pure): duration at a number's cap, cost from the `pricing` settings.

Rates in `pricing.rates` are per delivered message by recipient country (ISO region, e.g. IN) and template
category (marketing, utility, authentication, service); `platform_fee` is added per billable message, in
the same currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import phonenumbers

from bot.core.config import PricingSettings

UNKNOWN_REGION = "??"
CAMPAIGN_MARGIN = 0.030
"""Seconds of jitter allowed between a campaign send's throttle grant and its arrival at Meta.

Replies use the throttle's default (20 ms). Campaign sends leave a busier path (many concurrent senders and
their bookkeeping in one process), so their grants count each window as 1.03 s: about 97% of the cap, in
exchange for never crowding Meta's one-second window when the process is briefly held up."""


def region_of(wa_id: str) -> str:
    """The ISO region a WhatsApp ID (E.164 digits) belongs to, or "??" when it cannot be told."""
    digits = wa_id.lstrip("+")
    for n in (1, 2, 3):
        if len(digits) > n and digits[:n].isdigit():
            region = phonenumbers.region_code_for_country_code(int(digits[:n]))
            if region and region != "ZZ":
                if region == "001":
                    return UNKNOWN_REGION
                # Shared calling codes (+1, +7, …) need the whole number to tell the country apart.
                if len(phonenumbers.region_codes_for_country_code(int(digits[:n]))) > 1:
                    try:
                        parsed = phonenumbers.parse("+" + digits)
                    except phonenumbers.NumberParseException:
                        return region
                    return phonenumbers.region_code_for_number(parsed) or region
                return region
    return UNKNOWN_REGION


def duration_seconds(recipients: int, mps: int, margin: float = CAMPAIGN_MARGIN) -> float:
    """Seconds to send to recipients at a cap of mps (the throttle runs at mps / (1 + margin))."""
    if recipients <= 0:
        return 0.0
    return recipients * (1.0 + margin) / max(1, mps)


def format_duration(seconds: float) -> str:
    """Short human duration: 45 s, 12 min, 2 h 5 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{(s + 30) // 60} min"
    h, rest = divmod(s, 3600)
    return f"{h} h {rest // 60} min" if rest >= 60 else f"{h} h"


@dataclass(frozen=True)
class Cost:
    """An amount in a currency; regions without a configured rate are listed and not counted."""

    amount: float
    currency: str
    unpriced: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        base = f"{self.amount:,.2f} {self.currency}"
        if self.unpriced:
            missing = ", ".join(f"{r} ({n})" for r, n in sorted(self.unpriced.items()))
            base += f" (no rate for {missing})"
        return base


def unit_price(pricing: PricingSettings, region: str, category: str) -> float | None:
    """Price of one billable message, or None when no rate is configured for region and category."""
    rates = pricing.rates.get(region) or pricing.rates.get(region.upper())
    if rates is None:
        return None
    rate = rates.get(category.lower())
    return None if rate is None else rate + pricing.platform_fee


def cost(pricing: PricingSettings, counts: Mapping[tuple[str, str], int]) -> Cost:
    """Cost of counts[(region, category)] billable messages."""
    total = 0.0
    unpriced: dict[str, int] = {}
    for (region, category), n in counts.items():
        if n <= 0:
            continue
        price = unit_price(pricing, region, category)
        if price is None:
            unpriced[region] = unpriced.get(region, 0) + n
        else:
            total += price * n
    return Cost(round(total, 2), pricing.currency, unpriced)


def estimate_cost(pricing: PricingSettings, regions: Mapping[str, int], category: str | None) -> Cost:
    """Expected cost of sending one template of `category` (marketing when unknown) to regions' counts."""
    cat = (category or "marketing").lower()
    return cost(pricing, {(region, cat): n for region, n in regions.items()})


def count_regions(wa_ids: Iterable[str]) -> dict[str, int]:
    """Recipients per region."""
    out: dict[str, int] = {}
    for wa_id in wa_ids:
        r = region_of(wa_id)
        out[r] = out.get(r, 0) + 1
    return out


def region_of_prefix(prefix: str) -> str:
    """Region for the first digits of a number when only a prefix is known (SQL groups by prefix)."""
    return region_of(prefix + "0" * 9)
