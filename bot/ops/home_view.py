"""The App Home tab as Block Kit (pure): everyone's inbox (bot.ops.home_inbox_view), then the managers' dashboard
or, for everyone else, a short help view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.ops.csat_home import Satisfaction, own_line, team_section
from bot.ops.home_inbox_view import inbox_blocks, team_blocks
from bot.ops.inbox_home import InboxState
from bot.ops.insights import PHONE_APP, Figures, Waiting, humanize, pct
from bot.slack.render import escape

ROWS_PER_LIST = 10  # longer lists end with "and N more": a Home view holds at most 100 blocks
MAX_CHANNEL_BLOCKS = 80  # what the per-channel part may take of those 100
SECTION_LIMIT = 3000  # Slack's limit on a section's text


@dataclass(frozen=True)
class CampaignLine:
    name: str
    channel: str
    status: str
    done: int
    total: int
    next_fire: datetime | None = None


@dataclass(frozen=True)
class HomeData:
    now: datetime
    timezone: str
    today: Figures
    week: Figures
    channels: Sequence[str]
    campaigns: Sequence[CampaignLine] = ()
    names: Mapping[str, str] = field(default_factory=dict)  # Slack user id -> name
    links: Mapping[int, str] = field(default_factory=dict)  # conversation id -> thread permalink
    limits: Mapping[str, timedelta] = field(default_factory=dict)  # channel -> first-response target
    note_prefixes: Sequence[str] = ("note:", "//")
    # The workspace's inbox (owners, resolves); None when it could not be read (the tab shows the rest).
    inbox: InboxState | None = field(default_factory=lambda: InboxState({}))
    today_start: datetime | None = None  # local midnight, for "resolved today" (default: the last 24 hours)
    satisfaction: Satisfaction | None = None  # surveys per staff member, 7 and 30 days (None: unreadable or off)

    def inbox_part(self, user: str) -> list[dict[str, Any]]:
        """The user's own and the unassigned conversations (everyone sees them)."""
        return inbox_blocks(user, self.inbox, self.today.waiting, self.links)


def shown(f: Figures) -> list[Waiting]:
    """The waiting conversations a manager's view lists (the rest are counted): what needs a thread link."""
    out: dict[int, Waiting] = {}
    for rows in (f.waiting, f.closing):
        per_channel: dict[str, int] = {}
        for w in rows:
            per_channel[w.channel] = per_channel.get(w.channel, 0) + 1
            if per_channel[w.channel] <= ROWS_PER_LIST:
                out.setdefault(w.conversation_id, w)
    return list(out.values())


def _section(text: str) -> dict[str, Any]:
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def _who(w: Waiting, links: Mapping[int, str]) -> str:
    name = escape(w.customer)
    link = links.get(w.conversation_id)
    return f"<{link}|{name}>" if link else name


def _capped(lines: Sequence[str]) -> str:
    shown = list(lines[:ROWS_PER_LIST])
    if len(lines) > ROWS_PER_LIST:
        shown.append(f"_and {len(lines) - ROWS_PER_LIST} more_")
    return "\n".join(shown)


def _responder(r: str, names: Mapping[str, str]) -> str:
    if r == PHONE_APP:
        return ":iphone: phone app"
    return escape(names[r]) if r in names else f"<@{r}>"


def _p(f: Figures, q: float) -> str:
    found = f.p50 if q == 50 else f.p90
    return "n/a" if found is None else humanize(found)


def _local(at: datetime, tz: str) -> str:
    return at.astimezone(ZoneInfo(tz)).strftime("%H:%M")


