"""The webhook log: raw deliveries stored before the 200, then claimed and processed (an outbox)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from bot.core.liveness import Fence
from storage.fencing import claim_values, held_by, settle
from storage.models import WebhookLog, as_utc, utcnow

LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class ClaimedLog:
    id: int
    raw_body: bytes
    attempts: int
    fence: Fence | None = None  # None: claimed without an owner (a bare lease)


async def store(sessions: async_sessionmaker[AsyncSession], raw_body: bytes, event_type: str) -> int:
    """Commit one raw delivery; returns its id only once it is durable."""
    async with sessions() as session, session.begin():
        log = WebhookLog(raw_body=raw_body, event_type=event_type)
        session.add(log)
        await session.flush()
        return log.id


_TABLE: Table = WebhookLog.__table__  # type: ignore[assignment]
# One statement for every group size: SQLAlchemy renders the executemany as multi-row INSERTs
# ("insertmanyvalues") and, with sort_by_parameter_order, hands the ids back in the order of the rows.
_INSERT_MANY = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)


async def store_many(conn: AsyncConnection, rows: list[tuple[bytes, str]]) -> list[int]:
    """Insert (raw_body, event_type) rows in the caller's transaction; ids in the order of rows."""
    received_at = utcnow()
    params = [{"raw_body": body, "event_type": event_type, "received_at": received_at, "attempts": 0}
              for body, event_type in rows]
    result = await conn.execute(_INSERT_MANY, params)
    return list(result.scalars().all())


async def claim_batch(
    sessions: async_sessionmaker[AsyncSession], limit: int = 50, now: datetime | None = None,
    owner: int | None = None,
) -> list[ClaimedLog]:
    """Lease up to limit unprocessed logs to this worker; other workers skip them until the lease ends, or
    until the owner falls silent (storage/takeover.py)."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        claimable = and_(
            WebhookLog.processed_at.is_(None),
            or_(WebhookLog.claimed_until.is_(None), WebhookLog.claimed_until < now),
        )
        query = select(WebhookLog.id).where(claimable).order_by(WebhookLog.id).limit(limit)
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list((await session.scalars(query)).all())
        if not ids:
            return []
        owned = claim_values(_TABLE, owner) if owner is not None else {"owner_id": None}
        await session.execute(
            update(WebhookLog)
            .where(WebhookLog.id.in_(ids), claimable)
            .values(claimed_until=now + LEASE, attempts=WebhookLog.attempts + 1, **owned)
        )
        rows = (await session.execute(
            select(WebhookLog.id, WebhookLog.raw_body, WebhookLog.attempts, WebhookLog.fence)
            .where(WebhookLog.id.in_(ids)).order_by(WebhookLog.id)
        )).all()
        return [ClaimedLog(id=r.id, raw_body=r.raw_body, attempts=r.attempts,
                           fence=Fence(owner, r.fence) if owner is not None else None) for r in rows]


async def mark_processed(session: AsyncSession, log_id: int, error: str | None = None,
                         fence: Fence | None = None) -> None:
    """Mark a log done inside the caller's transaction, so its effects and the mark commit together.

    With a fence, raises `FencedOut` (rolling all of it back) when another process took the log over."""
    where = [_TABLE.c.id == log_id] + ([held_by(_TABLE, fence)] if fence is not None else [])
    await settle(session, update(_TABLE).where(*where)
                 .values(processed_at=utcnow(), claimed_until=None, error=error, owner_id=None),
                 expected=1 if fence is not None else 0)


async def record_failure(sessions: async_sessionmaker[AsyncSession], log_id: int, error: str,
                         retry_in: timedelta, fence: Fence | None = None) -> None:
    """Keep a failed log pending, with its error, to be tried again after retry_in (unless it was taken
    over meanwhile: then its new claimant decides)."""
    where = [_TABLE.c.id == log_id] + ([held_by(_TABLE, fence)] if fence is not None else [])
    async with sessions() as session, session.begin():
        await session.execute(
            update(_TABLE).where(*where)
            .values(error=error[:4000], claimed_until=utcnow() + retry_in, owner_id=None)
        )


async def pending_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(WebhookLog).where(WebhookLog.processed_at.is_(None))
        ) or 0)


async def oldest_pending_age(sessions: async_sessionmaker[AsyncSession]) -> float:
    """Seconds since the oldest unprocessed delivery arrived (0 when none): the processing lag."""
    async with sessions() as session:
        oldest = await session.scalar(
            select(func.min(WebhookLog.received_at)).where(WebhookLog.processed_at.is_(None))
        )
    if oldest is None:
        return 0.0
    return max(0.0, (utcnow() - as_utc(oldest)).total_seconds())
