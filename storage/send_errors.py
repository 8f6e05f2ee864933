"""Persistent counts of Meta's throughput refusals per channel and hour: 130429 (the number's rate) and
131056 (one recipient's pair rate). A later successful send clears a recipient's error columns, not these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import SendErrorCount, utcnow
from storage.upsert import insert_ignore

THROUGHPUT = 130429
PAIR_RATE = 131056
COUNTED_CODES = frozenset({THROUGHPUT, PAIR_RATE})


def hour_of(at: datetime) -> datetime:
    """The start of the hour at falls in (the row a count goes to)."""
    return at.replace(minute=0, second=0, microsecond=0)


async def count_send_error(sessions: async_sessionmaker[AsyncSession], channel_id: int, code: int,
                           at: datetime | None = None) -> None:
    """Add one to (channel, code, hour); codes outside COUNTED_CODES are ignored."""
    if code not in COUNTED_CODES:
        return
    hour = hour_of(at or utcnow())
    where = (SendErrorCount.channel_id == channel_id, SendErrorCount.code == code, SendErrorCount.hour == hour)
    async with sessions() as s, s.begin():
        for _ in range(2):  # an insert lost to another process's insert is an update the second time
            done = await s.execute(update(SendErrorCount).where(*where).values(count=SendErrorCount.count + 1))
            if getattr(done, "rowcount", 0):
                return
            if await insert_ignore(s, SendErrorCount, {"channel_id": channel_id, "code": code, "hour": hour,
                                                       "count": 1}, ["channel_id", "code", "hour"]) is not None:
                return


async def counts_since(session: AsyncSession, since: datetime) -> dict[tuple[int, int], int]:
    """(channel_id, code) -> refusals counted in the hours from since's hour on."""
    rows = await session.execute(
        select(SendErrorCount.channel_id, SendErrorCount.code, func.sum(SendErrorCount.count))
        .where(SendErrorCount.hour >= hour_of(since))
        .group_by(SendErrorCount.channel_id, SendErrorCount.code))
    return {(int(channel), int(code)): int(total or 0) for channel, code, total in rows.all()}
