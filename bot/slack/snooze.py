"""Snooze times a person picks on a thread parent ("1 hour", "tomorrow 9:00", "next Monday", a date), made into
moments in the configured timezone (pure)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MORNING = time(9, 0)  # a day's snooze ends at 9:00 in the configured timezone
CHOICES = (("1h", "1 hour"), ("3h", "3 hours"), ("tomorrow", "Tomorrow 9:00"), ("monday", "Next Monday 9:00"))


def until_for(choice: str, now: datetime, tz: str) -> datetime | None:
    """When a snooze picked from the menu ends; None for a value the menu does not offer."""
    if choice == "1h":
        return now + timedelta(hours=1)
    if choice == "3h":
        return now + timedelta(hours=3)
    local = now.astimezone(ZoneInfo(tz))
    if choice == "tomorrow":
        return _morning(local.date() + timedelta(days=1), tz)
    if choice == "monday":
        return _morning(local.date() + timedelta(days=7 - local.weekday()), tz)
    return None


def until_date(picked: str, now: datetime, tz: str) -> datetime | None:
    """9:00 on a date picked in the datepicker (`YYYY-MM-DD`); None when unreadable or not in the future."""
    try:
        day = date.fromisoformat(picked)
    except ValueError:
        return None
    at = _morning(day, tz)
    return at if at > now else None


def _morning(day: date, tz: str) -> datetime:
    return datetime.combine(day, MORNING, tzinfo=ZoneInfo(tz)).astimezone(ZoneInfo("UTC"))
