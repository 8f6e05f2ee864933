"""The team inbox's state in the database: a conversation's owner and status, and the audit of every change.

Each change is one conditional UPDATE (it changes nothing when the conversation is already so) and one
`conversation_events` row keyed by what caused it (a Slack interaction, a customer's message): a replay of
the same cause finds the key and changes nothing, in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CursorResult, Select, Update, delete, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.among import among
from storage.models import Conversation, ConversationEvent, ConversationLabel
from storage.upsert import insert_ignore

CUSTOMER = "customer"  # the actor of a reopen caused by the customer writing again
CLOCK = "snooze"  # the actor of a wake when the snooze's time came
OPEN, RESOLVED = "open", "resolved"


class InboxAction(StrEnum):
    TAKE = "take"
    ASSIGN = "assign"
    RESOLVE = "resolve"
    REOPEN = "reopen"
    UNASSIGN = "unassign"
    SNOOZE = "snooze"
    WAKE = "wake"  # back from a snooze: its time came, the customer wrote, or someone unsnoozed it
    LABEL = "label"  # labels changed: the detail says how ("+fees -complaint")


class Outcome(StrEnum):
    DONE = "done"
    REPLAY = "replay"  # the same interaction was applied before
    UNCHANGED = "unchanged"  # the conversation already was so


@dataclass(frozen=True)
class Change:
    """One inbox change asked for: by whom, on which conversation, caused by `dedupe_key`."""

    conversation_id: int
    slack_team: str
    action: InboxAction
    actor: str
    at: datetime
    dedupe_key: str
    assignee: str | None = None  # ASSIGN's new owner; UNASSIGN's owner before (changed only while still so)
    unowned_only: bool = False  # TAKE only while nobody owns it (a click, or the first reply from Slack)
    by_reply: bool = False  # a TAKE made by answering first (inbox.auto_assign: first_reply)
    until: datetime | None = None  # SNOOZE's time; a timed WAKE's snooze (changed only while still so)
    labels: tuple[str, ...] | None = None  # LABEL's new set of labels


async def apply(session: AsyncSession, change: Change) -> Outcome:
    """Record and apply one change in the caller's transaction."""
    event_id = await insert_ignore(session, ConversationEvent, {
        "conversation_id": change.conversation_id, "slack_team": change.slack_team, "action": change.action.value,
        "actor": change.actor, "assignee": change.assignee, "dedupe_key": change.dedupe_key,
        "detail": change.until.isoformat() if change.until is not None else None,
        "created_at": change.at}, ["dedupe_key"])
    if event_id is None:
        return Outcome.REPLAY
    if change.action is InboxAction.LABEL:
        return await _set_labels(session, change, event_id)
    result = await session.execute(_update(change).execution_options(synchronize_session=False))
    if not isinstance(result, CursorResult) or result.rowcount != 1:
        await session.execute(delete(ConversationEvent).where(ConversationEvent.id == event_id))
        return Outcome.UNCHANGED
    return Outcome.DONE


async def _set_labels(session: AsyncSession, change: Change, event_id: int) -> Outcome:
    """Make the conversation's labels `change.labels`; the audit row's detail says what changed."""
    wanted = set(change.labels or ())
    conv = Conversation.id == change.conversation_id
    owned = await session.scalar(select(Conversation.id).where(conv, Conversation.slack_team == change.slack_team))
    have = set((await session.scalars(select(ConversationLabel.label).where(
        ConversationLabel.conversation_id == change.conversation_id))).all())
    if owned is None or wanted == have:
        await session.execute(delete(ConversationEvent).where(ConversationEvent.id == event_id))
        return Outcome.UNCHANGED
    if have - wanted:
        await session.execute(delete(ConversationLabel).where(
            ConversationLabel.conversation_id == change.conversation_id, ConversationLabel.label.in_(have - wanted)))
    for label in sorted(wanted - have):
        await insert_ignore(session, ConversationLabel, {"conversation_id": change.conversation_id, "label": label},
                            ["conversation_id", "label"])
    detail = " ".join([*(f"+{x}" for x in sorted(wanted - have)), *(f"-{x}" for x in sorted(have - wanted))])
    await session.execute(update(ConversationEvent).where(ConversationEvent.id == event_id)
                          .values(detail=detail[:255]))
    return Outcome.DONE


async def labels_of(session: AsyncSession, conversation_id: int) -> tuple[str, ...]:
    """A conversation's labels, sorted."""
    return tuple(sorted((await session.scalars(select(ConversationLabel.label).where(
        ConversationLabel.conversation_id == conversation_id))).all()))


