"""Opening hours of a number (pure): whether it is open at a moment, which closed period a moment falls in, and how
much open time lies between two moments (the SLA clock and the waiting figures count only that).

A closed period runs from one closing time to the next opening; holidays are closed all day, so a Friday
18:00 close followed by a Monday holiday is one period until Tuesday's opening. The period's start names it:
the away message is sent once per period and conversation, keyed on that start.

Hours may run past midnight (`overnight`: opens 18:00, closes 02:00 the next day). A day's opening then belongs
to the day it starts on: `days` and `holidays` name the evening, and Sunday's night runs into Monday. A holiday
cancels the opening that would start on it; a night begun the day before still ends at its usual time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEARCH_DAYS = 400  # how far to look for an opening or closing: a year of holidays and some
NEVER_OPEN = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
"""The start of the one closed period of hours that never open (no working day that is not a holiday)."""


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours in one time zone: `opens` to `closes` on `days` (Monday = 0), closed on `holidays`.

    `overnight`: `closes` is on the day after `opens` (it must then be no later than `opens`)."""

    opens: time
    closes: time
    days: frozenset[int] = frozenset(range(5))
    timezone: str = "UTC"
    holidays: frozenset[date] = field(default_factory=frozenset)
    overnight: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def works_on(self, day: date) -> bool:
        """True when the number opens at all on this local date."""
        return day.weekday() in self.days and day not in self.holidays

    def _span(self, day: date) -> tuple[datetime, datetime]:
        """The opening that starts on this local date, as UTC moments (so that comparing and subtracting them
        counts real time, daylight saving included)."""
        tz, utc = self.zone, ZoneInfo("UTC")
        last = day + timedelta(days=1) if self.overnight else day
        return (datetime.combine(day, self.opens, tz).astimezone(utc),
                datetime.combine(last, self.closes, tz).astimezone(utc))

    def _starts(self, at: datetime) -> tuple[date, ...]:
        """The local dates whose opening may hold `at`: its own, and the day before when nights run over."""
        day = at.astimezone(self.zone).date()
        return (day - timedelta(days=1), day) if self.overnight else (day,)

    def is_open(self, at: datetime) -> bool:
        for day in self._starts(at):
            if self.works_on(day):
                opens, closes = self._span(day)
                if opens <= at < closes:
                    return True
        return False

    def closed_since(self, at: datetime) -> datetime | None:
        """The start of the closed period `at` falls in (the last closing before it, in UTC); None while open.

        NEVER_OPEN when no closing can be found (hours that never open)."""
        if self.is_open(at):
            return None
        day = at.astimezone(self.zone).date()
        for _ in range(SEARCH_DAYS):
            if self.works_on(day):
                _, closes = self._span(day)
                if closes <= at:  # spans end in the order they start: the first found is the last closing
                    return closes
            day -= timedelta(days=1)
        return NEVER_OPEN

    def next_opening(self, at: datetime) -> datetime | None:
        """The first opening at or after `at` (None when the hours never open within a year)."""
        day = at.astimezone(self.zone).date()
        for _ in range(SEARCH_DAYS):
            if self.works_on(day):
                opens, _ = self._span(day)
                if opens >= at:
                    return opens.astimezone(self.zone)
            day += timedelta(days=1)
        return None

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """The open time between start and end."""
        if end <= start:
            return timedelta(0)
        day = self._starts(start)[0]
        last = end.astimezone(self.zone).date()
        total = timedelta(0)
        while day <= last:
            if self.works_on(day):
                o, c = self._span(day)
                lo, hi = max(o, start), min(c, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def open_minutes_a_week(self) -> int:
        """Minutes open in an ordinary week (holidays aside): 0 means the hours never open."""
        span = datetime.combine(date.min, self.closes) - datetime.combine(date.min, self.opens)
        if self.overnight:
            span += timedelta(days=1)
        return max(int(span.total_seconds() // 60), 0) * len(self.days)


def weekday_numbers(days: Sequence[str]) -> frozenset[int]:
    """`["mon", "fri"]` → {0, 4}."""
    return frozenset(DAYS.index(d) for d in days)
