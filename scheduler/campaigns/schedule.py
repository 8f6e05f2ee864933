"""When a campaign fires: now, at a date-time, or on a cron schedule in a timezone (pure; no I/O, no clock).

Fire-time maths is APScheduler's (``CronTrigger``, ``DateTrigger``); this module adds the bridge's rules:

* Cron expressions are standard five-field crontab (minute hour day month weekday), with weekday numbers
  as cron means them (0 or 7 = Sunday). APScheduler 3 numbers weekdays from Monday = 0, so numeric
  weekdays are rewritten to names before they reach it; a plain ``0 9 * * 1`` therefore fires on Mondays.
* Times are wall-clock times in the campaign's timezone (default ``Asia/Kolkata``); across a daylight-saving
  change a weekly 09:00 stays 09:00 local.

Misfire policy (what happens to firings that fell while no ``serve`` process was running):

* A one-off campaign (``now`` / ``at``) that is late by at most ``MISFIRE_GRACE`` fires as soon as a
  scheduler sees it; later than that it is not sent and is marked ``missed`` (an alert says so, and
  ``resume`` sends it then). A class reminder sent a day late does more harm than good.
* A repeating campaign coalesces: of all the firings missed during downtime only the most recent one is
  considered; it fires late if within ``MISFIRE_GRACE`` of its time, else it is recorded as ``missed``
  (with an alert) and the schedule simply continues with the next firing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

MISFIRE_GRACE = timedelta(hours=6)
KINDS = ("now", "at", "cron")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CRON_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # crontab numbering, 0 and 7 = Sunday
_DOW_NUMBER = re.compile(r"\d+")
_WEEKDAY_NAMES = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}


class ScheduleError(ValueError):
    """A schedule that cannot be used, phrased for the person who wrote it."""


def zone(name: str) -> ZoneInfo:
    """The IANA timezone called name; ScheduleError when there is none."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone {name!r} (use an IANA name such as Asia/Kolkata)") from None


def _cron_dow(field: str) -> str:
    """Rewrite crontab weekday numbers (0/7 = Sunday) as names, which APScheduler 3 reads unambiguously."""

    def name(m: re.Match[str]) -> str:
        n = int(m.group(0))
        if n > 7:
            raise ScheduleError(f"weekday {n} is out of range (0-7, 0 and 7 are Sunday)")
        return _CRON_DOW[n]

    out = []
    for part in field.lower().split(","):
        step = ""
        if "/" in part:
            part, step = part.split("/", 1)
            step = "/" + step
        if "-" in part and part.replace("-", "").isdigit():
            lo, hi = (int(x) for x in part.split("-", 1))
            if hi == 7 and lo > 0:  # "5-7" = Friday..Sunday; APScheduler needs it as fri-sat plus sun
                out.append(f"{_CRON_DOW[lo]}-sat{step}")
                out.append("sun")
                continue
        out.append(_DOW_NUMBER.sub(name, part) + step)
    return ",".join(out)


def cron_trigger(expr: str, tz: str) -> CronTrigger:
    """An APScheduler trigger for a standard five-field crontab expression in timezone tz."""
    fields = expr.split()
    if len(fields) != 5:
        raise ScheduleError(f"cron needs 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, dow = fields
    try:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=_cron_dow(dow), timezone=zone(tz)
        )
    except ScheduleError:
        raise
    except ValueError as exc:
        raise ScheduleError(f"invalid cron {expr!r}: {exc}") from None


def weekly(days: Sequence[str], at: time) -> str:
    """The crontab for every one of days (names such as mon or Monday) at a wall-clock time."""
    picked = []
    for d in days:
        key = d.strip().lower()
        key = _WEEKDAY_NAMES.get(key, key[:3])
        if key not in WEEKDAYS:
            raise ScheduleError(f"unknown weekday {d!r}")
        if key not in picked:
            picked.append(key)
    if not picked:
        raise ScheduleError("pick at least one weekday")
    picked.sort(key=WEEKDAYS.index)
    return f"{at.minute} {at.hour} * * {','.join(picked)}"


def monthly(day: int | str, at: time) -> str:
    """The crontab for day N (1-31, or "last") of every month at a wall-clock time."""
    if isinstance(day, str) and day.strip().lower() == "last":
        return f"{at.minute} {at.hour} last * *"
    try:
        n = int(day)
    except (TypeError, ValueError):
        raise ScheduleError(f"day of month must be 1-31 or 'last', got {day!r}") from None
    if not 1 <= n <= 31:
        raise ScheduleError(f"day of month must be 1-31 or 'last', got {n}")
    return f"{at.minute} {at.hour} {n} * *"


