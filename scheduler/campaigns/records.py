"""Campaign records: create, list, show, pause, resume, cancel (shared by the CLI and Slack).

Campaign status: draft (being prepared, invisible to the scheduler) -> scheduled -> running -> done, or
paused, cancelled, missed (a one-off that fell too long after its time while nothing was running). A
repeating campaign stays `scheduled` between firings; each firing is a run with its own status.

Every state change of a campaign is here, next to the state diagram above,
so that the CLI and Slack cannot diverge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.workspace import DEFAULT_WORKSPACE, in_scope, request_scope
from scheduler.campaigns.schedule import Schedule, describe
from storage.models import (
    AudienceMember,
    Campaign,
    CampaignRecipient,
    CampaignRun,
    Channel,
    Contact,
    Template,
    as_utc,
    utcnow,
)


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"
    MISSED = "missed"


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"
    MISSED = "missed"  # a firing passed over by the misfire policy
    SKIPPED = "skipped"  # a firing that came while the previous run was still going


class RecipientStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


ACTIVE_RUN = (RunStatus.RUNNING.value, RunStatus.PAUSED.value)
FINISHED_CAMPAIGN = (CampaignStatus.CANCELLED.value, CampaignStatus.DONE.value)


class ControlError(Exception):
    """A control action that does not apply to the campaign in its current state."""


def is_marketing(category: str | None) -> bool:
    """Opt-outs apply to marketing templates; an unknown category is treated as marketing, to be safe."""
    return category is None or category.upper() == "MARKETING"


def schedule_of(c: Campaign) -> Schedule:
    """The Schedule a campaign row describes."""
    return Schedule(kind=c.schedule_kind, timezone=c.timezone, run_at=c.run_at, cron=c.cron)


async def run_with_campaign(session: AsyncSession, run_id: int) -> tuple[CampaignRun, Campaign, Channel] | None:
    """A run with its campaign and channel, in one query; None when the run does not exist."""
    row = (
        await session.execute(
            select(CampaignRun, Campaign, Channel)
            .join(Campaign, Campaign.id == CampaignRun.campaign_id)
            .join(Channel, Channel.id == Campaign.channel_id)
            .where(CampaignRun.id == run_id)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


async def find_template(session: AsyncSession, waba_id: str, name: str, language: str) -> Template | None:
    """The synced template of a WABA, if `templates sync` has stored it."""
    return await session.scalar(
        select(Template).where(Template.waba_id == waba_id, Template.name == name, Template.language == language)
    )


async def create_draft(
    session: AsyncSession,
    *,
    name: str,
    channel_id: int,
    template_name: str,
    language: str,
    category: str | None,
    variables: dict[str, Any],
    schedule: Schedule,
    created_by: str | None,
    slack_channel: str | None,
) -> Campaign:
    """Insert a campaign in `draft`, for its audience to be imported before it is scheduled."""
    now = utcnow()
    c = Campaign(
        name=name,
        channel_id=channel_id,
        template_name=template_name,
        language=language,
        category=category,
        variables=variables,
        schedule_kind=schedule.kind,
        run_at=schedule.run_at,
        cron=schedule.cron,
        timezone=schedule.timezone,
        status=CampaignStatus.DRAFT.value,
        created_by=created_by,
        slack_channel=slack_channel,
        created_at=now,
        updated_at=now,
        # The campaign belongs to its number's workspace; only that workspace's requests see it.
        slack_team=await session.scalar(select(Channel.slack_team).where(Channel.id == channel_id))
        or DEFAULT_WORKSPACE,
    )
    session.add(c)
    await session.flush()
    return c


async def activate(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, now: datetime | None = None
) -> Campaign:
    """Move a draft to `scheduled`; a `now` campaign's start time becomes this moment."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        c = await session.get(Campaign, campaign_id)
        if c is None or not in_scope(c.slack_team, f"campaign {campaign_id}"):
            raise ControlError(f"campaign {campaign_id} does not exist")
        if c.status != CampaignStatus.DRAFT.value:
            raise ControlError(f"campaign {campaign_id} is {c.status}, not a draft")
        if c.schedule_kind == "now":
            c.run_at = now
        c.status = CampaignStatus.SCHEDULED.value
        c.active_since = now
        return c


async def discard_draft(sessions: async_sessionmaker[AsyncSession], campaign_id: int) -> bool:
    """Delete a draft and its audience (a modal closed, an import that found nobody)."""
    async with sessions() as session, session.begin():
        c = await session.get(Campaign, campaign_id)
        if c is None or c.status != CampaignStatus.DRAFT.value or not in_scope(c.slack_team, f"campaign {campaign_id}"):
            return False
        await session.execute(delete(AudienceMember).where(AudienceMember.campaign_id == campaign_id))
        await session.delete(c)
        return True


