"""Retention: delete processed log rows older than a cutoff, a small batch per statement.

Only rows whose work is over are touched: deliveries already processed, Slack event ids already handled,
Slack posts already delivered. Short statements keep locks brief so pruning never stalls the hot path.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import SlackEvent, SlackOutbox, WebhookLog


@dataclass(frozen=True)
class Prunable:
    """A log table: its key, the time that ages a row, what makes a row finished, and when a row was made
    (read through an indexed order, so finding the oldest row never scans the table)."""

    name: str
    model: Any
    key: Any
    aged_by: Any
    finished: ColumnElement[bool] | None
    born: Any
    oldest_first: Any


PRUNABLE: tuple[Prunable, ...] = (
    Prunable("webhook_logs", WebhookLog, WebhookLog.id, WebhookLog.processed_at,
             WebhookLog.processed_at.is_not(None), WebhookLog.received_at, WebhookLog.id),
    Prunable("slack_events", SlackEvent, SlackEvent.event_id, SlackEvent.received_at, None,
             SlackEvent.received_at, SlackEvent.received_at),
    Prunable("slack_outbox", SlackOutbox, SlackOutbox.id, SlackOutbox.done_at, SlackOutbox.done_at.is_not(None),
             SlackOutbox.created_at, SlackOutbox.id),
)


async def prune_batch(session: AsyncSession, table: Prunable, cutoff: datetime, limit: int) -> int:
    """Delete up to limit finished rows of table aged before cutoff; returns how many went."""
    where = [table.aged_by < cutoff]
    if table.finished is not None:
        where.append(table.finished)
    doomed = select(table.key).where(*where).limit(limit).scalar_subquery()
    result = await session.execute(delete(table.model).where(table.key.in_(doomed))
                                   .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def prune_table(sessions: async_sessionmaker[AsyncSession], table: Prunable, cutoff: datetime,
                      limit: int, pause: float = 0.0) -> int:
    """Prune table batch by batch (one commit each, pause seconds apart) until nothing old is left."""
    total = 0
    while True:
        async with sessions() as session, session.begin():
            n = await prune_batch(session, table, cutoff, limit)
        total += n
        if n < limit:
            return total
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
