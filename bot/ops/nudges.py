"""Reminders for conversations waiting past their channel's first-response target (pure).

One reminder per wait: its key names the wait's first customer message, and the Slack outbox stores a key
once, so every process may look and the thread still gets one reminder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bot.ops.insights import Waiting, humanize, overdue
from bot.ops.sla import Target, mention_markup
from bot.slack.render import escape


@dataclass(frozen=True)
class Nudge:
    conversation_id: int
    key: str
    text: str  # Slack mrkdwn, customer text escaped


def nudge_key(w: Waiting) -> str:
    return f"nudge:{w.conversation_id}:{w.ref}"


def nudge_text(w: Waiting, target: Target) -> str:
    mention = mention_markup(target.mention)
    minutes = int(target.limit.total_seconds() // 60)
    return (f"{mention + ' ' if mention else ''}:alarm_clock: {escape(w.customer)} has waited "
            f"{humanize(w.waited)} for a reply (target: {minutes} min).")


def nudges(waiting: Iterable[Waiting], targets: Mapping[str, Target], now: datetime) -> list[Nudge]:
    """A reminder for each wait past its channel's target; channels without a target get none.

    Only while the 24-hour window is open: after it a reply from Slack is no longer possible, and turning
    the target on must not remind the team of every old unanswered conversation at once."""
    out = []
    by_channel: dict[str, list[Waiting]] = {}
    for w in waiting:
        if w.window_closes_at <= now:
            continue
        by_channel.setdefault(w.channel, []).append(w)
    for channel, waits in by_channel.items():
        target = targets.get(channel)
        if target is None:
            continue
        out += [Nudge(w.conversation_id, nudge_key(w), nudge_text(w, target)) for w in overdue(waits, target.limit)]
    return out
