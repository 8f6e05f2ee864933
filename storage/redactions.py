"""`slack_redactions`: the Slack posts of messages the retention pass deleted, owed a redaction, and the files the
bridge uploaded for media past `retention.media_days`, owed a deletion (`files_only`).

Only the bridge's own posts are owed (an app edits only its own): found in what each message recorded of them
(`messages.slack_posts`), else in its outbox item while that is kept. Rows are written in the transaction that
deletes their messages, or clears their media (a stop loses none), then claimed a few at a
time with a lease by the redaction worker (bot/ops/retention_redaction.py), which holds a workspace's rows
back while that workspace owes a live post (a customer's message, a note, an alert).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.origin import Source
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
    files_only: bool = False


def bridge_posts(parts: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """What the bridge posted for one message, from its outbox item's `parts`: the posts (its text's parts, a line
    in place of media, a reaction told in words) and the files it uploaded. Reactions added to posts, the
    thread's parent (a post of its own) and other bookkeeping are not the message's."""
    posts: list[str] = []
    files: list[str] = []
    for part, value in sorted((parts or {}).items(), key=lambda kv: (not kv[0].isdigit(), kv[0].zfill(6))):
        value = str(value)
        if part == "file" and value.startswith("F"):
            files.append(value)
        elif (part.isdigit() or part == "file") and value not in posts:
            posts.append(value)
    return {"posts": posts, "files": files}


def posts_of(source: str, slack_ts: str | None, recorded: Mapping[str, Any] | None,
              result: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """A message's posts made by the bridge (its first post first) and the files the bridge uploaded for it: as
    recorded with the message, else from its outbox item while the item is kept (messages mirrored before the
    record existed). A staff member's own Slack message (`slack_ts` of a reply or note typed in Slack) is theirs,
    not the bridge's: only the bridge's copy of it is owed."""
    made = recorded if recorded is not None else bridge_posts((result or {}).get("parts"))
    posts = [str(p) for p in made.get("posts") or []]
    if slack_ts and source != Source.SLACK and slack_ts not in posts:
        posts.insert(0, slack_ts)
    return posts, [str(f) for f in made.get("files") or []]


async def outbox_results(session: AsyncSession, message_ids: Iterable[int]) -> dict[str, Any]:
    keys = [f"msg:{i}" for i in message_ids]
    if not keys:
        return {}
    return dict((await session.execute(select(SlackOutbox.dedupe_key, SlackOutbox.result)
                                       .where(SlackOutbox.dedupe_key.in_(keys)))).tuples().all())


async def owe_for_messages(session: AsyncSession, message_ids: Sequence[int]) -> int:
    """Owe a redaction for each Slack post the bridge made for these messages (about to be deleted in this
    transaction): customers' messages, phone-app echoes, the bridge's copies of staff replies, reactions told in
    words, and the files it uploaded; returns how many were added. A reply or note typed by staff in Slack is
    the staff member's own post (an app edits only its own): not owed. History imports never reach Slack."""
    if not message_ids:
        return 0
    rows = (await session.execute(
        select(Message.id, Message.source, Message.slack_ts, Message.slack_posts,
               Conversation.id.label("conversation_id"), Conversation.slack_channel, Conversation.slack_thread_ts,
               Conversation.slack_team)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id.in_(list(message_ids)), Message.is_history.is_(False),
               Conversation.slack_channel.is_not(None)))).all()
    if not rows:
        return 0
    results = await outbox_results(session, [r.id for r in rows if r.slack_posts is None])
    now = utcnow()
    owed: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for r in rows:
        posts, files = posts_of(r.source, r.slack_ts, r.slack_posts, results.get(f"msg:{r.id}"))
        for n, ts in enumerate(posts):
            if (r.slack_channel, ts) in seen:
                continue
            seen.add((r.slack_channel, ts))
            owed.append({"slack_team": r.slack_team or DEFAULT_WORKSPACE, "channel": r.slack_channel, "ts": ts,
                         "conversation_id": r.conversation_id, "parent": ts == r.slack_thread_ts,
                         "files": files if n == 0 else [], "files_only": False, "attempts": 0, "created_at": now})
        if files and not posts:  # a file whose post is not known (its outbox record went first): the file still goes
            owed.append(_files_row(r, files, now))
    return await _insert(session, owed)


def _files_row(r: Any, files: list[str], now: datetime) -> dict[str, Any]:
    return {"slack_team": r.slack_team or DEFAULT_WORKSPACE, "channel": r.slack_channel, "ts": files[0],
            "conversation_id": r.conversation_id, "parent": False, "files": files, "files_only": True,
            "attempts": 0, "created_at": now}


async def _insert(session: AsyncSession, owed: list[dict[str, Any]]) -> int:
    if not owed:
        return 0
    table: Table = SlackRedaction.__table__  # type: ignore[assignment]
    await insert_ignore_many(session, table, owed, ["channel", "ts"])
    return len(owed)


async def owe_for_media(session: AsyncSession, message_ids: Sequence[int]) -> int:
    """Owe the deletion of the files the bridge uploaded to Slack for these messages (their media past
    retention.media_days, its references cleared in this transaction); the posts and their words stay until the
    messages age out. The message's record forgets the files, so that later redaction does not ask again."""
    if not message_ids:
        return 0
    rows = (await session.execute(
        select(Message.id, Message.slack_posts, Conversation.id.label("conversation_id"), Conversation.slack_channel,
               Conversation.slack_team)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id.in_(list(message_ids)), Message.is_history.is_(False),
               Conversation.slack_channel.is_not(None)))).all()
    results = await outbox_results(session, [r.id for r in rows if r.slack_posts is None])
    now = utcnow()
    owed: list[dict[str, Any]] = []
    for r in rows:
        made = r.slack_posts if r.slack_posts is not None else bridge_posts(
            (results.get(f"msg:{r.id}") or {}).get("parts"))
        files = [str(f) for f in made.get("files") or []]
        if not files:
            continue
        owed.append(_files_row(r, files, now))
        await session.execute(update(Message).where(Message.id == r.id)
                              .values(slack_posts={"posts": list(made.get("posts") or []), "files": []}))
    return await _insert(session, owed)


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
            .returning(r.id, r.slack_team, r.channel, r.ts, r.conversation_id, r.parent, r.files, r.attempts,
                       r.files_only)
            .execution_options(synchronize_session=False))).all()
    return sorted((Owed(row.id, row.slack_team, row.channel, row.ts, row.conversation_id, bool(row.parent),
                        [str(f) for f in row.files or []], row.attempts, bool(row.files_only))
                   for row in rows), key=lambda o: o.id)


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
