"""Running campaign runs that have stopped moving, for `/healthz`: recipients claimed that nobody works on,
or recipients due that nobody claims.

A sender that works on a recipient refreshes its claim every third of the lease (20 s), and the takeover and
`release_own` give back within seconds what nobody works on; a run with due recipients is claimed from at
once by any process running campaigns. Either lasting `STALL_AFTER` means the process needs a look.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.campaigns.records import RecipientStatus, RunStatus
from storage.models import CampaignRecipient, CampaignRun

R = CampaignRecipient
STALL_AFTER = timedelta(seconds=90)


async def stalled_runs(session: AsyncSession, now: datetime, after: timedelta = STALL_AFTER) -> dict[str, str]:
    """`campaign run N` -> why it looks stuck, for every running run that has not moved for `after`."""
    cutoff = now - after
    running = select(CampaignRun.id).where(CampaignRun.status == RunStatus.RUNNING.value,
                                           CampaignRun.started_at < cutoff)
    found: dict[str, str] = {}
    held = (await session.execute(
        select(R.run_id, func.count()).where(R.run_id.in_(running), R.status == RecipientStatus.SENDING.value,
                                             R.claimed_at < cutoff).group_by(R.run_id)
    )).all()
    for run_id, count in held:
        found[f"campaign run {run_id}"] = (f"{count} recipients claimed (`sending`) with no progress for "
                                           f"{after.total_seconds():.0f}s")
    due = (await session.execute(
        select(R.run_id, func.count()).where(
            R.run_id.in_(running), R.status == RecipientStatus.PENDING.value,
            or_(R.next_attempt_at.is_(None), R.next_attempt_at < cutoff),
        ).group_by(R.run_id)
    )).all()
    for run_id, count in due:
        if f"campaign run {run_id}" in found:
            continue
        recent = await session.scalar(select(R.id).where(
            R.run_id == run_id, and_(R.claimed_at.is_not(None), R.claimed_at >= cutoff)).limit(1))
        if recent is None:
            found[f"campaign run {run_id}"] = (f"{count} recipients due and none claimed for "
                                               f"{after.total_seconds():.0f}s")
    return found
