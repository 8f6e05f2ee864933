"""Load stored messages as the event sequences bot/insights.py reads, and the figures for one period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.insights import ConversationInput, Elapsed, Event, Figures, classify, figures, responder_of, wall_clock
from bot.slack.render import ContactView
from storage.models import Channel, Contact, Conversation, Message, utcnow

LOOKBACK = timedelta(days=7)
"""How far before a period its waits are traced back: a wait that began earlier counts from within it."""


def customer_name(contact: Contact) -> str:
    """Named as in the threads: the phone app's address book name, else the WhatsApp profile name, and the number."""
    return ContactView(contact.wa_id, contact.address_book_name or contact.profile_name).label


async def load_conversations(sessions: async_sessionmaker[AsyncSession], *, start: datetime, end: datetime,
                             channels: Sequence[str] | None = None) -> list[ConversationInput]:
    """Every conversation with a message in [start, end], with those messages as events."""
    query = (select(Message.id, Message.conversation_id, Message.direction, Message.source, Message.type,
                    Message.is_note, Message.is_history, Message.status, Message.slack_user, Message.wa_timestamp)
             .join(Conversation, Conversation.id == Message.conversation_id)
             .where(Message.wa_timestamp >= start, Message.wa_timestamp <= end))
    if channels is not None:
        query = query.join(Channel, Channel.id == Conversation.channel_id).where(Channel.name.in_(channels))
    events: dict[int, list[Event]] = {}
    async with sessions() as s:
        for row in (await s.execute(query.order_by(Message.wa_timestamp, Message.id))).all():
            kind = classify(direction=row.direction, source=row.source, type=row.type, is_note=row.is_note,
                            is_history=row.is_history, status=row.status, slack_user=row.slack_user)
            events.setdefault(row.conversation_id, []).append(
                Event(row.wa_timestamp, kind, responder_of(row.source, row.slack_user), row.id))
        if not events:
            return []
        rows = (await s.execute(
            select(Conversation, Contact, Channel)
            .join(Contact, Contact.id == Conversation.contact_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(Conversation.id.in_(list(events))))).all()
    out = []
    for conv, contact, channel in rows:
        thread = (conv.slack_channel, conv.slack_thread_ts) if conv.slack_channel and conv.slack_thread_ts \
            else None
        out.append(ConversationInput(conv.id, channel.name, customer_name(contact), tuple(events[conv.id]), thread))
    out.sort(key=lambda c: c.conversation_id)
    return out


async def period_figures(sessions: async_sessionmaker[AsyncSession], *, since: datetime,
                         now: datetime | None = None, channels: Sequence[str] | None = None,
                         elapsed: Elapsed = wall_clock) -> Figures:
    """The figures for [since, now] from stored messages."""
    now = now or utcnow()
    convs = await load_conversations(sessions, start=since - LOOKBACK, end=now, channels=channels)
    return figures(convs, since=since, now=now, elapsed=elapsed)
