"""Load stored messages as the event sequences bot/ops/insights.py reads, and the figures for one period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ops.insights import (
    ConversationInput,
    Elapsed,
    Event,
    Figures,
    Kind,
    classify,
    figures,
    responder_of,
    wall_clock,
)
from bot.slack.render import ContactView
from storage.models import Channel, Contact, Conversation, ConversationLabel, Message, as_utc, utcnow

LOOKBACK = timedelta(days=7)
"""How far before a period its waits are traced back: a wait that began earlier counts from within it."""


async def load_conversations(sessions: async_sessionmaker[AsyncSession], *, start: datetime, end: datetime,
                             channels: Sequence[str] | None = None,
                             label: str | None = None) -> list[ConversationInput]:
    """Every conversation with a message in [start, end] (with `label` only, if given), with those messages as
    events."""
    in_period = (Message.wa_timestamp >= start) & (Message.wa_timestamp <= end)
    query = (select(Message.id, Message.conversation_id, Message.direction, Message.source, Message.type,
                    Message.is_note, Message.is_history, Message.status, Message.slack_user, Message.wa_timestamp)
             .where(in_period))
    # Plain columns, not ORM objects, and a subquery rather than a list of ids: a week can hold many
    # thousands of conversations (SQLite caps a statement's parameters).
    named = (select(Conversation.id, Conversation.slack_channel, Conversation.slack_thread_ts, Contact.wa_id,
                    Contact.address_book_name, Contact.profile_name, Channel.name, Conversation.inbox_status,
                    Conversation.snoozed_until)
             .join(Contact, Contact.id == Conversation.contact_id)
             .join(Channel, Channel.id == Conversation.channel_id)
             .where(Conversation.id.in_(select(Message.conversation_id).where(in_period).distinct())))
    if channels is not None:
        wanted = select(Conversation.id).join(Channel, Channel.id == Conversation.channel_id) \
            .where(Channel.name.in_(channels))
        query = query.where(Message.conversation_id.in_(wanted))
        named = named.where(Channel.name.in_(channels))
    if label is not None:
        labelled = select(ConversationLabel.conversation_id).where(ConversationLabel.label == label)
        query = query.where(Message.conversation_id.in_(labelled))
        named = named.where(Conversation.id.in_(labelled))
    events: dict[int, list[Event]] = {}
    kinds: dict[tuple[Any, ...], Kind] = {}  # a handful of combinations over many thousand rows
    async with sessions() as s:
        # Through the connection, not the ORM session: plain rows, without the ORM's per-row loading.
        result = await (await s.connection()).execute(query)
        for mid, cid, direction, source, type_, is_note, is_history, status, slack_user, at in result.tuples():
            key = (direction, source, type_, is_note, is_history, status, slack_user is None)
            kind = kinds.get(key)
            if kind is None:
                kind = kinds[key] = classify(direction=direction, source=source, type=type_, is_note=is_note,
                                             is_history=is_history, status=status, slack_user=slack_user)
            if kind is Kind.OTHER:  # neither starts nor ends a wait
                continue
            found = events.get(cid)
            if found is None:
                found = events[cid] = []
            found.append(Event(at, kind, responder_of(source, slack_user), mid))
        if not events:
            return []
        rows = (await (await s.connection()).execute(named)).all()
    out = []
    for cid, slack_channel, thread_ts, wa_id, book_name, profile_name, channel_name, status, snoozed in rows:
        if cid not in events:  # written between the two reads
            continue
        name = ContactView(wa_id, book_name or profile_name)  # labelled only if shown: 30 µs a number
        thread = (slack_channel, thread_ts) if slack_channel and thread_ts else None
        out.append(ConversationInput(cid, channel_name, name, tuple(events[cid]), thread, status == "resolved",
                                     snoozed is not None and as_utc(snoozed) > end))
    out.sort(key=lambda c: c.conversation_id)
    return out


async def figures_for(sessions: async_sessionmaker[AsyncSession], sinces: Sequence[datetime], *,
                      now: datetime | None = None, channels: Sequence[str] | None = None,
                      elapsed: Elapsed = wall_clock, elapsed_of: Mapping[str, Elapsed] | None = None,
                      label: str | None = None) -> list[Figures]:
    """The figures of several periods ending now (e.g. today and this week), from one read."""
    now = now or utcnow()
    convs = await load_conversations(sessions, start=min(sinces) - LOOKBACK, end=now, channels=channels,
                                     label=label)
    return [figures(convs, since=since, now=now, elapsed=elapsed, elapsed_of=elapsed_of) for since in sinces]


async def period_figures(sessions: async_sessionmaker[AsyncSession], *, since: datetime,
                         now: datetime | None = None, channels: Sequence[str] | None = None,
                         elapsed: Elapsed = wall_clock, elapsed_of: Mapping[str, Elapsed] | None = None,
                         label: str | None = None) -> Figures:
    """The figures for [since, now] from stored messages (of conversations with `label` only, if given)."""
    [found] = await figures_for(sessions, [since], now=now, channels=channels, elapsed=elapsed,
                                elapsed_of=elapsed_of, label=label)
    return found
