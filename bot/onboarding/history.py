"""Earlier history in Slack: never message by message; a summary and the full transcript as a file, posted
when a conversation's thread is first created or when a manager asks (`/campaign history @number`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.core.origin import Direction
from bot.ops.export import describe_content
from bot.slack import limits, render
from bot.slack.display_names import shown_name
from storage.models import Channel, Contact, Conversation, Message

if TYPE_CHECKING:
    from bot.slack.outbox import ItemContext, Thread

LAST_SHOWN = 5
LINE_CHARS = 200
SUMMARY_PART = "history-summary"
FILE_PART = "history-file"


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    who: str
    text: str


@dataclass(frozen=True)
class History:
    """A conversation's imported history, oldest first."""

    channel: str
    wa_id: str
    contact_name: str | None
    lines: tuple[HistoryLine, ...]

    @property
    def filename(self) -> str:
        return f"history-{self.channel}-{self.wa_id}.txt"

    @property
    def title(self) -> str:
        who = render.ContactView(self.wa_id, self.contact_name).label
        return f"WhatsApp Business app history with {who} on {self.channel}"


def _day(at: datetime, tz: str) -> str:
    try:
        local = at.astimezone(ZoneInfo(tz))
    except (KeyError, ValueError):
        local = at
    return f"{local.day} {local:%b %Y}"


def summary_post(history: History, tz: str = "UTC") -> render.Post:
    """Count, date range and the last few messages; the transcript file carries the rest."""
    lines = history.lines
    n = len(lines)
    first, last = lines[0].at, lines[-1].at
    span = _day(first, tz) if _day(first, tz) == _day(last, tz) else f"{_day(first, tz)} to {_day(last, tz)}"
    head = (f":scroll: *Earlier history from the WhatsApp Business app*: {n:,} message{'s' if n != 1 else ''}, "
            f"{span}")
    shown = lines[-LAST_SHOWN:]
    quoted = "\n".join(
        f"> {render.escape(render.format_time(line.at, tz))} · *{render.escape(line.who)}*: "
        f"{render.escape(_short(line.text))}" for line in shown)
    label = "Last message" if len(shown) == 1 else f"Last {len(shown)} messages"
    body = f"{head}\n{label}:\n{quoted}"
    note = (f"The full transcript is attached ({render.escape(history.filename)}). Imported history is never "
            "posted message by message.")
    return render.Post(text=limits.summary(f"Earlier history: {n} messages, {span}"),
                       blocks=[*limits.sections(body), limits.context(note)])


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= LINE_CHARS else flat[:LINE_CHARS - 1] + "…"


def transcript_bytes(history: History, tz: str = "UTC") -> bytes:
    """The whole history as a plain-text file, oldest first."""
    text = render.transcript(history.title, (render.TranscriptLine(line.at, line.who, line.text)
                                             for line in history.lines), tz)
    return text.encode("utf-8")


def history_lines(messages: Sequence[Message], contact_name: str | None) -> tuple[HistoryLine, ...]:
    """Messages as transcript lines: the customer by name, the business as 'Phone app'."""
    out = []
    for m in messages:
        who = (shown_name(contact_name) or "Customer") if m.direction is Direction.INBOUND else "Phone app"
        out.append(HistoryLine(m.wa_timestamp, who, describe_content(m.type, m.text, m.content)))
    return tuple(out)


async def load_history(ctx: ItemContext, conversation_id: int) -> History | None:
    """The conversation's imported messages in WhatsApp timestamp order; None when there are none."""
    async with ctx.deps.sessions() as s:
        messages = (await s.scalars(select(Message).where(
            Message.conversation_id == conversation_id, Message.is_history.is_(True))
            .order_by(Message.wa_timestamp, Message.id))).all()
        if not messages:
            return None
        conv = await s.get(Conversation, conversation_id)
        contact = await s.get(Contact, conv.contact_id) if conv else None
        channel = await s.get(Channel, conv.channel_id) if conv else None
    if contact is None or channel is None:
        return None
    name = contact.address_book_name or contact.profile_name
    return History(channel.name, contact.wa_id, name, history_lines(messages, name))


async def post_history_intro(ctx: ItemContext, conversation_id: int, thread: Thread) -> bool:
    """Post the summary and upload the transcript into the thread (once per outbox item); False if no history."""
    history = await load_history(ctx, conversation_id)
    if history is None:
        return False
    tz = ctx.deps.settings.timezone
    await ctx.post(thread.channel, summary_post(history, tz), thread_ts=thread.ts, part=SUMMARY_PART)
    await ctx.upload(thread.channel, thread.ts, transcript_bytes(history, tz), history.filename,
                     title=history.title, part=FILE_PART)
    return True
