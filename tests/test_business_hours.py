"""Opening hours per number: closed periods (holidays, weekends, time zones), the open-hours clock of the SLA
and waiting figures, the start-up checks of the keys and doctor's findings."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from bot.core.away import away_applies
from bot.core.config import ConfigError, parse_settings
from bot.core.hours import NEVER_OPEN, BusinessHours
from bot.ops.checks import Severity
from bot.ops.doctor_hours import channel_hours_finding
from bot.ops.insights import ConversationInput, Event, Kind, figures
from bot.ops.sla import elapsed_by_channel, hours_for

# Asia/Kolkata is UTC+5:30 all year: 09:00 there is 03:30 UTC.
KOLKATA = BusinessHours(opens=time(9), closes=time(18), days=frozenset(range(5)), timezone="Asia/Kolkata",
                        holidays=frozenset({date(2026, 12, 25)}))


def ist(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in December 2026, Kolkata wall time, as UTC."""
    return datetime(2026, 12, day, hour, minute, tzinfo=KOLKATA.zone).astimezone(UTC)


def test_open_inside_the_hours_on_a_working_day_only() -> None:
    assert KOLKATA.is_open(ist(7, 10))  # Monday
    assert not KOLKATA.is_open(ist(7, 8, 59))
    assert not KOLKATA.is_open(ist(7, 18))  # closes at 18:00 sharp
    assert not KOLKATA.is_open(ist(5, 12))  # Saturday
    assert not KOLKATA.is_open(ist(25, 12))  # a holiday (Friday)


def test_a_closed_period_starts_at_the_last_closing_and_spans_the_night() -> None:
    evening, early = ist(7, 21), ist(8, 8)
    assert KOLKATA.closed_since(evening) == ist(7, 18)
    assert KOLKATA.closed_since(early) == ist(7, 18)  # the same night: the same period
    assert KOLKATA.closed_since(ist(8, 12)) is None
    assert KOLKATA.closed_since(ist(8, 19)) == ist(8, 18)  # the next evening: a new period


def test_a_weekend_and_a_holiday_make_one_closed_period() -> None:
    # Thursday 24 closes at 18:00; Friday 25 is a holiday, then the weekend: one period until Monday 28.
    start = ist(24, 18)
    for moment in (ist(24, 23), ist(25, 12), ist(26, 12), ist(27, 23), ist(28, 8, 59)):
        assert KOLKATA.closed_since(moment) == start
    assert KOLKATA.next_opening(ist(25, 12)) == ist(28, 9)


def test_hours_that_never_open_are_one_closed_period() -> None:
    never = BusinessHours(opens=time(9), closes=time(18), days=frozenset(), timezone="UTC")
    assert never.closed_since(datetime(2026, 12, 7, 12, tzinfo=UTC)) == NEVER_OPEN
    assert never.next_opening(datetime(2026, 12, 7, 12, tzinfo=UTC)) is None
    assert never.open_minutes_a_week() == 0


def test_elapsed_counts_only_open_time_and_skips_holidays() -> None:
    # Thursday 24 at 17:00 to Monday 28 at 10:00: one hour on Thursday, the holiday and weekend nothing, one
    # hour on Monday.
    assert KOLKATA.elapsed(ist(24, 17), ist(28, 10)) == timedelta(hours=2)
    assert KOLKATA.elapsed(ist(28, 10), ist(24, 17)) == timedelta(0)


def _event(at: datetime, kind: Kind, ref: int, responder: str | None = None) -> Event:
    return Event(at, kind, responder, ref)


def test_each_number_waits_by_its_own_hours() -> None:
    asked, answered = ist(24, 17), ist(28, 10)
    convs = [ConversationInput(1, "lucknow", "A", (_event(asked, Kind.CUSTOMER, 1),
                                                  _event(answered, Kind.REPLY, 2, "U1"))),
             ConversationInput(2, "delhi", "B", (_event(asked, Kind.CUSTOMER, 3),
                                                _event(answered, Kind.REPLY, 4, "U1")))]
    found = figures(convs, since=asked, now=answered, elapsed_of={"lucknow": KOLKATA.elapsed})
    assert sorted(found.first_responses) == [timedelta(hours=2), answered - asked]  # delhi: the wall clock


