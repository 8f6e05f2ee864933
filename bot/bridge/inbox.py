"""The team inbox: taking, assigning, unassigning, resolving and reopening conversations, and what the thread
says of it.

A change is applied in the caller's transaction together with what Slack is owed: a thread note ("Asha assigned
this to Ravi") and a refresh of the parent, which shows the owner and the status (bot.slack.inbox_view).
A customer writing again reopens a resolved conversation; echoes, statuses and history never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.config import AutoAssign
from bot.slack.inbox_view import InboxView, who, with_inbox
from bot.slack.render import Post
from storage import inbox
from storage import repository as repo
from storage.inbox import Change, InboxAction, Outcome
from storage.models import Conversation, as_utc
from storage.outbox_kinds import Note, enqueue


def view_of(conv: Conversation, labels: tuple[str, ...] = (), choices: Sequence[str] = ()) -> InboxView:
    """The conversation's inbox state as its parent shows it."""
    return InboxView(conv.id, conv.owner, conv.inbox_status or inbox.OPEN, conv.status_by, conv.status_at,
                     as_utc(conv.snoozed_until) if conv.snoozed_until is not None else None, labels, tuple(choices))


def parent_with_inbox(header: Post, conv: Conversation, tz: str, labels: tuple[str, ...] = (),
                      choices: Sequence[str] = ()) -> Post:
    """A thread parent's header with the owner, status, labels and the inbox buttons under it."""
    return replace(header, blocks=with_inbox(list(header.blocks), view_of(conv, labels, choices), tz))


def note_text(change: Change) -> str:
    """The thread note a change leaves (mrkdwn; mentions render as names)."""
    actor = who(change.actor)
    if change.action is InboxAction.TAKE and change.by_reply:
        return f":raising_hand: {actor} answered first and owns this conversation now."
    if change.action is InboxAction.TAKE:
        return f":raising_hand: {actor} took this conversation."
    if change.action is InboxAction.ASSIGN:
        if change.assignee == change.actor:
            return f":raising_hand: {actor} assigned this to themselves."
        return f":bust_in_silhouette: {actor} assigned this to {who(change.assignee or '?')}."
    if change.action is InboxAction.UNASSIGN:
        if change.assignee == change.actor:
            return f":wave: {actor} let go of this conversation: nobody owns it now."
        return f":wave: {actor} unassigned {who(change.assignee or '?')}: nobody owns this conversation now."
    if change.action is InboxAction.RESOLVE:
        return f":white_check_mark: {actor} resolved this conversation."
    if change.action is InboxAction.LABEL:
        return f":label: {actor} set the labels: {', '.join(change.labels or ()) or 'none'}."
    if change.action is InboxAction.SNOOZE:
        return f":zzz: {actor} snoozed this conversation until {slack_time(change.until)}."
    if change.action is InboxAction.WAKE:
        if change.actor == inbox.CUSTOMER:
            return ":alarm_clock: Back from snooze: the customer wrote."
        if change.actor == inbox.CLOCK:
            return ":alarm_clock: Back from snooze: its time has come."
        return f":alarm_clock: {actor} ended the snooze."
    if change.actor == inbox.CUSTOMER:
        return ":inbox_tray: Reopened by the customer: they wrote again."
    return f":inbox_tray: {actor} reopened this conversation."


def slack_time(at: datetime | None) -> str:
    """A time Slack shows in each reader's own timezone (`<!date^…>`), UTC in words as its fallback."""
    if at is None:
        return "later"
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%d %b %Y %H:%M} UTC>"


def audit_text(action: str, actor: str, assignee: str | None, detail: str | None = None) -> str:
    """One stored change in plain words, for transcripts (Slack ids as stored, like the rest of a transcript)."""
    person = "the customer" if actor == inbox.CUSTOMER else actor
    if action == InboxAction.SNOOZE:
        return f"{person} snoozed this until {detail or '?'}"
    if action == InboxAction.LABEL:
        return f"{person} changed the labels: {detail or '?'}"
    if action == InboxAction.WAKE:
        return "back from snooze" + ("" if actor == inbox.CLOCK else f" ({person})")
    if action == InboxAction.TAKE:
        return f"{person} took this conversation"
    if action == InboxAction.ASSIGN:
        return f"{person} assigned this to {assignee or '?'}"
    if action == InboxAction.UNASSIGN:
        return f"{person} unassigned {assignee or '?'}"
    if action == InboxAction.RESOLVE:
        return f"{person} resolved this conversation"
    return f"reopened by {person}"


async def staff_change(session: AsyncSession, change: Change) -> Outcome:
    """Apply a change asked for from Slack; when it changed something, owe its note and the parent's refresh."""
    outcome = await inbox.apply(session, change)
    if outcome is Outcome.DONE:
        await _owe_slack(session, change)
    return outcome


async def answered_from_slack(session: AsyncSession, auto_assign: AutoAssign, conversation_id: int, user: str,
                              at: datetime) -> bool:
    """`inbox.auto_assign: first_reply`: a reply sent from Slack makes its author the owner of an unowned
    conversation (phone-app replies never reach here: they answer, they do not take). True when it did."""
    if auto_assign is not AutoAssign.FIRST_REPLY or not user:
        return False
    team = await session.scalar(select(Conversation.slack_team).where(Conversation.id == conversation_id,
                                                                     Conversation.owner.is_(None)))
    if team is None:
        return False
    change = Change(conversation_id, team, InboxAction.TAKE, user, at, f"first_reply:{conversation_id}:{user}",
                    unowned_only=True, by_reply=True)
    return await staff_change(session, change) is Outcome.DONE


async def customer_wrote(session: AsyncSession, latest: dict[int, datetime]) -> None:
    """New customer messages (conversation id -> newest one's time) reopen resolved conversations and wake
    snoozed ones."""
    reopened, woken = await inbox.customer_wrote(session, latest)
    for conv_id, at in reopened:
        await _owe_slack(session, Change(conv_id, "", InboxAction.REOPEN, inbox.CUSTOMER, at,
                                         f"customer:{conv_id}:{at.isoformat()}"))
    for change in woken:
        await _owe_slack(session, change)


async def wake_snoozed(session: AsyncSession, now: datetime) -> int:
    """Bring back the conversations whose snooze time has come, with a note; how many came back."""
    woken = await inbox.wake_due(session, now)
    for change in woken:
        await _owe_slack(session, change)
    return len(woken)


async def _owe_slack(session: AsyncSession, change: Change) -> None:
    key = f"inbox:{change.dedupe_key}"
    await enqueue(session, Note(change.conversation_id, note_text(change), mrkdwn=True), dedupe_key=key,
                  order_ts=change.at)
    await repo.owe_parent_refresh(session, change.conversation_id, key, change.at)
