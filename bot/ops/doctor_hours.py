"""`doctor`'s checks of opening hours, away messages and satisfaction surveys (pure: reads settings only).

Start-up already refuses hours it cannot read (a bad time, opens after closes, an unknown time zone); these
are the settings that load but cannot do what their owner meant: hours that never open, an away message that
is never sent, a Coexistence number where the phone app and the bridge would both answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core.away import away_applies
from bot.core.config import AwayMode, ChannelSettings, Mode, Settings, ThreadReplies
from bot.ops.checks import CheckResult, failed, passed, warned
from bot.ops.sla import business_hours

PLACEHOLDERS = ("name", "first_name", "number", "business")
_BRACES = re.compile(r"\{([A-Za-z_]+)\}")
PHONE_APP_FIX = ("in the WhatsApp Business app on the phone, turn off Business tools > Away message, or set "
                 "away.mode: cloud_api_only so only the phone app answers")


def hours_findings(settings: Settings, channels: Sequence[ChannelSettings], now: datetime) -> list[CheckResult]:
    """One finding per number that has opening hours or an away message, and per number whose survey is on."""
    out: list[CheckResult] = []
    for channel in channels:
        for found in (channel_hours_finding(settings, channel, now), csat_finding(settings, channel)):
            if found is not None:
                out.append(found)
    return out


def csat_finding(settings: Settings, channel: ChannelSettings) -> CheckResult | None:
    """A number whose satisfaction survey is on: whether it can ever be sent (None when it is off)."""
    if not settings.csat_of(channel).enabled:
        return None
    name = f"survey {channel.name}"
    if channel.thread_replies is ThreadReplies.NOTES_ONLY:
        return warned(name, "csat is on, but the number's channel is notes-only: nobody resolves from Slack there "
                      "and no survey is ever sent", f"turn csat off for {channel.name}, or set thread_replies: "
                      "two_way")
    survey = settings.csat_of(channel)
    return passed(name, f"sent after a resolve from Slack ({survey.language}, quiet for {survey.quiet_days:g} days)")


def channel_hours_finding(settings: Settings, channel: ChannelSettings, now: datetime) -> CheckResult | None:
    """What is wrong with a number's hours and away message, or that they are fine; None when it has neither."""
    name = f"hours {channel.name}"
    hours = settings.hours_of(channel)
    message = channel.away_message.strip()
    if hours is None:
        if not message:
            return None
        return failed(name, "away_message is set but the number has no opening hours, so it is never sent",
                      f"set channels[].hours (or business_hours) for {channel.name}, or remove away_message")
    zone = settings.hours_zone(hours)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return failed(name, f"unknown time zone {zone!r}", "use an IANA name such as Asia/Kolkata (and install "
                      "the tzdata package if this machine has no time zone database)")
    clock = business_hours(settings, hours)
    if clock.open_minutes_a_week() == 0 or clock.next_opening(now) is None:
        return failed(name, "these hours never open (no working day, or every one a holiday): every customer "
                      "waits forever and the SLA clock never runs", "list the working days under days, with "
                      "opens earlier than closes (or overnight: true)")
    unknown = sorted({m for m in _BRACES.findall(message) if m not in PLACEHOLDERS})
    if unknown:
        return warned(name, "the away message has unknown placeholders: " + ", ".join(f"{{{u}}}" for u in unknown)
                      + " (sent as typed)", "use only " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
    today = now.astimezone(clock.zone).date()
    if hours.holidays and max(hours.holidays) < today:
        return warned(name, f"every holiday listed is past (the last was {max(hours.holidays).isoformat()})",
                      "add this year's holiday dates under holidays")
    closes = f"{hours.closes} the next day" if hours.overnight else hours.closes
    shown = f"{hours.opens}-{closes} {', '.join(hours.days)} ({zone})"
    mode = settings.away.mode
    if not message:
        if mode is AwayMode.OFF or (channel.mode is Mode.COEXISTENCE and mode is AwayMode.CLOUD_API_ONLY):
            return passed(name, f"open {shown}; no away message")
        return warned(name, f"open {shown}, but the away message is missing: a customer writing while closed "
                      "hears nothing until someone answers", f"set channels[].away_message for {channel.name}, "
                      "or away.mode: off")
    if channel.mode is Mode.COEXISTENCE and mode is AwayMode.ALWAYS:
        return warned(name, f"open {shown}; the bridge sends the away message on this Coexistence number "
                      "(away.mode: always): if the phone app's own away message is on too, customers get both",
                      PHONE_APP_FIX)
    if not away_applies(settings, channel):
        why = "away.mode: off" if mode is AwayMode.OFF else \
            "away.mode: cloud_api_only leaves this Coexistence number's customers to the phone app's away message"
        return passed(name, f"open {shown}; away message not sent by the bridge ({why})")
    return passed(name, f"open {shown}; the away message is sent once per closed period")