def _settings(**channel: Any) -> Any:
    ch = {"name": "lucknow", "phone_number_id": "1", "waba_id": "2", "access_token": "t", "slack_channel": "C1"}
    top = channel.pop("top", {})
    ch.update(channel)
    return parse_settings({"meta": {"app_secret": "s", "verify_token": "v"},
                           "slack": {"bot_token": "b", "signing_secret": "s"}, "channels": [ch], **top})


HOURS = {"opens": "09:00", "closes": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"],
         "timezone": "Asia/Kolkata", "holidays": ["2026-12-25"]}


def test_per_number_hours_load_and_drive_the_sla_clock() -> None:
    settings = _settings(hours=HOURS, away_message="We are closed, {first_name}.", mode="cloud_api")
    channel = settings.channels[0]
    clock = hours_for(settings, channel)
    assert clock == KOLKATA
    assert elapsed_by_channel(settings)["lucknow"](ist(24, 17), ist(28, 10)) == timedelta(hours=2)
    assert away_applies(settings, channel)


def test_a_number_without_hours_takes_the_top_level_ones_in_the_top_level_zone() -> None:
    settings = _settings(top={"timezone": "Europe/Lisbon", "business_hours": {"opens": "08:00", "closes": "17:00"}})
    clock = hours_for(settings, settings.channels[0])
    assert clock is not None and clock.timezone == "Europe/Lisbon" and clock.opens == time(8)
    assert elapsed_by_channel(settings) == {}  # the top-level clock (elapsed_for) serves it


@pytest.mark.parametrize(("mode", "number_mode", "sent"), [
    ("cloud_api_only", "coexistence", False), ("cloud_api_only", "cloud_api", True),
    ("always", "coexistence", True), ("off", "cloud_api", False)])
def test_away_mode_decides_which_numbers_the_bridge_answers(mode: str, number_mode: str, sent: bool) -> None:
    settings = _settings(hours=HOURS, away_message="Closed", mode=number_mode, top={"away": {"mode": mode}})
    assert away_applies(settings, settings.channels[0]) is sent


