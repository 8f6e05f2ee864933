"""What app.yaml says about response targets: each channel's first-response limit, whom a reminder
mentions, and how waits are measured (wall clock, or business hours only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

from bot.core.config import ChannelSettings, Settings
from bot.ops.insights import BusinessHours, Elapsed, wall_clock

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Target:
    channel: str
    limit: timedelta
    mention: str


def target_for(settings: Settings, channel: ChannelSettings) -> Target | None:
    """The channel's first-response target (its own `sla`, else the top-level one); None when unset."""
    own = channel.sla
    minutes = (own.first_response_minutes if own else None) or settings.sla.first_response_minutes
    if minutes is None:
        return None
    mention = (own.mention if own else "") or settings.sla.mention
    return Target(channel.name, timedelta(minutes=minutes), mention)


def elapsed_for(settings: Settings) -> Elapsed:
    """How a wait's length is counted: only inside business hours when they are configured."""
    hours = settings.business_hours
    if hours is None:
        return wall_clock
    return BusinessHours(opens=time.fromisoformat(hours.opens), closes=time.fromisoformat(hours.closes),
                         days=frozenset(DAYS.index(d) for d in hours.days), timezone=settings.timezone).elapsed


def mention_markup(mention: str) -> str:
    """Slack markup naming a user group (S…) or a user (U…/W…); empty for none."""
    if not mention:
        return ""
    if mention.startswith("S"):
        return f"<!subteam^{mention}>"
    return f"<@{mention}>"
