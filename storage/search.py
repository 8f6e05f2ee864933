"""Finding conversations for `/wabridge find`: by words in their messages, the customer's name or number, and by
owner, status and label, within the numbers (channels) a person may see.

Words use PostgreSQL's `search_tsv` (GIN) or SQLite's FTS5 index (migration 0018), else LIKE; each word must
appear (a prefix is enough: "refu" finds "refund"). A name or number matching the words finds the conversation
too. The newest match comes first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Channel, Contact, Conversation, ConversationLabel, Message, as_utc

MAX_HITS = 20
PAGES = (200, 1000, 5000)  # matching messages read newest first before grouping every match
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Query:
    """What to look for: words (all of them), and optional owner (a Slack id) and status filters."""

    words: tuple[str, ...] = ()
    owner: str | None = None
    unowned: bool = False
    status: str | None = None  # open | resolved
    label: str | None = None


@dataclass(frozen=True)
class Hit:
    """One conversation found, with its newest message."""

    conversation_id: int
    channel: str
    slack_channel: str | None
    thread_ts: str | None
    wa_id: str
    name: str | None
    owner: str | None
    status: str
    last_text: str | None
    last_at: datetime | None
    labels: tuple[str, ...] = ()


def words_of(text_: str) -> tuple[str, ...]:
    """The searchable words of free text, lower-cased (punctuation and operators dropped)."""
    return tuple(w.lower() for w in _WORD.findall(text_))


async def find(session: AsyncSession, query: Query, *, workspace: str, channel_ids: Sequence[int],
               limit: int = MAX_HITS) -> list[Hit]:
    """Up to `limit` conversations of `workspace` on `channel_ids` that match, the newest match first."""
    if not channel_ids:
        return []
    scope: list[ColumnElement[bool]] = [Conversation.slack_team == workspace,
                                        Conversation.channel_id.in_(list(channel_ids))]
    if query.owner:
        scope.append(Conversation.owner == query.owner)
    if query.unowned:
        scope.append(Conversation.owner.is_(None))
    if query.status:
        scope.append(Conversation.inbox_status == query.status)
    if query.label:
        scope.append(Conversation.id.in_(select(ConversationLabel.conversation_id)
                                         .where(ConversationLabel.label == query.label)))
    found: dict[int, datetime] = {}
    if query.words:
        found = await _newest(session, [*scope, await _matching(session, query.words)], limit)
        for conv_id, at in (await session.execute(_by_contact(query.words, scope, limit))).tuples():
            if at is not None:
                found[conv_id] = max(found.get(conv_id, as_utc(at)), as_utc(at))
    else:  # filters only: the conversations most recently written in
        found = await _newest(session, scope, limit)
    chosen = sorted(found, key=lambda c: found[c], reverse=True)[:limit]
    return await hits_for(session, chosen)


async def _matching(session: AsyncSession, words: Sequence[str]) -> ColumnElement[bool]:
    """A message holding every word (by prefix), through the database's full-text index."""
    dialect = (await session.connection()).dialect.name
    if dialect == "postgresql":
        tsquery = " & ".join(f"{_pg_quoted(w)}:*" for w in words)
        return literal_column("messages.search_tsv").op("@@")(func.to_tsquery("simple", tsquery))
    if dialect == "sqlite" and await _has_fts(session):
        match = " AND ".join(f'"{w}"*' for w in words)  # quoted: no word is read as an FTS operator
        return Message.id.in_(text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :match")
                              .bindparams(match=match))
    return and_(*[func.lower(Message.text).like(f"%{_like(w)}%", escape="\\") for w in words])


