"""`slack_redactions`: the Slack posts of messages the retention pass deleted, owed a redaction.

Rows are written in the transaction that deletes their messages (a stop loses none), then claimed a few at a
time with a lease by the redaction worker (bot/ops/retention_redaction.py), which holds a workspace's rows
back while that workspace owes a live post (a customer's message, a note, an alert).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.models import Conversation, Message, SlackOutbox, SlackRedaction, utcnow
from storage.upsert import insert_ignore_many

# Outbox kinds a person waits to read (bot.slack.outbox_policy: priority below URGENT_BELOW).
LIVE_KINDS = ("message", "note", "alert")
# A live post backing off longer than this (a channel the bot left) does not hold redactions back.
LIVE_SOON = timedelta(minutes=1)


@dataclass(frozen=True)
class Owed:
    """One claimed redaction."""

    id: int
    slack_team: str
    channel: str
    ts: str
    conversation_id: int | None
    parent: bool
    files: list[str]
    attempts: int


def _posts_of(ts: str | None, result: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """A message's Slack posts (its first post, then the others its outbox item recorded: long texts' parts,
    a note in place of media) and the files it shared, from the item's `parts` while the item is kept."""
    posts = [ts] if ts else []
    files: list[str] = []
    for part, value in sorted(((result or {}).get("parts") or {}).items()):
        value = str(value)
        if part == "file" and value.startswith("F"):
            files.append(value)
        elif (part.isdigit() or part == "file") and value not in posts:
            posts.append(value)
    return posts, files


async def owe_for_messages(session: AsyncSession, message_ids: Sequence[int]) -> int:
    """Owe a redaction for each Slack post of these messages (about to be deleted in this transaction);
    returns how many were added. Posts typed by staff in Slack are theirs (an app edits only its own) and history
    imports never reach Slack: neither is owed."""
    if not message_ids:
        return 0
    rows = (await session.execute(
        select(Message.id, Message.slack_ts, Conversation.id.label("conversation_id"), Conversation.slack_channel,
               Conversation.slack_thread_ts, Conversation.slack_team)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id.in_(list(message_ids)), Message.slack_ts.is_not(None), Message.source != "slack",
               Message.is_history.is_(False), Conversation.slack_channel.is_not(None)))).all()
    if not rows:
        return 0
    results = dict((await session.execute(
        select(SlackOutbox.dedupe_key, SlackOutbox.result)
        .where(SlackOutbox.dedupe_key.in_([f"msg:{r.id}" for r in rows])))).tuples().all())
    now = utcnow()
    owed: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for r in rows:
        posts, files = _posts_of(r.slack_ts, results.get(f"msg:{r.id}"))
        for n, ts in enumerate(posts):
            if (r.slack_channel, ts) in seen:
                continue
            seen.add((r.slack_channel, ts))
            owed.append({"slack_team": r.slack_team or DEFAULT_WORKSPACE, "channel": r.slack_channel, "ts": ts,
                         "conversation_id": r.conversation_id, "parent": ts == r.slack_thread_ts,
                         "files": files if n == 0 else [], "attempts": 0, "created_at": now})
    table: Table = SlackRedaction.__table__  # type: ignore[assignment]
    await insert_ignore_many(session, table, owed, ["channel", "ts"])
    return len(owed)


async def live_teams(session: AsyncSession, now: datetime | None = None) -> set[str]:
    """Workspaces that owe a live post now (or within LIVE_SOON): their redactions wait."""
    now = now or utcnow()
    team = func.coalesce(Conversation.slack_team, SlackOutbox.slack_team)
    rows = (await session.scalars(
        select(team).select_from(SlackOutbox).outerjoin(Conversation, Conversation.id == SlackOutbox.conversation_id)
        .where(SlackOutbox.done_at.is_(None), SlackOutbox.kind.in_(LIVE_KINDS),
               or_(SlackOutbox.next_attempt_at.is_(None), SlackOutbox.next_attempt_at <= now + LIVE_SOON))
        .distinct())).all()
    return {str(t) for t in rows}


async def claim(sessions: async_sessionmaker[AsyncSession], limit: int, lease: timedelta, *,
                held: Collection[str] = (), now: datetime | None = None) -> list[Owed]:
    """Lease up to limit due redactions, oldest first, of workspaces not `held`."""
    now = now or utcnow()
    r = SlackRedaction
    async with sessions() as session, session.begin():
        query = (select(r.id).where(r.done_at.is_(None), or_(r.next_attempt_at.is_(None), r.next_attempt_at <= now),
                                    or_(r.claimed_until.is_(None), r.claimed_until < now),
                                    *([r.slack_team.not_in(sorted(held))] if held else []))
                 .order_by(r.id).limit(limit))
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list((await session.scalars(query)).all())
        if not ids:
            return []
        rows = (await session.execute(
            update(r).where(r.id.in_(ids)).values(claimed_until=now + lease, attempts=r.attempts + 1)
            .returning(r.id, r.slack_team, r.channel, r.ts, r.conversation_id, r.parent, r.files, r.attempts)
            .execution_options(synchronize_session=False))).all()
    return sorted((Owed(row.id, row.slack_team, row.channel, row.ts, row.conversation_id, bool(row.parent),
                        [str(f) for f in row.files or []], row.attempts) for row in rows), key=lambda o: o.id)


async def settle(sessions: async_sessionmaker[AsyncSession], item: Owed, outcome: str) -> None:
    """The redaction is over: done, or refused by Slack for good (`outcome` names Slack's error)."""
    async with sessions() as session, session.begin():
        await session.execute(update(SlackRedaction).where(SlackRedaction.id == item.id).values(
            done_at=utcnow(), claimed_until=None, outcome=outcome[:100]))


async def release(sessions: async_sessionmaker[AsyncSession], items: Sequence[Owed], delay: float,
                  error: str | None = None, *, started: bool = True) -> None:
    """Hand items back to be tried after `delay` seconds; `started=False` for items never tried (the attempt
    is not counted)."""
    if not items:
        return
    r = SlackRedaction
    async with sessions() as session, session.begin():
        await session.execute(update(r).where(r.id.in_([i.id for i in items])).values(
            claimed_until=None, next_attempt_at=utcnow() + timedelta(seconds=delay) if delay > 0 else None,
            attempts=r.attempts if started else r.attempts - 1,
            outcome=error[:100] if error else r.outcome))


async def pending(session: AsyncSession) -> int:
    """Redactions still owed (for doctor and the tests)."""
    return int(await session.scalar(select(func.count()).select_from(SlackRedaction)
                                    .where(SlackRedaction.done_at.is_(None))) or 0)