def parse_at(text: str, tz: str) -> datetime:
    """An ISO-8601 date-time as aware UTC; without an offset it is read as wall-clock time in tz."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"not an ISO-8601 date-time: {text!r} (e.g. 2026-03-02T09:30)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Schedule:
    """A campaign's timing: kind now/at/cron, the one-off time (UTC) or crontab, and its timezone."""

    kind: str
    timezone: str = "Asia/Kolkata"
    run_at: datetime | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ScheduleError(f"schedule kind must be one of {', '.join(KINDS)}")
        zone(self.timezone)
        if self.kind in ("now", "at"):
            if self.run_at is None or self.run_at.tzinfo is None:
                raise ScheduleError("a one-off schedule needs an aware run_at")
        elif not self.cron:
            raise ScheduleError("a repeating schedule needs a cron expression")
        else:
            cron_trigger(self.cron, self.timezone)

    @property
    def repeating(self) -> bool:
        return self.kind == "cron"

    def trigger(self) -> BaseTrigger:
        """The APScheduler trigger that fires this schedule."""
        if self.kind == "cron":
            assert self.cron is not None
            return cron_trigger(self.cron, self.timezone)
        return DateTrigger(run_date=self.run_at, timezone=zone(self.timezone))

    def next_fire(self, after: datetime) -> datetime | None:
        """The first firing strictly after `after` (UTC), or None when there is none."""
        if self.kind != "cron":
            assert self.run_at is not None
            return self.run_at if self.run_at > after else None
        nxt = self.trigger().get_next_fire_time(None, (after + timedelta(microseconds=1)).astimezone(UTC))
        return None if nxt is None else nxt.astimezone(UTC)

    def fires_between(self, start: datetime, end: datetime, limit: int = 100_000) -> Iterator[datetime]:
        """Firings in (start, end], oldest first (at most limit of them)."""
        cursor = start
        for _ in range(limit):
            nxt = self.next_fire(cursor)
            if nxt is None or nxt > end:
                return
            yield nxt
            cursor = nxt


@dataclass(frozen=True)
class Due:
    """What a scheduler should do now: fire at fire_at, record missed as skipped, or nothing."""

    fire_at: datetime | None = None
    missed: datetime | None = None


def due(
    schedule: Schedule,
    last_fired: datetime | None,
    created_at: datetime,
    now: datetime,
    grace: timedelta = MISFIRE_GRACE,
) -> Due:
    """Apply the misfire policy: the firing owed at `now`, given the last one recorded (see module doc)."""
    if schedule.kind != "cron":
        assert schedule.run_at is not None
        if last_fired is not None or schedule.run_at > now:
            return Due()
        if now - schedule.run_at <= grace:
            return Due(fire_at=schedule.run_at)
        return Due(missed=schedule.run_at)
    since = last_fired or created_at
    # Only the latest firing matters (coalescing); older ones inside the window are passed over. Start the
    # scan at the grace horizon so a long outage costs no more than one grace period of iterations.
    horizon = max(since, now - grace)
    latest = None
    for latest in schedule.fires_between(horizon, now):  # noqa: B007 - the last value is the one wanted
        pass
    if latest is not None:
        return Due(fire_at=latest)
    if since < horizon:
        older = schedule.next_fire(since)
        if older is not None and older <= horizon:
            last_missed = older
            for last_missed in schedule.fires_between(older, horizon):  # noqa: B007
                pass
            return Due(missed=last_missed)
    return Due()


def describe(schedule: Schedule) -> str:
    """Human text for a schedule, e.g. "every Mon, Thu at 09:30 (Asia/Kolkata)"."""
    tz = zone(schedule.timezone)
    if schedule.kind == "now":
        return "now"
    if schedule.kind == "at":
        assert schedule.run_at is not None
        return f"at {schedule.run_at.astimezone(tz):%Y-%m-%d %H:%M} ({schedule.timezone})"
    assert schedule.cron is not None
    minute, hour, day, month, dow = schedule.cron.split()
    if minute.isdigit() and hour.isdigit() and month == "*":
        at = f"{int(hour):02d}:{int(minute):02d}"
        if day == "*" and dow != "*":
            days = ", ".join(d.capitalize() for d in _cron_dow(dow).split(","))
            return f"every {days} at {at} ({schedule.timezone})"
        if dow == "*" and day != "*":
            which = "the last day" if day == "last" else f"day {day}"
            return f"monthly on {which} at {at} ({schedule.timezone})"
    return f"cron {schedule.cron!r} ({schedule.timezone})"
