"""The team inbox on the Home tab as Block Kit (pure): "Mine", "Unassigned and waiting" with Take it buttons,
and for managers the team view per owner. Everyone sees only their workspace's conversations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.ops.inbox_home import InboxState, mine, team, unassigned
from bot.ops.insights import Waiting, humanize
from bot.slack.inbox_view import TAKE_ACTION
from bot.slack.render import escape

MINE_ROWS = 10
TAKE_ROWS = 5  # one block each (a Take it button): the Home view holds at most 100 blocks
TEAM_ROWS = 15
SECTION_LIMIT = 3000
UNREADABLE = (":warning: The inbox could not be read just now (the rest of this tab is up to date); it comes back "
              "at the next refresh.")


def _section(text: str, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}
    if accessory is not None:
        block["accessory"] = accessory
    return block


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def _who(w: Waiting, links: Mapping[int, str]) -> str:
    name = escape(w.customer)
    link = links.get(w.conversation_id)
    return f"<{link}|{name}>" if link else name


def _person(user: str, names: Mapping[str, str]) -> str:
    return escape(names[user]) if user in names else f"<@{user}>"


def _take(conversation_id: int) -> dict[str, Any]:
    return {"type": "button", "action_id": TAKE_ACTION, "text": {"type": "plain_text", "text": "Take it"},
            "value": json.dumps({"conversation_id": conversation_id})}


def inbox_blocks(user: str, state: InboxState | None, waiting: Sequence[Waiting],
                 links: Mapping[int, str]) -> list[dict[str, Any]]:
    """Everyone's part: their own conversations and the unassigned ones waiting (None: could not be read)."""
    blocks: list[dict[str, Any]] = [_header("Your inbox")]
    if state is None:
        return [*blocks, _section(UNREADABLE)]
    own, snoozed, answered = mine(state, user, waiting)
    lines = [f"• {_who(w, links)} ({escape(w.channel)}): waiting {humanize(w.waited)}" for w in own[:MINE_ROWS]]
    if len(own) > MINE_ROWS:
        lines.append(f"_and {len(own) - MINE_ROWS} more waiting_")
    rest = f"{answered} more open, answered" if answered else "none open and answered"
    asleep = f"{snoozed} snoozed, " if snoozed else ""
    blocks.append(_section(f"*Mine*: {len(own)} waiting, {asleep}{rest}" + ("\n" + "\n".join(lines) if lines else "")))
    free = unassigned(state, waiting)
    blocks.append(_section(f"*Unassigned and waiting*: {len(free)}" if free else
                           "*Unassigned and waiting*: nobody :white_check_mark:"))
    blocks += [_section(f"{_who(w, links)} ({escape(w.channel)}): waiting {humanize(w.waited)}",
                        _take(w.conversation_id)) for w in free[:TAKE_ROWS]]
    if len(free) > TAKE_ROWS:
        blocks.append(_context(f"and {len(free) - TAKE_ROWS} more: take them from their threads"))
    return blocks


def team_blocks(state: InboxState | None, waiting: Sequence[Waiting], today: datetime,
                names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The managers' team view: per owner open, waiting (longest), resolved today, median time to resolve."""
    blocks: list[dict[str, Any]] = [{"type": "divider"}, _header("Team inbox")]
    if state is None:
        return [*blocks, _section(UNREADABLE)]
    rows = team(state, waiting, today)
    if not rows:
        return [*blocks, _section("Nobody owns a conversation yet: *Take it* on a thread or below.")]
    lines = [f"• {_person(r.owner, names)}: {r.open} open, {_waiting(r.waiting, r.waiting_longest)}, "
             f"{r.resolved_today} resolved today, {_median(r.median_to_resolve)}"
             for r in rows[:TEAM_ROWS]]
    if len(rows) > TEAM_ROWS:
        lines.append(f"_and {len(rows) - TEAM_ROWS} more_")
    return [*blocks, _section("\n".join(lines))]


def _waiting(n: int, longest: timedelta | None) -> str:
    return f"{n} waiting (longest {humanize(longest)})" if n and longest is not None else "none waiting"


def _median(span: timedelta | None) -> str:
    return "none resolved this week" if span is None else f"median to resolve {humanize(span)} this week"