@pytest.mark.parametrize(("hours", "key", "words"), [
    ({**HOURS, "timezone": "Mars/Olympus"}, "channels[0].hours.timezone", "unknown time zone"),
    ({**HOURS, "opens": "19:00"}, "channels[0].hours", "opens must be earlier than closes (opens 19:00, closes 18:00)"),
    ({**HOURS, "days": ["monday"]}, "channels[0].hours.days[0]", "Input should be"),
    ({**HOURS, "holidays": ["25/12/2026"]}, "channels[0].hours.holidays[0]", "date"),
    ({**HOURS, "weekends": True}, "channels[0].hours.weekends", "unknown key"),
], ids=["zone", "order", "day", "holiday", "extra"])
def test_hours_keys_are_checked_at_start_up_with_one_line(hours: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _settings(hours=hours)
    assert err.value.key == key
    assert words in err.value.message and "\n" not in str(err.value)


def test_away_mode_must_be_known() -> None:
    with pytest.raises(ConfigError) as err:
        _settings(top={"away": {"mode": "sometimes"}})
    assert err.value.key == "away.mode"


NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


@pytest.mark.parametrize(("channel", "top", "level", "words"), [
    ({"away_message": "Closed"}, {}, Severity.FAIL, "no opening hours"),
    ({"hours": {**HOURS, "days": []}, "away_message": "Closed", "mode": "cloud_api"}, {}, Severity.FAIL,
     "never open"),
    ({"hours": HOURS, "mode": "cloud_api"}, {}, Severity.WARN, "away message is missing"),
    ({"hours": HOURS, "away_message": "Closed", "mode": "coexistence"}, {"away": {"mode": "always"}},
     Severity.WARN, "customers get both"),
    ({"hours": {**HOURS, "holidays": ["2025-12-25"]}, "away_message": "Closed", "mode": "cloud_api"}, {},
     Severity.WARN, "every holiday listed is past"),
    ({"hours": HOURS, "away_message": "Hi {nmae}", "mode": "cloud_api"}, {}, Severity.WARN, "{nmae}"),
    ({"hours": HOURS, "away_message": "Closed", "mode": "coexistence"}, {}, Severity.OK, "phone app"),
    ({"hours": HOURS, "away_message": "Closed, {first_name}", "mode": "cloud_api"}, {}, Severity.OK,
     "once per closed period"),
], ids=["no-hours", "never-open", "no-text", "both-answer", "old-holidays", "placeholder", "coexistence", "fine"])
def test_doctor_names_hours_and_away_messages_that_cannot_work(channel: dict[str, Any], top: dict[str, Any],
                                                               level: Severity, words: str) -> None:
    settings = _settings(**channel, top=top)
    found = channel_hours_finding(settings, settings.channels[0], NOW)
    assert found is not None
    assert found.level is level, found
    assert words in found.detail
    assert (found.fix != "") is (level is not Severity.OK)


def test_doctor_says_nothing_of_a_number_without_hours_or_away_message() -> None:
    settings = _settings()
    assert channel_hours_finding(settings, settings.channels[0], NOW) is None


def test_doctor_says_when_a_survey_can_never_be_sent() -> None:
    from bot.ops.doctor_hours import csat_finding

    quiet = _settings(thread_replies="notes_only", csat={"enabled": True})
    found = csat_finding(quiet, quiet.channels[0])
    assert found is not None and found.level is Severity.WARN and "notes-only" in found.detail
    on = _settings(csat={"enabled": True, "quiet_days": 3})
    found = csat_finding(on, on.channels[0])
    assert found is not None and found.level is Severity.OK and "quiet for 3 days" in found.detail
    assert csat_finding(_settings(), _settings().channels[0]) is None  # off: nothing to say


# Hours past midnight: a branch open 18:00 to 02:00 the next morning, Monday to Friday evenings, in Kolkata
# (no daylight saving), and one in Dubai (UTC+4, none either) open every evening.
NIGHTS = BusinessHours(opens=time(18), closes=time(2), days=frozenset(range(5)), timezone="Asia/Kolkata",
                       holidays=frozenset({date(2026, 12, 25)}), overnight=True)


def test_overnight_hours_are_open_past_midnight_on_the_day_after_the_opening() -> None:
    assert NIGHTS.is_open(ist(7, 18))  # Monday's opening
    assert NIGHTS.is_open(ist(7, 23, 59))
    assert NIGHTS.is_open(ist(8, 0))  # Tuesday after midnight: still Monday's night
    assert NIGHTS.is_open(ist(8, 1, 59))
    assert not NIGHTS.is_open(ist(8, 2))  # closes at 02:00 sharp
    assert not NIGHTS.is_open(ist(8, 12))
    assert not NIGHTS.is_open(ist(7, 17, 59))
    # Friday's night runs into Saturday; Saturday evening does not open; Monday morning holds Sunday's (none).
    assert NIGHTS.is_open(ist(12, 1))
    assert not NIGHTS.is_open(ist(12, 20)) and not NIGHTS.is_open(ist(14, 1))


def test_an_overnight_closed_period_is_one_period_from_closing_to_opening() -> None:
    # Monday's night closes on Tuesday at 02:00: Tuesday morning and afternoon are one period.
    start = ist(8, 2)
    for moment in (ist(8, 2), ist(8, 3), ist(8, 12), ist(8, 17, 59)):
        assert NIGHTS.closed_since(moment) == start, moment
    assert NIGHTS.closed_since(ist(8, 1)) is None
    assert NIGHTS.closed_since(ist(8, 18)) is None
    assert NIGHTS.closed_since(ist(9, 2, 30)) == ist(9, 2)  # the next morning: a new period
    assert NIGHTS.next_opening(ist(8, 3)) == ist(8, 18)


def test_an_overnight_weekend_wraps_from_saturday_morning_to_monday_evening() -> None:
    # Friday 11's night ends on Saturday 12 at 02:00; no night starts on Saturday or Sunday: one period until
    # Monday 14 at 18:00, across Sunday's midnight into Monday.
    start = ist(12, 2)
    for moment in (ist(12, 3), ist(13, 23, 59), ist(14, 0, 30), ist(14, 17, 59)):
        assert NIGHTS.closed_since(moment) == start, moment
    assert NIGHTS.next_opening(ist(13, 12)) == ist(14, 18)


def test_sunday_night_runs_into_monday() -> None:
    dubai = BusinessHours(opens=time(20), closes=time(4), days=frozenset({6}), timezone="Asia/Dubai",
                          overnight=True)

    def gst(day: int, hour: int) -> datetime:
        return datetime(2026, 12, day, hour, tzinfo=dubai.zone).astimezone(UTC)

    assert dubai.is_open(gst(13, 21))  # Sunday evening
    assert dubai.is_open(gst(14, 3))  # Monday before 04:00: Sunday's night
    assert not dubai.is_open(gst(14, 4)) and not dubai.is_open(gst(14, 21))  # Monday opens no night of its own
    assert dubai.closed_since(gst(14, 5)) == gst(14, 4)
    assert dubai.closed_since(gst(19, 23)) == gst(14, 4)  # all week until Sunday 20:00: one period
    assert dubai.elapsed(gst(13, 19), gst(14, 12)) == timedelta(hours=8)
    assert dubai.open_minutes_a_week() == 8 * 60


def test_a_holiday_cancels_the_night_that_would_start_on_it_not_the_one_ending_on_it() -> None:
    # Thursday 24's night runs to Friday 25 at 02:00 although the 25th is a holiday; no night starts on the 25th.
    assert NIGHTS.is_open(ist(25, 1))
    assert not NIGHTS.is_open(ist(25, 20))
    assert NIGHTS.closed_since(ist(27, 12)) == ist(25, 2)


def test_elapsed_counts_open_time_across_midnight() -> None:
    # Monday 23:00 to Tuesday 19:00: 3 hours of Monday's night, 1 of Tuesday's.
    assert NIGHTS.elapsed(ist(7, 23), ist(8, 19)) == timedelta(hours=4)
    # Tuesday 01:00 (inside Monday's night) to 01:30: half an hour.
    assert NIGHTS.elapsed(ist(8, 1), ist(8, 1, 30)) == timedelta(minutes=30)
    assert NIGHTS.open_minutes_a_week() == 5 * 8 * 60


def test_a_whole_day_opening_is_overnight_with_closes_equal_to_opens() -> None:
    always = BusinessHours(opens=time(0), closes=time(0), days=frozenset(range(7)), timezone="Asia/Kolkata",
                           overnight=True)
    assert always.is_open(ist(7, 0)) and always.is_open(ist(13, 23, 59))
    assert always.closed_since(ist(9, 5)) is None


def test_overnight_hours_in_a_zone_with_daylight_saving_count_real_time() -> None:
    # Europe/London moves its clocks back at 02:00 BST on 25 October 2026: the night of Saturday 24 from 22:00
    # to 02:00 lasts five hours.
    london = BusinessHours(opens=time(22), closes=time(2), days=frozenset(range(7)), timezone="Europe/London",
                           overnight=True)
    opened = datetime(2026, 10, 24, 22, tzinfo=london.zone).astimezone(UTC)  # 21:00 UTC; closes at 02:00 UTC
    assert london.elapsed(opened, opened + timedelta(hours=12)) == timedelta(hours=5)
    assert london.closed_since(opened + timedelta(hours=6)) == opened + timedelta(hours=5)


@pytest.mark.parametrize(("hours", "words"), [
    ({**HOURS, "opens": "18:00", "closes": "02:00"}, "for hours past midnight add overnight: true"),
    ({**HOURS, "opens": "09:00", "closes": "09:00"}, "for hours past midnight add overnight: true"),
    ({**HOURS, "overnight": True}, "remove overnight for hours within one day"),
    ({**HOURS, "closes": "24:00"}, 'for closing at midnight write "00:00" with overnight: true'),
], ids=["past-midnight", "equal", "overnight-within-a-day", "24:00"])
def test_overnight_mistakes_are_one_line_naming_the_key_and_the_fix(hours: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _settings(hours=hours)
    assert err.value.key == ("channels[0].hours.closes" if hours["closes"] == "24:00" else "channels[0].hours")
    assert words in err.value.message and "\n" not in str(err.value)


def test_overnight_hours_load_into_the_clock_and_doctor_shows_them() -> None:
    settings = _settings(hours={**HOURS, "opens": "18:00", "closes": "02:00", "overnight": True},
                         away_message="Closed", mode="cloud_api")
    assert hours_for(settings, settings.channels[0]) == NIGHTS
    found = channel_hours_finding(settings, settings.channels[0], NOW)
    assert found is not None and found.level is Severity.OK
    assert "18:00-02:00 the next day" in found.detail