async def _newest(session: AsyncSession, where: list[ColumnElement[bool]], limit: int,
                  pages: Sequence[int] = PAGES) -> dict[int, datetime]:
    """The `limit` conversations with the newest messages meeting `where`, and that message's time.

    Matching messages are read newest first, a page at a time, until enough conversations turned up: a common
    word then costs a few hundred rows, not every match (the database picks the time index or the text index).
    When a few chatty conversations fill the pages, the rest is found by grouping every match."""
    found: dict[int, datetime] = {}
    after: tuple[datetime, int] | None = None
    base = (select(Message.conversation_id, Message.wa_timestamp, Message.id)
            .join(Conversation, Conversation.id == Message.conversation_id).where(*where)
            .order_by(Message.wa_timestamp.desc(), Message.id.desc()))
    for page in pages:
        query = base if after is None else base.where(or_(
            Message.wa_timestamp < after[0], and_(Message.wa_timestamp == after[0], Message.id < after[1])))
        rows = (await session.execute(query.limit(page))).tuples().all()
        for conv_id, at, _ in rows:
            found.setdefault(conv_id, as_utc(at))
        if len(found) >= limit or len(rows) < page:
            return found
        after = (rows[-1][1], rows[-1][2])
    grouped = (select(Message.conversation_id, func.max(Message.wa_timestamp).label("at"))
               .join(Conversation, Conversation.id == Message.conversation_id).where(*where)
               .group_by(Message.conversation_id).order_by(text("at DESC")).limit(limit))
    return {c: as_utc(at) for c, at in (await session.execute(grouped)).tuples()}


def _by_contact(words: Sequence[str], scope: list[ColumnElement[bool]], limit: int) -> Select:
    """Conversations whose customer's name holds every word, or whose number holds the digits given."""
    digits = "".join(w for w in words if w.isdigit())
    name = " ".join(words)
    named = or_(func.lower(Contact.profile_name).like(f"%{_like(name)}%", escape="\\"),
                func.lower(Contact.address_book_name).like(f"%{_like(name)}%", escape="\\"))
    who = or_(named, Contact.wa_id.like(f"%{digits}%")) if len(digits) >= 4 else named
    last = (select(Message.wa_timestamp).where(Message.conversation_id == Conversation.id)
            .order_by(Message.wa_timestamp.desc()).limit(1).scalar_subquery())
    return (select(Conversation.id, func.coalesce(last, Conversation.created_at))
            .join(Contact, Contact.id == Conversation.contact_id).where(*scope, who).limit(limit))


async def hits_for(session: AsyncSession, conversation_ids: list[int]) -> list[Hit]:
    """The answer's rows for these conversations, in their order: names, owner, status, newest message."""
    if not conversation_ids:
        return []
    rows = (await session.execute(
        select(Conversation.id, Channel.name, Conversation.slack_channel, Conversation.slack_thread_ts, Contact.wa_id,
               func.coalesce(Contact.address_book_name, Contact.profile_name), Conversation.owner,
               Conversation.inbox_status)
        .join(Channel, Channel.id == Conversation.channel_id).join(Contact, Contact.id == Conversation.contact_id)
        .where(Conversation.id.in_(conversation_ids)))).tuples().all()
    newest = (select(Message.conversation_id, func.max(Message.id).label("mid"))
              .where(Message.conversation_id.in_(conversation_ids), Message.is_note.is_(False))
              .group_by(Message.conversation_id).subquery())
    last = {c: (t, at) for c, t, at in (await session.execute(
        select(Message.conversation_id, Message.text, Message.wa_timestamp)
        .join(newest, newest.c.mid == Message.id))).tuples()}
    labels: dict[int, list[str]] = {}
    for cid, label in (await session.execute(select(ConversationLabel.conversation_id, ConversationLabel.label)
                                             .where(ConversationLabel.conversation_id.in_(conversation_ids))
                                             .order_by(ConversationLabel.label))).tuples():
        labels.setdefault(cid, []).append(label)
    by_id = {}
    for cid, channel, slack_channel, ts, wa_id, name, owner, status in rows:
        last_text, last_at = last.get(cid, (None, None))
        by_id[cid] = Hit(cid, channel, slack_channel, ts, wa_id, name, owner, status or "open", last_text,
                         as_utc(last_at) if last_at is not None else None, tuple(labels.get(cid, ())))
    return [by_id[c] for c in conversation_ids if c in by_id]


async def _has_fts(session: AsyncSession) -> bool:
    """Whether migration 0018 could make the FTS5 index (SQLite built without FTS5 has none)."""
    return (await session.scalar(text(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'"))) == 1


def _pg_quoted(word: str) -> str:
    """A word as a tsquery lexeme (quoted, so nothing in it is an operator)."""
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'"


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