async def audience_counts(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, marketing: bool
) -> tuple[int, int]:
    """(recipients, of whom opted out) in a campaign's audience; opted-out only counts for marketing."""
    async with sessions() as session:
        total = int(
            await session.scalar(
                select(func.count()).select_from(AudienceMember).where(AudienceMember.campaign_id == campaign_id)
            )
            or 0
        )
        opted = 0
        if marketing:
            opted = int(
                await session.scalar(
                    select(func.count())
                    .select_from(AudienceMember)
                    .join(Contact, Contact.wa_id == AudienceMember.wa_id)
                    .where(AudienceMember.campaign_id == campaign_id, Contact.opted_out.is_(True))
                )
                or 0
            )
    return total, opted


@dataclass
class RunSummary:
    id: int
    scheduled_for: datetime
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    finished_at: datetime | None = None


@dataclass
class CampaignSummary:
    id: int
    name: str
    channel: str
    template: str
    language: str
    status: str
    schedule: str
    audience: int
    pause_reason: str | None
    created_by: str | None
    next_fire: datetime | None
    runs: list[RunSummary] = field(default_factory=list)


async def run_counts(session: AsyncSession, run_id: int) -> dict[str, int]:
    """Recipients of a run per status."""
    rows = (
        await session.execute(
            select(CampaignRecipient.status, func.count())
            .where(CampaignRecipient.run_id == run_id)
            .group_by(CampaignRecipient.status)
        )
    ).all()
    return {str(s): int(n) for s, n in rows}


def _next_fire(c: Campaign, now: datetime) -> datetime | None:
    if c.status not in (CampaignStatus.SCHEDULED.value, CampaignStatus.PAUSED.value):
        return None
    try:
        sched = schedule_of(c)
    except ValueError:
        return None
    if sched.kind != "cron":
        return sched.run_at
    return sched.next_fire(now)


async def summaries(
    sessions: async_sessionmaker[AsyncSession],
    *,
    campaign_id: int | None = None,
    limit: int = 20,
    with_runs: bool = False,
) -> list[CampaignSummary]:
    """Newest campaigns first (drafts left out), or the one asked for."""
    now = utcnow()
    async with sessions() as session:
        audience = (
            select(func.count())
            .select_from(AudienceMember)
            .where(AudienceMember.campaign_id == Campaign.id)
            .scalar_subquery()
        )
        query = select(Campaign, Channel.name, audience).join(Channel, Channel.id == Campaign.channel_id)
        scope = request_scope()
        if scope is not None and campaign_id is None:  # a Slack request lists its own workspace's only
            query = query.where(Campaign.slack_team == scope.workspace)
        if campaign_id is not None:
            query = query.where(Campaign.id == campaign_id)
        else:
            query = query.where(Campaign.status != CampaignStatus.DRAFT.value).order_by(Campaign.id.desc()).limit(limit)
        out = []
        for c, channel_name, size in (await session.execute(query)).all():
            if not in_scope(c.slack_team, f"campaign {c.id}"):
                continue
            try:
                sched_text = describe(schedule_of(c))
            except ValueError:
                sched_text = c.schedule_kind
            summary = CampaignSummary(
                id=c.id,
                name=c.name,
                channel=channel_name,
                template=c.template_name,
                language=c.language,
                status=c.status,
                schedule=sched_text,
                audience=int(size or 0),
                pause_reason=c.pause_reason,
                created_by=c.created_by,
                next_fire=_next_fire(c, now),
            )
            runs = (
                await session.scalars(
                    select(CampaignRun)
                    .where(CampaignRun.campaign_id == c.id)
                    .order_by(CampaignRun.scheduled_for.desc())
                    .limit(10 if with_runs else 1)
                )
            ).all()
            for r in runs:
                summary.runs.append(
                    RunSummary(r.id, r.scheduled_for, r.status, await run_counts(session, r.id), r.finished_at)
                )
            out.append(summary)
        return out


async def campaign(sessions: async_sessionmaker[AsyncSession], campaign_id: int) -> CampaignSummary:
    """One campaign with its recent runs; ControlError when there is none."""
    found = await summaries(sessions, campaign_id=campaign_id, with_runs=True)
    if not found or found[0].status == CampaignStatus.DRAFT.value:
        raise ControlError(f"campaign {campaign_id} does not exist")
    return found[0]


async def _load(session: AsyncSession, campaign_id: int) -> Campaign:
    c = await session.get(Campaign, campaign_id, with_for_update=session.bind.dialect.name == "postgresql")
    if c is None or c.status == CampaignStatus.DRAFT.value or not in_scope(c.slack_team, f"campaign {campaign_id}"):
        raise ControlError(f"campaign {campaign_id} does not exist")
    return c


async def pause(sessions: async_sessionmaker[AsyncSession], campaign_id: int, reason: str) -> str:
    """Stop sending and firing; senders notice within a second. Returns what happened, in words."""
    async with sessions() as session, session.begin():
        c = await _load(session, campaign_id)
        if c.status not in (CampaignStatus.SCHEDULED.value, CampaignStatus.RUNNING.value):
            raise ControlError(f"campaign {campaign_id} is {c.status}; only a scheduled or running one can be paused")
        paused_runs = await pause_loaded(session, c, reason)
    return f"campaign {campaign_id} paused" + (" mid-send" if paused_runs else "")