def _update(change: Change) -> Update:
    c = Conversation
    where = [c.id == change.conversation_id, c.slack_team == change.slack_team]
    if change.action is InboxAction.TAKE or change.action is InboxAction.ASSIGN:
        owner = change.actor if change.action is InboxAction.TAKE else change.assignee
        free = c.owner.is_(None) if change.unowned_only else or_(c.owner.is_(None), c.owner != owner)
        return update(c).where(*where, free).values(owner=owner)
    if change.action is InboxAction.UNASSIGN:
        held = c.owner == change.assignee if change.assignee else false()  # nobody to unassign: no change
        return update(c).where(*where, held).values(owner=None)
    if change.action is InboxAction.RESOLVE:  # a resolved conversation waits on nobody: its snooze goes
        return update(c).where(*where, c.inbox_status != RESOLVED).values(
            inbox_status=RESOLVED, status_by=change.actor, status_at=change.at, snoozed_until=None)
    if change.action is InboxAction.SNOOZE:
        return update(c).where(*where, c.inbox_status == OPEN, or_(
            c.snoozed_until.is_(None), c.snoozed_until != change.until)).values(snoozed_until=change.until)
    if change.action is InboxAction.WAKE:
        still = c.snoozed_until == change.until if change.until is not None else c.snoozed_until.is_not(None)
        return update(c).where(*where, still).values(snoozed_until=None)
    return update(c).where(*where, c.inbox_status == RESOLVED).values(
        inbox_status=OPEN, status_by=change.actor, status_at=change.at)


async def owner_of(session: AsyncSession, conversation_id: int, slack_team: str) -> str | None:
    """Who owns a conversation of this workspace now (None: nobody, or not this workspace's)."""
    return await session.scalar(select(Conversation.owner).where(Conversation.id == conversation_id,
                                                                 Conversation.slack_team == slack_team))


async def open_since(session: AsyncSession, conversation_id: int) -> datetime | None:
    """When an open conversation was opened: its last reopening, else its creation; None when resolved."""
    row = (await session.execute(select(Conversation.inbox_status, Conversation.status_at, Conversation.created_at)
                                 .where(Conversation.id == conversation_id))).first()
    if row is None or row[0] == RESOLVED:
        return None
    return row[1] or row[2]


def _waiting(postgres: bool) -> Select[tuple[int, str, str, datetime | None, datetime | None]]:
    c = Conversation.__table__.c
    return (select(c.id, c.slack_team, c.inbox_status, c.status_at, c.snoozed_until)
            .where(among(c.id, "ids", postgres=postgres), or_(c.inbox_status == RESOLVED, c.snoozed_until.is_not(None)))
            .order_by(c.id))


# customer_wrote's read, built once per dialect (True: PostgreSQL) over the table's columns: the webhook worker
# runs it for every batch of customer messages, and a new statement's cache key cost more than the read.
_WAITING = {postgres: _waiting(postgres) for postgres in (True, False)}


async def customer_wrote(session: AsyncSession, latest: dict[int, datetime]
                         ) -> tuple[list[tuple[int, datetime]], list[Change]]:
    """The customer wrote in these conversations (id -> its newest message's time): reopen the resolved ones
    whose message was written after the resolve, then wake the snoozed ones. Returns (the reopened ones with
    that message's time, the wakes applied); one read finds both kinds (a resolved conversation has no snooze,
    and reopening leaves a snooze as it is)."""
    if not latest:
        return [], []
    ids = sorted(latest)
    rows = (await session.execute(_WAITING[session.bind.dialect.name == "postgresql"], {"ids": ids})).tuples().all()
    reopened = []
    for conv_id, team, status, resolved_at, _ in rows:
        if status != RESOLVED:
            continue
        at = latest[conv_id]
        # WhatsApp times messages to the second: one written in the second of the resolve reopens it (a customer
        # left waiting is worse than a second look); one written before it, delivered late, leaves it resolved.
        if resolved_at is not None and at < resolved_at.replace(microsecond=0):
            continue
        change = Change(conv_id, team, InboxAction.REOPEN, CUSTOMER, at, f"customer:{conv_id}:{at.isoformat()}")
        if await apply(session, change) is Outcome.DONE:
            reopened.append((conv_id, at))
    woken = []
    for conv_id, team, _, _, until in rows:
        if until is None:
            continue
        at = latest[conv_id]
        change = Change(conv_id, team, InboxAction.WAKE, CUSTOMER, at, f"customer-wake:{conv_id}:{at.isoformat()}",
                        until=until)
        if await apply(session, change) is Outcome.DONE:
            woken.append(change)
    return reopened, woken


async def wake_due(session: AsyncSession, now: datetime) -> list[Change]:
    """Wake the conversations whose snooze time has come (each once, whichever process looks first)."""
    rows = (await session.execute(select(Conversation.id, Conversation.slack_team, Conversation.snoozed_until)
                                  .where(Conversation.snoozed_until <= now)
                                  .order_by(Conversation.snoozed_until).limit(500))).tuples().all()
    woken = []
    for conv_id, team, until in rows:
        if until is None:
            continue
        change = Change(conv_id, team, InboxAction.WAKE, CLOCK, now, f"wake:{conv_id}:{until.isoformat()}",
                        until=until)
        if await apply(session, change) is Outcome.DONE:
            woken.append(change)
    return woken


async def events_of(session: AsyncSession, conversation_id: int) -> list[ConversationEvent]:
    """A conversation's inbox changes, oldest first."""
    return list((await session.scalars(select(ConversationEvent).where(
        ConversationEvent.conversation_id == conversation_id).order_by(ConversationEvent.id))).all())
