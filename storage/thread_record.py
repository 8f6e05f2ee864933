"""A conversation's new Slack thread, recorded with the outcome of the outbox item that posted its parent.

Both statements are templates (storage.deferred): the threads a batch of outcomes records go to the database
as one executemany, and so do the checks for a rename that came while their parents were being posted.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, text, update

from storage.deferred import Write
from storage.models import Contact, Conversation, SlackOutbox
from storage.outbox_kinds import ParentRefresh, outbox_row
from storage.upsert import with_defaults

_OUTBOX: Table = SlackOutbox.__table__  # type: ignore[assignment]

# The one recorded first wins: a thread recorded meanwhile (another attempt's) is left as it is.
_RECORD = update(Conversation).where(Conversation.id == bindparam("conversation_id"),
                                     Conversation.slack_thread_ts.is_(None)).values(
    slack_thread_ts=bindparam("thread_ts", type_=Conversation.slack_thread_ts.type),
    slack_channel=bindparam("thread_channel", type_=Conversation.slack_channel.type))


def record_thread(conversation_id: int, channel: str, ts: str) -> Write:
    """Record the conversation's thread, unless one is recorded already."""
    return Write(_RECORD, {"conversation_id": conversation_id, "thread_ts": ts, "thread_channel": channel})


def records_thread(write: Write, conversation_id: int) -> bool:
    """Whether this write records a thread of this conversation (one that turned out to be gone, say)."""
    return write.statement is _RECORD and (write.params or {}).get("conversation_id") == conversation_id


def refresh_if_renamed(dialect: Any, conversation_id: int, contact_id: int, shown_book: str | None,
                       shown_profile: str | None, ts: str) -> Write:
    """Owe the new parent a refresh if the contact's names are no longer those it was posted with.

    A rename committed while the parent was being posted found no thread to refresh. The contact's row lock
    orders this against the rename's transaction, which writes the contact before it looks for threads:
    whichever commits second sees the other's write, so one of the two owes the refresh."""
    row = with_defaults(_OUTBOX, outbox_row(ParentRefresh(conversation_id),
                                            dedupe_key=f"parent:{conversation_id}:renamed-while-posting:{ts}"))
    return Write(_renamed_statement(dialect.name, tuple(sorted(row))),
                 {**row, "contact_id": contact_id, "shown_book": shown_book, "shown_profile": shown_profile})


@functools.cache
def _renamed_statement(dialect: str, columns: tuple[str, ...]) -> TextClause:
    # PostgreSQL locks the contact's row whatever its names, then compares its latest version: the lock is taken
    # in a materialized CTE, where the comparison cannot be pushed down to skip the row (and its lock). SQLite's
    # writers hold the whole database, and it spells a NULL-safe comparison IS NOT.
    if dialect == "postgresql":
        shown, differs = ("WITH shown AS MATERIALIZED (SELECT address_book_name, profile_name FROM contacts "
                          "WHERE id = :contact_id FOR UPDATE) "), "IS DISTINCT FROM"
    else:
        shown, differs = ("WITH shown AS (SELECT address_book_name, profile_name FROM contacts "
                          "WHERE id = :contact_id) "), "IS NOT"
    sql = (f"{shown}INSERT INTO slack_outbox ({', '.join(columns)}) "
           f"SELECT {', '.join(':' + c for c in columns)} FROM shown "
           f"WHERE shown.address_book_name {differs} :shown_book OR shown.profile_name {differs} :shown_profile "
           "ON CONFLICT (dedupe_key) DO NOTHING")
    return text(sql).bindparams(*(bindparam(c, type_=_OUTBOX.c[c].type) for c in columns),
                                bindparam("shown_book", type_=Contact.address_book_name.type),
                                bindparam("shown_profile", type_=Contact.profile_name.type))