async def pause_loaded(session: AsyncSession, c: Campaign, reason: str) -> int:
    """Pause a scheduled or running campaign in the caller's transaction; returns how many runs stopped."""
    c.status = CampaignStatus.PAUSED.value
    c.pause_reason = reason[:500]
    c.updated_at = utcnow()
    result = await session.execute(
        update(CampaignRun)
        .where(CampaignRun.campaign_id == c.id, CampaignRun.status == RunStatus.RUNNING.value)
        .values(status=RunStatus.PAUSED.value)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


async def resume(sessions: async_sessionmaker[AsyncSession], campaign_id: int) -> str:
    """Continue a paused (or missed) campaign: its run carries on, or it waits for its next firing."""
    async with sessions() as session, session.begin():
        c = await _load(session, campaign_id)
        if c.status not in (CampaignStatus.PAUSED.value, CampaignStatus.MISSED.value):
            raise ControlError(f"campaign {campaign_id} is {c.status}; only a paused or missed one can be resumed")
        if not await resume_loaded(session, c):
            return f"campaign {campaign_id} has nothing left to send"
    return f"campaign {campaign_id} resumed"


async def resume_loaded(session: AsyncSession, c: Campaign) -> bool:
    """Resume a paused or missed campaign in the caller's transaction; False when nothing was left to send."""
    now = utcnow()
    campaign_id = c.id
    result = await session.execute(
        update(CampaignRun)
        .where(CampaignRun.campaign_id == campaign_id, CampaignRun.status == RunStatus.PAUSED.value)
        .values(status=RunStatus.RUNNING.value)
    )
    resumed_runs = result.rowcount or 0  # type: ignore[attr-defined]
    c.pause_reason = None
    c.updated_at = now
    if c.schedule_kind == "cron":
        c.status = CampaignStatus.SCHEDULED.value
        c.active_since = now  # what fell due while paused is not owed
    elif resumed_runs:
        c.status = CampaignStatus.RUNNING.value
    else:
        has_run = await session.scalar(
            select(func.count())
            .select_from(CampaignRun)
            .where(CampaignRun.campaign_id == campaign_id, CampaignRun.status != RunStatus.MISSED.value)
        )
        if has_run:
            c.status = CampaignStatus.DONE.value
            return False
        # Not yet sent: send now if its time has passed (resuming is the decision to send it late).
        c.status = CampaignStatus.SCHEDULED.value
        if c.run_at is None or c.run_at < now:
            await session.execute(
                delete(CampaignRun).where(
                    CampaignRun.campaign_id == campaign_id, CampaignRun.status == RunStatus.MISSED.value
                )
            )
            c.run_at = now
    return True


async def cancel(sessions: async_sessionmaker[AsyncSession], campaign_id: int) -> str:
    """Stop for good: no further firings, and recipients not yet sent are skipped."""
    async with sessions() as session, session.begin():
        c = await _load(session, campaign_id)
        if c.status in FINISHED_CAMPAIGN:
            raise ControlError(f"campaign {campaign_id} is already {c.status}")
        c.status = CampaignStatus.CANCELLED.value
        c.updated_at = utcnow()
        run_ids = list(
            (
                await session.scalars(
                    select(CampaignRun.id).where(
                        CampaignRun.campaign_id == campaign_id, CampaignRun.status.in_(ACTIVE_RUN)
                    )
                )
            ).all()
        )
        skipped = 0
        if run_ids:
            await session.execute(
                update(CampaignRun)
                .where(CampaignRun.id.in_(run_ids))
                .values(status=RunStatus.CANCELLED.value, finished_at=utcnow())
            )
            result = await session.execute(
                update(CampaignRecipient)
                .where(CampaignRecipient.run_id.in_(run_ids), CampaignRecipient.status == RecipientStatus.PENDING.value)
                .values(status=RecipientStatus.SKIPPED.value, error_title="campaign cancelled")
            )
            skipped = result.rowcount or 0  # type: ignore[attr-defined]
    return f"campaign {campaign_id} cancelled" + (f"; {skipped} recipients not sent" if skipped else "")


async def last_fired(session: AsyncSession, campaign_ids: list[int]) -> dict[int, datetime]:
    """The latest recorded firing (any run status) per campaign."""
    if not campaign_ids:
        return {}
    rows = (
        await session.execute(
            select(CampaignRun.campaign_id, func.max(CampaignRun.scheduled_for))
            .where(CampaignRun.campaign_id.in_(campaign_ids))
            .group_by(CampaignRun.campaign_id)
        )
    ).all()
    out: dict[int, datetime] = {}
    for cid, at in rows:
        if at is not None:
            at = as_utc(at)
            out[int(cid)] = at
    return out


async def stale_drafts(session: AsyncSession, older_than: timedelta) -> list[int]:
    """Drafts abandoned for longer than older_than (a modal left open, a crashed import)."""
    cutoff = utcnow() - older_than
    return list(
        (
            await session.scalars(
                select(Campaign.id).where(
                    and_(Campaign.status == CampaignStatus.DRAFT.value, Campaign.updated_at < cutoff)
                )
            )
        ).all()
    )
