"""When campaigns fire: crontab maths in a timezone, and the misfire policy (pure, on explicit clocks)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from scheduler.campaigns.schedule import (
    MISFIRE_GRACE,
    Schedule,
    ScheduleError,
    cron_trigger,
    describe,
    due,
    monthly,
    parse_at,
    weekly,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_weekly_monday_nine_in_kolkata_fires_at_three_thirty_utc() -> None:
    s = Schedule("cron", "Asia/Kolkata", cron=weekly(["Monday"], time(9, 0)))
    # 2026-03-01 is a Sunday.
    assert s.next_fire(utc(2026, 3, 1, 12)) == utc(2026, 3, 2, 3, 30)
    assert s.next_fire(utc(2026, 3, 2, 3, 30)) == utc(2026, 3, 9, 3, 30)


def test_numeric_weekday_follows_crontab_not_apscheduler_numbering() -> None:
    # crontab 1 = Monday (APScheduler 3 would read 1 as Tuesday); 0 and 7 are Sunday.
    monday = Schedule("cron", "UTC", cron="0 9 * * 1")
    sunday0 = Schedule("cron", "UTC", cron="0 9 * * 0")
    sunday7 = Schedule("cron", "UTC", cron="0 9 * * 7")
    start = utc(2026, 3, 1, 10)  # Sunday after 09:00
    assert monday.next_fire(start) == utc(2026, 3, 2, 9)
    assert sunday0.next_fire(start) == utc(2026, 3, 8, 9)
    assert sunday7.next_fire(start) == utc(2026, 3, 8, 9)


def test_weekday_range_ending_on_seven_includes_sunday() -> None:
    s = Schedule("cron", "UTC", cron="0 9 * * 5-7")
    fires = list(s.fires_between(utc(2026, 3, 2), utc(2026, 3, 9)))
    assert [f.strftime("%a") for f in fires] == ["Fri", "Sat", "Sun"]


def test_weekly_keeps_local_wall_clock_across_daylight_saving() -> None:
    s = Schedule("cron", "America/New_York", cron=weekly(["mon"], time(9, 30)))
    before, after = list(s.fires_between(utc(2026, 3, 1), utc(2026, 3, 10)))
    assert before == utc(2026, 3, 2, 14, 30)  # EST, UTC-5
    assert after == utc(2026, 3, 9, 13, 30)  # EDT from 8 March, UTC-4


def test_monthly_day_and_last_day() -> None:
    first = Schedule("cron", "Asia/Kolkata", cron=monthly(1, time(10, 0)))
    assert list(first.fires_between(utc(2026, 1, 15), utc(2026, 3, 15))) == [
        utc(2026, 2, 1, 4, 30), utc(2026, 3, 1, 4, 30)]
    last = Schedule("cron", "UTC", cron=monthly("last", time(18, 0)))
    assert list(last.fires_between(utc(2026, 1, 15), utc(2026, 3, 15))) == [
        utc(2026, 1, 31, 18), utc(2026, 2, 28, 18)]


@pytest.mark.parametrize("bad", ["0 9 * *", "0 25 * * *", "0 9 * * 8", "x 9 * * *"])
def test_invalid_cron_is_a_schedule_error(bad: str) -> None:
    with pytest.raises(ScheduleError):
        cron_trigger(bad, "UTC")


def test_unknown_timezone_and_weekday_are_rejected() -> None:
    with pytest.raises(ScheduleError, match="timezone"):
        Schedule("cron", "Mars/Olympus", cron="0 9 * * *")
    with pytest.raises(ScheduleError, match="weekday"):
        weekly(["funday"], time(9))
    with pytest.raises(ScheduleError):
        weekly([], time(9))
    with pytest.raises(ScheduleError):
        monthly(32, time(9))


def test_parse_at_reads_naive_times_in_the_campaign_timezone() -> None:
    assert parse_at("2026-03-02T09:30", "Asia/Kolkata") == utc(2026, 3, 2, 4, 0)
    assert parse_at("2026-03-02T09:30+00:00", "Asia/Kolkata") == utc(2026, 3, 2, 9, 30)
    with pytest.raises(ScheduleError):
        parse_at("next monday", "UTC")


def test_one_off_fires_when_due_and_only_once() -> None:
    at = utc(2026, 3, 2, 4)
    s = Schedule("at", "Asia/Kolkata", run_at=at)
    created = utc(2026, 3, 1)
    assert due(s, None, created, at - timedelta(seconds=1)).fire_at is None
    assert due(s, None, created, at).fire_at == at
    assert due(s, at, created, at + timedelta(seconds=5)).fire_at is None


def test_one_off_missed_beyond_grace_is_reported_not_sent() -> None:
    at = utc(2026, 3, 2, 4)
    s = Schedule("at", "UTC", run_at=at)
    late = due(s, None, utc(2026, 3, 1), at + MISFIRE_GRACE - timedelta(minutes=1))
    assert late.fire_at == at
    too_late = due(s, None, utc(2026, 3, 1), at + MISFIRE_GRACE + timedelta(minutes=1))
    assert too_late.fire_at is None and too_late.missed == at


def test_cron_coalesces_missed_firings_into_the_latest_within_grace() -> None:
    s = Schedule("cron", "UTC", cron="0 * * * *")  # hourly
    last = utc(2026, 3, 2, 0)
    now = utc(2026, 3, 2, 3, 20)  # 01:00, 02:00 and 03:00 were missed
    assert due(s, last, last, now).fire_at == utc(2026, 3, 2, 3)


def test_cron_missed_long_ago_is_recorded_and_schedule_continues() -> None:
    s = Schedule("cron", "UTC", cron="0 9 * * 1")  # Mondays 09:00
    last = utc(2026, 3, 2, 9)
    now = utc(2026, 3, 10, 8)  # Monday 9 March 09:00 passed 23 h ago
    owed = due(s, last, last, now)
    assert owed.fire_at is None and owed.missed == utc(2026, 3, 9, 9)
    # Once recorded, nothing more is owed until the next Monday.
    assert due(s, owed.missed, last, now) == type(owed)()
    assert due(s, owed.missed, last, utc(2026, 3, 16, 9)).fire_at == utc(2026, 3, 16, 9)


def test_describe_says_when_in_words() -> None:
    assert describe(Schedule("cron", "Asia/Kolkata", cron=weekly(["thu", "mon"], time(9, 5)))) == \
        "every Mon, Thu at 09:05 (Asia/Kolkata)"
    assert describe(Schedule("cron", "UTC", cron=monthly(1, time(10)))) == "monthly on day 1 at 10:00 (UTC)"
