"""Finding conversations for `/wabridge find`: by words in their messages, the customer's name or number, and by
owner, status and label, within the numbers (channels) a person may see.

Words use PostgreSQL's `search_tsv` (GIN) or SQLite's FTS5 indexes (migrations 0018, 0026), else LIKE; each word
must appear, as typed (a prefix is enough: "refu" finds "refund") or by its English stem ("refunds" finds
"refund", "booking" finds "booked"). A word the stemmer does not know (Hindi, Hinglish, a number) is still found
as typed. A quoted phrase must appear as written: its words in that order, whole, without stems. A name or number
matching the words finds the conversation too. The newest match comes first.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Channel, Contact, Conversation, ConversationLabel, Message, as_utc

MAX_HITS = 20
PAGES = (200, 1000, 5000)  # matching messages read newest first before grouping every match


@dataclass(frozen=True)
class Query:
    """What to look for: words and quoted phrases (all of them), and optional owner (a Slack id), status and label
    filters."""

    words: tuple[str, ...] = ()
    owner: str | None = None
    unowned: bool = False
    status: str | None = None  # open | resolved
    label: str | None = None
    phrases: tuple[tuple[str, ...], ...] = ()  # each: these words, in this order, exactly as written

    @property
    def terms(self) -> tuple[str, ...]:
        """Every word asked for, the phrases' too (what a customer's name or number is compared with)."""
        return self.words + tuple(w for phrase in self.phrases for w in phrase)


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
    """The searchable words of free text, lower-cased (punctuation and operators dropped). A combining mark stays
    in its word: Hindi's vowel signs (मेरा, रिफंड) are marks, which `\\w` would split the word at."""
    words: list[str] = []
    word: list[str] = []
    for ch in text_:
        if ch.isalnum() or ch == "_" or (word and unicodedata.category(ch).startswith("M")):
            word.append(ch)
        elif word:
            words.append("".join(word).lower())
            word = []
    if word:
        words.append("".join(word).lower())
    return tuple(words)


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
    if query.terms:
        found = await _newest(session, [*scope, await _matching(session, query.words, query.phrases)], limit)
        for conv_id, at in (await session.execute(_by_contact(query.terms, scope, limit))).tuples():
            if at is not None:
                found[conv_id] = max(found.get(conv_id, as_utc(at)), as_utc(at))
    else:  # filters only: the conversations most recently written in
        found = await _newest(session, scope, limit)
    chosen = sorted(found, key=lambda c: found[c], reverse=True)[:limit]
    return await hits_for(session, chosen)


async def _matching(session: AsyncSession, words: Sequence[str],
                    phrases: Sequence[Sequence[str]] = ()) -> ColumnElement[bool]:
    """A message holding every word (as typed by prefix, or by its stem) and every phrase (as written), through
    the database's full-text index."""
    dialect = (await session.connection()).dialect.name
    if dialect == "postgresql":
        return literal_column("messages.search_tsv").op("@@")(_pg_tsquery(words, phrases))
    if dialect == "sqlite" and "messages_fts" in (tables := await _fts_tables(session)):
        return and_(*_fts_matching(words, phrases, stems="messages_fts_stem" in tables))
    return and_(*[func.lower(Message.text).like(f"%{_like(w)}%", escape="\\") for w in words],
                *[func.lower(Message.text).like(f"%{_like(' '.join(p))}%", escape="\\") for p in phrases])


_SIMPLE: ColumnElement[str] = literal_column("'simple'::regconfig")
_ENGLISH: ColumnElement[str] = literal_column("'english'::regconfig")


def _pg_tsquery(words: Sequence[str], phrases: Sequence[Sequence[str]]) -> ColumnElement[str]:
    """One tsquery for the one GIN index on `search_tsv` (migration 0026: words as written at weight A, their
    English stems unweighted): each word is `'word':* | stem`, each phrase `'a':A <-> 'b':A`, all joined by `&&`.

    One `@@` between the indexed column and a query made of constants only is what keeps the search on the
    index: the planner evaluates the query once and reads the GIN index with it. (Two columns OR'ed per word, or
    a `to_tsvector` computed while searching, would read every message.) A stop word has no stem
    (`to_tsquery('english', 'me')` is empty, and `x || empty` is x): Hinglish "me" or "to" are found as typed."""
    # A number has no stem: its prefix alone, which the planner estimates as it did before stems (with the stem
    # OR'ed in, it took a number found in no message for a common one and read every message newest first).
    parts: list[ColumnElement[str]] = [
        _to_tsquery(_SIMPLE, f"{_pg_quoted(w)}:*") if w.isdigit() else
        _to_tsquery(_SIMPLE, f"{_pg_quoted(w)}:*").op("||", return_type=TSQUERY)(_to_tsquery(_ENGLISH, _pg_quoted(w)))
        for w in words]
    parts += [_to_tsquery(_SIMPLE, " <-> ".join(f"{_pg_quoted(w)}:A" for w in p)) for p in phrases]
    return reduce(lambda a, b: a.op("&&", return_type=TSQUERY)(b), parts)


def _to_tsquery(config: ColumnElement[str], query: str) -> ColumnElement[str]:
    return func.to_tsquery(config, query, type_=TSQUERY)


_EXACT = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH :{}"
_STEMMED = "SELECT rowid FROM messages_fts_stem WHERE messages_fts_stem MATCH :{}"


def _fts_matching(words: Sequence[str], phrases: Sequence[Sequence[str]], *, stems: bool
                  ) -> list[ColumnElement[bool]]:
    """SQLite: each word by prefix in `messages_fts` (as written) or, with `stems`, as a whole word in
    `messages_fts_stem` (porter stems the query's word as it stemmed the text; not as a prefix, which would stem
    "pais" to "pai" and find "paid"); each phrase as written in `messages_fts`. Every term is quoted, so nothing
    in it is read as an FTS operator."""
    out: list[ColumnElement[bool]] = []
    for i, w in enumerate(words):
        sql, params = _EXACT.format(f"w{i}"), {f"w{i}": f'"{w}"*'}
        if stems:
            sql, params = f"{sql} UNION {_STEMMED.format(f's{i}')}", {**params, f"s{i}": f'"{w}"'}
        out.append(Message.id.in_(text(sql).bindparams(**params)))
    for i, p in enumerate(phrases):
        out.append(Message.id.in_(text(_EXACT.format(f"p{i}")).bindparams(**{f"p{i}": '"' + " ".join(p) + '"'})))
    return out


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


async def _fts_tables(session: AsyncSession) -> set[str]:
    """The FTS5 indexes migrations 0018 and 0026 could make (SQLite built without FTS5 has none)."""
    names = await session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name IN ('messages_fts', 'messages_fts_stem')"))
    return set(names.all())


def _pg_quoted(word: str) -> str:
    """A word as a tsquery lexeme (quoted, so nothing in it is an operator)."""
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'"


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