def manager_view(d: HomeData, user: str | None = None) -> dict[str, Any]:
    """The user's inbox; per channel who is waiting and whose window closes soon; response times; replies; the
    team's inbox per owner; campaigns."""
    inbox = d.inbox_part(user) if user else []
    team = [*team_blocks(d.inbox, d.today.waiting, d.today_start or d.now - timedelta(days=1), d.names),
            *team_section(d.satisfaction, d.names)]
    budget = MAX_CHANNEL_BLOCKS - len(inbox) - len(team)  # the whole view stays within Slack's 100 blocks
    blocks: list[dict[str, Any]] = [
        *inbox,
        _header("Who is waiting"),
        _context(f"Updated {_local(d.now, d.timezone)} ({escape(d.timezone)}). A conversation waits from the "
                 "customer's first unanswered message until a reply from Slack or the phone app."),
    ]
    quiet: list[str] = []
    per_channel: list[dict[str, Any]] = []
    left_out = 0
    for channel in d.channels:
        waiting = [w for w in d.today.waiting if w.channel == channel]
        if not waiting:
            quiet.append(escape(channel))
            continue
        if len(per_channel) + 2 > budget:
            left_out += 1
            continue
        limit = d.limits.get(channel)
        lines = []
        for w in waiting:
            late = " :warning:" if limit is not None and w.waited > limit else ""
            lines.append(f"• {_who(w, d.links)}: waiting {humanize(w.waited)}{late}")
        per_channel.append(_section(f"*{escape(channel)}*: {len(waiting)} waiting\n" + _capped(lines)))
        closing = [w for w in d.today.closing if w.channel == channel]
        if closing:
            lines = [f"• {_who(w, d.links)}: closes at {_local(w.window_closes_at, d.timezone)}" for w in closing]
            per_channel.append(_section(":hourglass_flowing_sand: *24-hour window closing within 2 hours, no "
                                        "reply*\n" + _capped(lines)))
    blocks += per_channel
    if left_out:
        blocks.append(_section(f"_and {left_out} more channels with customers waiting: see `wabridge report`_"))
    if quiet:
        blocks.append(_section("Nobody waiting :white_check_mark: in " + ", ".join(quiet)))
    blocks += [
        {"type": "divider"},
        _header("How fast we answer"),
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Today*\np50 {_p(d.today, 50)} · p90 {_p(d.today, 90)}\n"
                                       f"{len(d.today.first_responses)} answered"},
            {"type": "mrkdwn", "text": f"*This week*\np50 {_p(d.week, 50)} · p90 {_p(d.week, 90)}\n"
                                       f"{len(d.week.first_responses)} answered"},
        ]},
    ]
    replies = [f"• {_responder(r, d.names)}: {n} today, {d.week.replies.get(r, 0)} this week"
               for r, n in d.today.replies.items()]
    replies += [f"• {_responder(r, d.names)}: {n} this week" for r, n in d.week.replies.items()
                if r not in d.today.replies]
    blocks.append(_section("*Replies per responder*\n" + (_capped(replies) if replies else "none this week")))
    blocks += team
    blocks += [{"type": "divider"}, _header("Campaigns")]
    if d.campaigns:
        lines = []
        for c in d.campaigns:
            when = f", next {c.next_fire.astimezone(ZoneInfo(d.timezone)):%d %b %H:%M}" if c.next_fire else ""
            lines.append(f"• *{escape(c.name)}* ({escape(c.channel)}, {c.status}{when}): {c.done}/{c.total} sent")
        blocks.append(_section(_capped(lines)))
    else:
        blocks.append(_section("No campaign running or scheduled."))
    return {"type": "home", "callback_id": "wabridge_home", "blocks": blocks}


def member_view(user: str, d: HomeData) -> dict[str, Any]:
    """The user's inbox, how to use the bridge, and the user's own figures."""
    own_week = d.week.answered_by.get(user, ())
    p50 = pct(own_week, 50)
    mine = (f"*Your replies*: {d.today.replies.get(user, 0)} today, {d.week.replies.get(user, 0)} this week\n"
            f"*Your first responses this week*: {len(own_week)}"
            + (f", p50 {humanize(p50)}" if p50 is not None else "") + own_line(d.satisfaction, user))
    notes = " or ".join(f"`{escape(p)}`" for p in d.note_prefixes) or "a note prefix"
    return {"type": "home", "callback_id": "wabridge_home", "blocks": [
        *d.inbox_part(user),
        {"type": "divider"},
        _header("Wabridge"),
        _section("Every WhatsApp conversation has its own thread in its channel.\n"
                 "• Reply in the thread to answer the customer on WhatsApp (within 24 hours of their last "
                 "message; after that, use the *Send template* shortcut).\n"
                 f"• Start a reply with {notes} to keep it in Slack only.\n"
                 "• Campaign managers run `/campaign` and see the team's figures here."),
        {"type": "divider"},
        _section(mine),
    ]}
