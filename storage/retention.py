"""Retention: delete processed log rows older than a cutoff, a small batch per statement; and, when the
operator sets how long, customers' messages, media references and erasure audit records (docs/privacy.md).

Only rows whose work is over are touched: deliveries already processed, Slack event ids already handled,
Slack posts already delivered, erasures done. Short statements keep locks brief so pruning never stalls the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    AutoReply,
    Erasure,
    Message,
    MessageStatus,
    SlackEvent,
    SlackOutbox,
    SlackRedaction,
    WebhookLog,
)
from storage.redactions import owe_for_media, owe_for_messages


@dataclass(frozen=True)
class Prunable:
    """A table rows age out of: its key, the time that ages a row, what makes a row finished, when a row was made
    (read through an indexed order, so finding the oldest row never scans the table), the `retention` key that
    says after how many days, and the rows that go with it (deleted first, in the same transaction)."""

    name: str
    model: Any
    key: Any
    aged_by: Any
    finished: ColumnElement[bool] | None
    born: Any
    oldest_first: Any
    days_key: str = "days"
    dependents: Callable[[list[Any]], Executable] | None = None
    # What the rows leave owed elsewhere (their Slack posts' redaction), written in the same transaction.
    owes: Callable[[AsyncSession, list[Any]], Awaitable[int]] | None = None


def _statuses_of(message_ids: list[Any]) -> Executable:
    return delete(MessageStatus).where(MessageStatus.wamid.in_(
        select(Message.wamid).where(Message.id.in_(message_ids), Message.wamid.is_not(None))))


PRUNABLE: tuple[Prunable, ...] = (
    Prunable("webhook_logs", WebhookLog, WebhookLog.id, WebhookLog.processed_at,
             WebhookLog.processed_at.is_not(None), WebhookLog.received_at, WebhookLog.id),
    Prunable("slack_events", SlackEvent, SlackEvent.event_id, SlackEvent.received_at, None,
             SlackEvent.received_at, SlackEvent.received_at),
    Prunable("slack_outbox", SlackOutbox, SlackOutbox.id, SlackOutbox.done_at, SlackOutbox.done_at.is_not(None),
             SlackOutbox.created_at, SlackOutbox.id),
    Prunable("slack_redactions", SlackRedaction, SlackRedaction.id, SlackRedaction.done_at,
             SlackRedaction.done_at.is_not(None), SlackRedaction.created_at, SlackRedaction.id),
)
# Customers' data, aged only when its key is set (docs/privacy.md); not part of doctor's log tables.
PERSONAL: tuple[Prunable, ...] = (
    Prunable("messages", Message, Message.id, Message.wa_timestamp, None, Message.wa_timestamp,
             Message.wa_timestamp, "messages_days", _statuses_of, owe_for_messages),
    # Away messages and surveys (a survey keeps the customer's answer and comment): they age with the messages.
    Prunable("auto_replies", AutoReply, AutoReply.id, AutoReply.created_at, None, AutoReply.created_at,
             AutoReply.created_at, "messages_days"),
    Prunable("erasures", Erasure, Erasure.id, Erasure.requested_at, Erasure.state == "done", Erasure.requested_at,
             Erasure.requested_at, "audit_days"),
)


async def prune_batch(session: AsyncSession, table: Prunable, cutoff: datetime, limit: int, *,
                      owe: bool = False) -> int:
    """Delete up to limit finished rows of table aged before cutoff; returns how many went. `owe`: record
    what they leave owed (table.owes) first."""
    where = [table.aged_by < cutoff]
    if table.finished is not None:
        where.append(table.finished)
    if table.dependents is not None or (owe and table.owes is not None):
        keys = list((await session.scalars(select(table.key).where(*where).limit(limit))).all())
        if not keys:
            return 0
        if owe and table.owes is not None:
            await table.owes(session, keys)
        if table.dependents is not None:
            await session.execute(table.dependents(keys))
        doomed: Any = keys
    else:
        doomed = select(table.key).where(*where).limit(limit).scalar_subquery()
    result = await session.execute(delete(table.model).where(table.key.in_(doomed))
                                   .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def prune_table(sessions: async_sessionmaker[AsyncSession], table: Prunable, cutoff: datetime,
                      limit: int, pause: float = 0.0, *, owe: bool = False) -> int:
    """Prune table batch by batch (one commit each, pause seconds apart) until nothing old is left."""
    total = 0
    while True:
        async with sessions() as session, session.begin():
            n = await prune_batch(session, table, cutoff, limit, owe=owe)
        total += n
        if n < limit:
            return total
        await asyncio.sleep(pause)


async def strip_media(sessions: async_sessionmaker[AsyncSession], cutoff: datetime, limit: int,
                      pause: float = 0.0, *, owe: bool = False) -> int:
    """Clear the media references (Meta media id, type, file name and hash) of messages older than cutoff,
    batch by batch in timestamp order; the message, its caption and its Slack post stay. `owe`: the files the
    bridge uploaded to Slack for them are owed a deletion, recorded in the same transaction. Returns rows changed."""
    total, since = 0, None
    while True:
        async with sessions() as session, session.begin():
            query = select(Message.id, Message.wa_timestamp, Message.content).where(
                Message.wa_timestamp < cutoff, Message.media_id.is_not(None))
            if since is not None:
                query = query.where(Message.wa_timestamp >= since)
            rows = (await session.execute(query.order_by(Message.wa_timestamp).limit(limit))).all()
            if owe:
                await owe_for_media(session, [row.id for row in rows])
            for row in rows:
                content = {k: v for k, v in (row.content or {}).items() if k != "media"} if row.content else None
                await session.execute(update(Message).where(Message.id == row.id)
                                      .values(media_id=None, media_mime=None, content=content))
        total += len(rows)
        if len(rows) < limit:
            return total
        since = rows[-1].wa_timestamp
        await asyncio.sleep(pause)


@dataclass(frozen=True)
class TableStat:
    """How big a table is and how old its oldest row (rows are estimated on PostgreSQL)."""

    name: str
    rows: int
    bytes: int | None
    oldest: datetime | None


async def table_stats(session: AsyncSession) -> list[TableStat]:
    """Size and oldest row of each log table, cheap enough for `doctor` on a large database."""
    out = []
    postgres = session.bind.dialect.name == "postgresql"
    for table in PRUNABLE:
        oldest = await session.scalar(select(table.born).order_by(table.oldest_first).limit(1))
        size: int | None = None
        if postgres:
            row = (await session.execute(text(
                "SELECT greatest(reltuples, 0)::bigint, pg_total_relation_size(oid) FROM pg_class "
                "WHERE relname = :name AND relkind = 'r'"), {"name": table.name})).first()
            rows, size = (int(row[0]), int(row[1])) if row else (0, None)
            if rows == 0:  # never analysed yet: count (a young database is small)
                rows = int(await session.scalar(select(func.count()).select_from(table.model)) or 0)
        else:
            rows = int(await session.scalar(select(func.count()).select_from(table.model)) or 0)
        out.append(TableStat(table.name, rows, size, oldest))
    return out
