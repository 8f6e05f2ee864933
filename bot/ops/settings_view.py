"""What `/wabridge settings` shows a workspace's manager (pure): per number, its opening hours, whether it is
open now, its away message and whether the bridge sends it, and its satisfaction survey.

These settings live in app.yaml, not in the database, so the answer is read-only and says where to change them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.away import away_applies
from bot.core.config import AwayMode, BusinessHoursSettings, ChannelSettings, Mode, Settings, ThreadReplies
from bot.ops.sla import hours_for
from bot.slack.mrkdwn import escape, format_time

WHERE = ("These settings live in `app.yaml`, not in Slack: a number's `hours` (else the top-level "
         "`business_hours`), `away_message`, `csat` (else the top-level `csat`) and `away.mode`. Change them there "
         "and restart `wabridge serve`; `wabridge doctor` checks them.")
MOST_NUMBERS = 20  # each number takes two blocks; Slack takes 50 in one message
AWAY_SHOWN = 1500  # characters of an away message shown (a section holds 3,000)
HOLIDAYS_SHOWN = 5


def hours_text(settings: Settings, hours: BusinessHoursSettings, now: datetime) -> str:
    """`10:00 to 19:00 mon, tue (Asia/Kolkata); holidays 2026-12-25, ...`: the hours as app.yaml sets them."""
    closes = f"{hours.closes} the next day" if hours.overnight else hours.closes
    zone = settings.hours_zone(hours)
    text = f"{hours.opens} to {closes} {', '.join(hours.days) or 'no day'} ({zone})"
    today = now.astimezone(ZoneInfo(zone)).date()
    coming = sorted(d for d in hours.holidays if d >= today)
    if coming:
        shown = ", ".join(d.isoformat() for d in coming[:HOLIDAYS_SHOWN])
        more = f" and {len(coming) - HOLIDAYS_SHOWN} more" if len(coming) > HOLIDAYS_SHOWN else ""
        text += f"; holidays {shown}{more}"
    return text


def _now_text(settings: Settings, channel: ChannelSettings, now: datetime) -> str:
    clock = hours_for(settings, channel)
    if clock is None:
        return ""
    if clock.is_open(now):
        return " · open now"
    opening = clock.next_opening(now)
    return f" · closed now, opens {format_time(opening, clock.timezone)}" if opening else " · never opens"


def _away_text(settings: Settings, channel: ChannelSettings) -> str:
    message = channel.away_message.strip()
    if not message:
        return "*Away message:* none"
    shown = escape(message[:AWAY_SHOWN]) + ("…" if len(message) > AWAY_SHOWN else "")
    quoted = "\n".join(f">{line}" for line in shown.splitlines() or [""])
    if away_applies(settings, channel):
        if channel.thread_replies is ThreadReplies.NOTES_ONLY:
            why = "not sent: this number's channel is notes-only"
        else:
            why = "sent by Wabridge once per closed period"
    elif settings.hours_of(channel) is None:
        why = "never sent: the number has no opening hours"
    elif settings.away.mode is AwayMode.OFF:
        why = "not sent: `away.mode: off`"
    else:
        why = ("not sent by Wabridge: with `away.mode: cloud_api_only` the phone app's own away message answers "
               "on this Coexistence number")
    return f"*Away message* ({why}):\n{quoted}"


def _csat_text(settings: Settings, channel: ChannelSettings) -> str:
    survey = settings.csat_of(channel)
    source = "its own" if channel.csat is not None else "the top-level `csat`"
    if not survey.enabled:
        return f"*Satisfaction survey:* off ({source})"
    days = f"{survey.quiet_days:g}"
    return (f"*Satisfaction survey:* on ({source}): in `{escape(survey.language)}`, "
            f"at most one per conversation in {days} days")


def number_block(settings: Settings, channel: ChannelSettings, now: datetime) -> dict[str, Any]:
    """One number's settings as a section."""
    mode = "Coexistence" if channel.mode is Mode.COEXISTENCE else "Cloud API"
    shown = f" {escape(channel.display_phone_number)}" if channel.display_phone_number else ""
    hours = settings.hours_of(channel)
    if hours is None:
        hours_line = "*Hours:* none set (always open; waits count the wall clock)"
    else:
        own = "its own" if channel.hours is not None else "the top-level `business_hours`"
        hours_line = f"*Hours* ({own}): {escape(hours_text(settings, hours, now))}{_now_text(settings, channel, now)}"
    lines = [f"*{escape(channel.name)}*{shown} · {mode}", hours_line, _away_text(settings, channel),
             _csat_text(settings, channel)]
    return {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}}


def settings_blocks(settings: Settings, numbers: Sequence[ChannelSettings], now: datetime) -> list[dict[str, Any]]:
    """The answer to `/wabridge settings`: each of the workspace's numbers, then where to change them."""
    head = (f"*Hours, away messages and surveys* of this workspace's {len(numbers)} number"
            f"{'' if len(numbers) == 1 else 's'} (away.mode: `{settings.away.mode.value}`)")
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    for channel in numbers[:MOST_NUMBERS]:
        blocks += [{"type": "divider"}, number_block(settings, channel, now)]
    if len(numbers) > MOST_NUMBERS:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"and {len(numbers) - MOST_NUMBERS} more: `/wabridge settings NAME` shows one number")}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": WHERE}]})
    return blocks
