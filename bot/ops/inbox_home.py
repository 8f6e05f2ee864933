"""What the Home tab shows of the team inbox, per workspace: who owns which open conversation, and each owner's
resolves (read from the inbox's audit, so a reassignment counts for whoever owned it at the resolve).

`read_inbox` reads once per workspace and refresh round; `mine`, `unassigned` and `team` cut it per viewer (pure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ops.insights import Waiting, pct
from storage.inbox import OPEN, InboxAction
from storage.models import Channel, Conversation, ConversationEvent, as_utc, utcnow


@dataclass(frozen=True)
class Resolve:
    """One resolve of the period: whose conversation it was then, and how long it had been open."""

    owner: str | None
    at: datetime
    took: timedelta


@dataclass(frozen=True)
class InboxState:
    """A workspace's open conversations' owners and its resolves since the week's start."""

    owners: Mapping[int, str]  # open conversation id -> owner
    resolves: Sequence[Resolve] = ()
    snoozed: frozenset[int] = frozenset()  # open conversations snoozed now (owned or not)


@dataclass(frozen=True)
class OwnerLine:
    """A row of the managers' team view."""

    owner: str
    open: int
    waiting: int
    waiting_longest: timedelta | None
    resolved_today: int
    median_to_resolve: timedelta | None  # this week


async def read_inbox(sessions: async_sessionmaker[AsyncSession], *, week: datetime,
                     channels: Sequence[str] | None = None, now: datetime | None = None) -> InboxState:
    """The owners of open conversations, the snoozed ones, and the resolves made since `week` (on `channels`
    only, if given)."""
    in_channels = [] if channels is None else [Conversation.channel_id.in_(
        select(Channel.id).where(Channel.name.in_(list(channels))))]
    async with sessions() as s:
        owners = {conv: owner for conv, owner in (await s.execute(select(Conversation.id, Conversation.owner).where(
            Conversation.inbox_status == OPEN, Conversation.owner.is_not(None), *in_channels))).tuples() if owner}
        snoozed = frozenset((await s.scalars(select(Conversation.id).where(
            Conversation.inbox_status == OPEN, Conversation.snoozed_until > (now or utcnow()), *in_channels))).all())
        resolved = select(ConversationEvent.conversation_id).where(
            ConversationEvent.action == InboxAction.RESOLVE.value, ConversationEvent.created_at >= week)
        rows = (await s.execute(
            select(ConversationEvent.conversation_id, Conversation.created_at, ConversationEvent.action,
                   ConversationEvent.actor, ConversationEvent.assignee, ConversationEvent.created_at)
            .join(Conversation, Conversation.id == ConversationEvent.conversation_id)
            .where(ConversationEvent.conversation_id.in_(resolved), *in_channels)
            .order_by(ConversationEvent.conversation_id, ConversationEvent.id))).tuples().all()
    return InboxState(owners, tuple(r for r in _resolves(rows) if r.at >= as_utc(week)), snoozed)


def _resolves(rows: Sequence[tuple[int, datetime, str, str, str | None, datetime]]) -> list[Resolve]:
    """Replay each conversation's audit: the owner and the opening move with it, a resolve is measured."""
    out: list[Resolve] = []
    current: int | None = None
    owner: str | None = None
    opened = datetime.min
    for conv_id, created, action, actor, assignee, at in rows:
        at = as_utc(at)
        if conv_id != current:
            current, owner, opened = conv_id, None, as_utc(created)
        if action == InboxAction.TAKE:
            owner = actor
        elif action == InboxAction.ASSIGN:
            owner = assignee
        elif action == InboxAction.UNASSIGN:
            owner = None
        elif action == InboxAction.REOPEN:
            opened = at
        elif action == InboxAction.RESOLVE:
            out.append(Resolve(owner, at, max(at - opened, timedelta(0))))
    return out


def mine(state: InboxState, user: str, waiting: Sequence[Waiting]) -> tuple[list[Waiting], int, int]:
    """The user's waiting conversations (oldest first), how many of theirs are snoozed, and how many more are
    open but answered."""
    owned = {c for c, o in state.owners.items() if o == user}
    rows = [w for w in waiting if w.conversation_id in owned]
    snoozed = len(owned & state.snoozed)
    return rows, snoozed, len(owned) - len(rows) - snoozed


def unassigned(state: InboxState, waiting: Sequence[Waiting]) -> list[Waiting]:
    """Waiting conversations nobody owns, oldest first."""
    return [w for w in waiting if w.conversation_id not in state.owners]


def team(state: InboxState, waiting: Sequence[Waiting], today: datetime) -> list[OwnerLine]:
    """Per owner (of an open conversation, or of one resolved this week): the managers' team view."""
    waits: dict[str, list[timedelta]] = {}
    for w in waiting:
        if (owner := state.owners.get(w.conversation_id)) is not None:
            waits.setdefault(owner, []).append(w.waited)
    took: dict[str, list[timedelta]] = {}
    today_count: dict[str, int] = {}
    for r in state.resolves:
        if r.owner is None:
            continue
        took.setdefault(r.owner, []).append(r.took)
        if r.at >= today:
            today_count[r.owner] = today_count.get(r.owner, 0) + 1
    open_count: dict[str, int] = {}
    for owner in state.owners.values():
        open_count[owner] = open_count.get(owner, 0) + 1
    people = sorted(set(open_count) | set(took), key=lambda p: (-open_count.get(p, 0), p))
    return [OwnerLine(p, open_count.get(p, 0), len(waits.get(p, [])), max(waits[p]) if p in waits else None,
                      today_count.get(p, 0), pct(took.get(p, []), 50)) for p in people]
