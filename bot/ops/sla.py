"""What app.yaml says about response targets: each channel's first-response limit, whom a reminder
mentions, and how waits are measured (wall clock, or business hours only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

from bot.core.config import BusinessHoursSettings, ChannelSettings, Settings
from bot.core.hours import DAYS, BusinessHours, weekday_numbers
from bot.ops.insights import Elapsed, wall_clock

__all__ = ["DAYS", "Target", "elapsed_by_channel", "elapsed_for", "hours_for", "mention_markup", "target_for"]


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


def business_hours(settings: Settings, hours: BusinessHoursSettings) -> BusinessHours:
    """Configured opening hours as the clock that reads them."""
    return BusinessHours(opens=time.fromisoformat(hours.opens), closes=time.fromisoformat(hours.closes),
                         days=weekday_numbers(hours.days), timezone=settings.hours_zone(hours),
                         holidays=frozenset(hours.holidays), overnight=hours.overnight)


def hours_for(settings: Settings, channel: ChannelSettings) -> BusinessHours | None:
    """A number's opening hours (its own, else the top-level business_hours); None when neither is set."""
    hours = settings.hours_of(channel)
    return None if hours is None else business_hours(settings, hours)


def elapsed_for(settings: Settings) -> Elapsed:
    """How a wait's length is counted: only inside business hours when they are configured."""
    hours = settings.business_hours
    return wall_clock if hours is None else business_hours(settings, hours).elapsed


def elapsed_by_channel(settings: Settings) -> dict[str, Elapsed]:
    """The clock of each number with hours of its own (channel name -> clock); others use `elapsed_for`."""
    return {c.name: business_hours(settings, c.hours).elapsed for c in settings.channels if c.hours is not None}


def mention_markup(mention: str) -> str:
    """Slack markup naming a user group (S…) or a user (U…/W…); empty for none."""
    if not mention:
        return ""
    if mention.startswith("S"):
        return f"<!subteam^{mention}>"
    return f"<@{mention}>"
