"""Apply a batch of status reports with set-based SQL: a handful of statements per batch, not per report.

Reports are coalesced per (wamid, status), kept once in message_statuses (the unique key drops replays),
and only the new ones are folded into their messages and campaign recipients. A report whose message is not
stored yet stays in message_statuses and is folded in when the message arrives (`apply_statuses`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Select,
    Table,
    Update,
    bindparam,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.origin import Source
from storage.among import among
from storage.models import CampaignRecipient, Message, MessageStatus, SlackOutbox, utcnow
from storage.outbox_kinds import StatusMark, outbox_row
from storage.status_fold import (
    MessageFold,
    RecipientFold,
    StatusRow,
    coalesce,
    fold_message,
    fold_recipient,
    status_item_order,
)
from storage.upsert import insert_ignore_arrays, insert_ignore_many
from storage.wamid_locks import lock_wamids


@dataclass
class StatusBatchResult:
    """What a batch changed: new reports, replays ignored, and the campaign runs whose counters moved."""

    new: int = 0
    duplicates: int = 0
    run_ids: set[int] = field(default_factory=set)


_STATUSES: Table = MessageStatus.__table__  # type: ignore[assignment]
_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_RECIPIENTS: Table = CampaignRecipient.__table__  # type: ignore[assignment]

def _message_lookup(postgres: bool) -> Select[Any]:
    m = _MESSAGES.c
    return (select(m.id, m.wamid, m.status, m.status_history, m.error_code, m.error_title, m.pricing_category,
                   m.billable, m.source, m.conversation_id, m.wa_timestamp)
            .where(among(m.wamid, "wamids", postgres=postgres)))


def _recipient_lookup(postgres: bool) -> Select[Any]:
    r = _RECIPIENTS.c
    return (select(r.id, r.run_id, r.wamid, r.status, r.error_code, r.error_title, r.pricing_category, r.billable)
            .where(among(r.wamid, "wamids", postgres=postgres)))


def _runs_lookup(postgres: bool) -> Select[Any]:
    return select(_RECIPIENTS.c.run_id).where(among(_RECIPIENTS.c.wamid, "wamids", postgres=postgres)).distinct()


# Core statements over the tables' columns, built once per dialect (True: PostgreSQL): no ORM entity loading,
# and a statement object that is reused keeps its cache key instead of generating it on every call.
_MESSAGE_LOOKUP = {postgres: _message_lookup(postgres) for postgres in (True, False)}
_RECIPIENT_LOOKUP = {postgres: _recipient_lookup(postgres) for postgres in (True, False)}
_RUNS_LOOKUP = {postgres: _runs_lookup(postgres) for postgres in (True, False)}


def _fold_update(table: Table, columns: Sequence[str]) -> Update:
    """UPDATE table SET columns WHERE id = :id, one row per parameter set (executemany), as the ORM's bulk
    update by primary key sends it; the parameters' keys are the columns' names prefixed with "new_"."""
    return (update(table).where(table.c.id == bindparam("new_id"))
            .values({c: bindparam(f"new_{c}", type_=table.c[c].type) for c in columns}))


_PG_FOLD_MESSAGE = _fold_update(_MESSAGES, ("status", "status_history", "error_code", "error_title",
                                            "pricing_category", "billable"))
_PG_FOLD_RECIPIENT = _fold_update(_RECIPIENTS, ("status", "error_code", "error_title", "pricing_category",
                                                "billable"))


async def _update_by_id(session: AsyncSession, model: Any, statement: Update, rows: list[dict[str, Any]]) -> None:
    """The rows' UPDATEs in the order given. On PostgreSQL by a prebuilt Core statement (the ORM's bulk update
    costs about twice its CPU, and asyncpg reports no rowcount for it to check); elsewhere by the ORM's bulk update
    by primary key, which also checks that every row was there."""
    if _postgres(session):
        await session.execute(statement, [{f"new_{k}": v for k, v in row.items()} for row in rows])
        return
    await session.execute(update(model), rows)


def _postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


def _wamids(wamids: Collection[str]) -> dict[str, list[str]]:
    return {"wamids": list(wamids)}


async def _insert_new(session: AsyncSession, rows: Sequence[StatusRow]) -> set[tuple[str, str]]:
    """Keep each (wamid, status) once; returns the keys this batch added."""
    table = _STATUSES
    added: set[tuple[str, str]] = set()
    now = utcnow()
    values = [{**r.as_values(), "created_at": now} for r in rows]
    insert = insert_ignore_arrays if _postgres(session) else insert_ignore_many
    added.update((w, s) for w, s in await insert(session, table, values, ["wamid", "status"],
                                                 returning=["wamid", "status"]))
    return added


async def _fold_messages(session: AsyncSession, by_wamid: dict[str, list[StatusRow]],
                         seen: set[str]) -> list[dict[str, Any]]:
    """Fold new reports into their messages (one UPDATE executemany); returns the Slack posts they owe.

    Adds the wamids it found to seen."""
    found = (await session.execute(_MESSAGE_LOOKUP[_postgres(session)], _wamids(by_wamid))).all()
    updates: list[dict[str, Any]] = []
    posts: list[dict[str, Any]] = []
    for m in found:
        seen.add(m.wamid)
        fold = fold_message(MessageFold(m.status, list(m.status_history or []), m.error_code, m.error_title,
                                        m.pricing_category, m.billable), by_wamid[m.wamid])
        if not fold.applied:
            continue
        updates.append({"id": m.id, "status": fold.status, "status_history": fold.status_history,
                        "error_code": fold.error_code, "error_title": fold.error_title,
                        "pricing_category": fold.pricing_category, "billable": fold.billable})
        if m.source == Source.CAMPAIGN:
            continue  # campaign statuses feed the campaign's progress message, not threads
        for st in fold.applied:
            mark = StatusMark(m.id, st.status, m.conversation_id, st.error_code, st.error_title)
            posts.append(outbox_row(mark, dedupe_key=f"status:{st.wamid}:{st.status}",
                                    order_ts=status_item_order(st.status, st.wa_timestamp, m.wa_timestamp)))
    if updates:
        # Rows locked in id order, whichever worker: concurrent batches queue, they never deadlock.
        await _update_by_id(session, Message, _PG_FOLD_MESSAGE, sorted(updates, key=lambda u: u["id"]))
    return posts


async def _fold_recipients(session: AsyncSession, by_wamid: dict[str, list[StatusRow]], seen: set[str]) -> set[int]:
    """Fold new reports into campaign recipients (one UPDATE executemany); returns the runs touched.

    Adds the wamids it found to seen."""
    found = (await session.execute(_RECIPIENT_LOOKUP[_postgres(session)], _wamids(by_wamid))).all()
    updates: list[dict[str, Any]] = []
    runs: set[int] = set()
    for r in found:
        seen.add(str(r.wamid))
        before = (r.status, r.error_code, r.error_title, r.pricing_category, r.billable)
        fold = fold_recipient(RecipientFold(r.status, r.error_code, r.error_title, r.pricing_category,
                                            r.billable), by_wamid[str(r.wamid)])
        after = (fold.status, fold.error_code, fold.error_title, fold.pricing_category, fold.billable)
        if after == before:
            continue
        updates.append({"id": r.id, "status": fold.status, "error_code": fold.error_code,
                        "error_title": fold.error_title, "pricing_category": fold.pricing_category,
                        "billable": fold.billable})
        runs.add(r.run_id)
    if updates:
        await _update_by_id(session, CampaignRecipient, _PG_FOLD_RECIPIENT, sorted(updates, key=lambda u: u["id"]))
    return runs


async def _enqueue_posts(session: AsyncSession, posts: list[dict[str, Any]]) -> None:
    """Insert the posts (`outbox_row`s) in dedupe_key order unless their dedupe_key is stored."""
    posts = sorted(posts, key=lambda p: p["dedupe_key"])
    table: Table = SlackOutbox.__table__  # type: ignore[assignment]
    same_keys = all(p.keys() == posts[0].keys() for p in posts)
    insert = insert_ignore_arrays if _postgres(session) and same_keys else insert_ignore_many
    await insert(session, table, posts, ["dedupe_key"])


async def runs_of(session: AsyncSession, wamids: set[str]) -> set[int]:
    """The campaign runs that sent these wamids."""
    found = await session.scalars(_RUNS_LOOKUP[_postgres(session)], _wamids(sorted(wamids)))
    return set(found.all())


async def apply_status_batch(session: AsyncSession, rows: Sequence[StatusRow]) -> StatusBatchResult:
    """Store and fold a batch of status reports inside the caller's transaction."""
    result = StatusBatchResult()
    if not rows:
        return result
    coalesced = coalesce(rows)
    added = await _insert_new(session, coalesced)
    result.new = len(added)
    result.duplicates = len(rows) - len(added)
    by_wamid: dict[str, list[StatusRow]] = defaultdict(list)
    for row in coalesced:
        if (row.wamid, row.status) in added:
            by_wamid[row.wamid].append(row)
    if not by_wamid:
        return result
    seen: set[str] = set()
    posts = await _fold_messages(session, by_wamid, seen)
    result.run_ids = await _fold_recipients(session, by_wamid, seen)
    orphans = {w: rows for w, rows in by_wamid.items() if w not in seen}
    if orphans:
        # A message or send recorded by a transaction still open would miss these reports, and they it:
        # wait for it (wamid_locks), then look again. Whatever is still missing is folded in on its arrival.
        await lock_wamids(session, orphans)
        posts += await _fold_messages(session, orphans, seen)
        result.run_ids |= await _fold_recipients(session, orphans, seen)
    await _enqueue_posts(session, posts)
    return result


__all__ = ["StatusBatchResult", "StatusRow", "apply_status_batch"]
