"""Satisfaction on the Home tab (pure): per staff member, the surveys of the last 7 and 30 days (managers), and a
member's own line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.ops.csat_figures import StaffScore
from bot.slack.render import escape

ROWS = 15


@dataclass(frozen=True)
class Satisfaction:
    """The workspace's survey figures per staff member for the last 7 and the last 30 days."""

    week: Sequence[StaffScore]
    month: Sequence[StaffScore]


def _span(s: StaffScore | None) -> str:
    if s is None:
        return "none sent"
    if not s.answered:
        return f"0 of {s.sent} answered"
    return f"{s.answered} of {s.sent} answered, average {s.average:.1f}/3, {s.best_share:.0%} best"


def _person(user: str, names: Mapping[str, str]) -> str:
    if not user:
        return "nobody"
    return escape(names[user]) if user in names else f"<@{user}>"


def team_lines(sat: Satisfaction, names: Mapping[str, str]) -> list[str]:
    """One line per staff member with a survey in the last 30 days, most surveyed first."""
    week = {s.staff: s for s in sat.week}
    lines = [f"• {_person(s.staff, names)}: last 7 days {_span(week.get(s.staff))} · last 30 days {_span(s)}"
             for s in sat.month[:ROWS]]
    if len(sat.month) > ROWS:
        lines.append(f"_and {len(sat.month) - ROWS} more: see `wabridge report`_")
    return lines


def team_section(sat: Satisfaction | None, names: Mapping[str, str]) -> list[dict[str, object]]:
    """The managers' satisfaction block; nothing when no survey went out in 30 days (surveys off) or unreadable."""
    if sat is None or not sat.month:
        return []
    text = "*Satisfaction* (surveys after a resolve, credited to the owner)\n" + "\n".join(team_lines(sat, names))
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]


def own_line(sat: Satisfaction | None, user: str) -> str:
    """A member's own survey figures ('' when they have none in 30 days)."""
    if sat is None:
        return ""
    month = next((s for s in sat.month if s.staff == user), None)
    if month is None:
        return ""
    week = next((s for s in sat.week if s.staff == user), None)
    return f"\n*Your satisfaction surveys*: last 7 days {_span(week)} · last 30 days {_span(month)}"
