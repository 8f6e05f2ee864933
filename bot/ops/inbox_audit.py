"""The inbox's audit for `wabridge report`: every take, assign, unassign, resolve, reopen, snooze and label change
in a period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack.render import ContactView
from storage.inbox import CLOCK, CUSTOMER
from storage.models import Channel, Contact, Conversation, ConversationEvent, ConversationLabel, as_utc


@dataclass(frozen=True)
class AuditEntry:
    """One stored inbox change: when, on which number and customer, what, by whom (a Slack id or "customer")."""

    at: datetime
    channel: str
    customer: str
    action: str
    actor: str
    assignee: str | None
    detail: str | None = None  # a snooze's time, a label change ("+fees -complaint")


async def changes_in(sessions: async_sessionmaker[AsyncSession], *, since: datetime, now: datetime,
                     channels: Sequence[str] | None = None, label: str | None = None) -> list[AuditEntry]:
    """The changes made in [since, now], oldest first, optionally on some channels or to conversations with
    `label` only."""
    e = ConversationEvent
    query = (select(e.created_at, Channel.name, Contact.wa_id, Contact.address_book_name, Contact.profile_name,
                    e.action, e.actor, e.assignee, e.detail)
             .join(Conversation, Conversation.id == e.conversation_id)
             .join(Channel, Channel.id == Conversation.channel_id)
             .join(Contact, Contact.id == Conversation.contact_id)
             .where(e.created_at >= since, e.created_at <= now).order_by(e.created_at, e.id))
    if channels is not None:
        query = query.where(Channel.name.in_(channels))
    if label is not None:
        query = query.where(e.conversation_id.in_(select(ConversationLabel.conversation_id)
                                                  .where(ConversationLabel.label == label)))
    async with sessions() as s:
        rows = (await s.execute(query)).all()
    return [AuditEntry(as_utc(at), channel, ContactView(wa_id, book or profile).label, action, actor, assignee, detail)
            for at, channel, wa_id, book, profile, action, actor, assignee, detail in rows]


def people_in(entries: Sequence[AuditEntry]) -> set[str]:
    """The Slack users the entries name (to look their names up)."""
    return {p for entry in entries for p in (entry.actor, entry.assignee) if p and p not in (CUSTOMER, CLOCK)}
