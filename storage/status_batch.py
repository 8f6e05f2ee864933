"""Apply a batch of status reports with set-based SQL: a handful of statements per batch, not per report.

Reports are coalesced per (wamid, status), kept once in message_statuses (the unique key drops replays),
and only the new ones are folded into their messages and campaign recipients. A report whose message is not
stored yet stays in message_statuses and is folded in when the message arrives (`apply_statuses`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.origin import Source
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
from storage.upsert import insert_ignore_many
from storage.wamid_locks import lock_wamids


@dataclass
class StatusBatchResult:
    """What a batch changed: new reports, replays ignored, and the campaign runs whose counters moved."""

    new: int = 0
    duplicates: int = 0
    run_ids: set[int] = field(default_factory=set)


async def _insert_new(session: AsyncSession, rows: Sequence[StatusRow]) -> set[tuple[str, str]]:
    """Keep each (wamid, status) once; returns the keys this batch added."""
    table: Table = MessageStatus.__table__  # type: ignore[assignment]
    added: set[tuple[str, str]] = set()
    now = utcnow()
    values = [{**r.as_values(), "created_at": now} for r in rows]
    added.update((w, s) for w, s in await insert_ignore_many(session, table, values, ["wamid", "status"],
                                                             returning=["wamid", "status"]))
    return added


async def _fold_messages(session: AsyncSession, by_wamid: dict[str, list[StatusRow]],
                         seen: set[str]) -> list[dict[str, Any]]:
    """Fold new reports into their messages (one UPDATE executemany); returns the Slack posts they owe.

    Adds the wamids it found to seen."""
    found = (await session.execute(
        select(Message.id, Message.wamid, Message.status, Message.status_history, Message.error_code,
               Message.error_title, Message.pricing_category, Message.billable, Message.source,
               Message.conversation_id, Message.wa_timestamp)
        .where(Message.wamid.in_(list(by_wamid)))
    )).all()
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
        await session.execute(update(Message), sorted(updates, key=lambda u: u["id"]))
    return posts


async def _fold_recipients(session: AsyncSession, by_wamid: dict[str, list[StatusRow]], seen: set[str]) -> set[int]:
    """Fold new reports into campaign recipients (one UPDATE executemany); returns the runs touched.

    Adds the wamids it found to seen."""
    found = (await session.execute(
        select(CampaignRecipient.id, CampaignRecipient.run_id, CampaignRecipient.wamid, CampaignRecipient.status,
               CampaignRecipient.error_code, CampaignRecipient.error_title, CampaignRecipient.pricing_category,
               CampaignRecipient.billable)
        .where(CampaignRecipient.wamid.in_(list(by_wamid)))
    )).all()
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
        await session.execute(update(CampaignRecipient), sorted(updates, key=lambda u: u["id"]))
    return runs


async def _enqueue_posts(session: AsyncSession, posts: list[dict[str, Any]]) -> None:
    table: Table = SlackOutbox.__table__  # type: ignore[assignment]
    await insert_ignore_many(session, table, sorted(posts, key=lambda p: p["dedupe_key"]), ["dedupe_key"])


async def runs_of(session: AsyncSession, wamids: set[str]) -> set[int]:
    """The campaign runs that sent these wamids."""
    found = await session.scalars(select(CampaignRecipient.run_id).where(CampaignRecipient.wamid.in_(sorted(wamids)))
                                  .distinct())
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
