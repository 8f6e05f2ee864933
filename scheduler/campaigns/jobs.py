"""Fire campaigns on time: an APScheduler (AsyncIOScheduler) job per scheduled campaign, in every `serve`.

Persistence: the `campaigns` table is the durable store. APScheduler keeps its jobs in memory only; they
are rebuilt from the table at start and kept in step by a sync job every second, so a campaign created by
the CLI (or Slack, or another process) gets its job within a second without a restart. APScheduler 3's own
SQLAlchemyJobStore is not used: with several processes sharing it, each would run every job.

Once-only firing: a firing inserts a `campaign_runs` row keyed by (campaign_id, scheduled_for). Every
process computes the same scheduled time, so when several `serve` processes fire the same job, the unique
key lets exactly one insert win and only that one sends.

Misfires (see `scheduler.schedule` for the policy): the sync job also asks, for each scheduled campaign,
which firing is owed now given the last one recorded; that covers firings missed while no process was
running, jobs added after their time, and a process whose event loop was busy at the moment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.loop_health import LoopHealth
from bot.core.workspace import DEFAULT_WORKSPACE
from scheduler.campaigns import progress
from scheduler.campaigns.records import (
    ACTIVE_RUN,
    CampaignStatus,
    RecipientStatus,
    RunStatus,
    discard_draft,
    is_marketing,
    last_fired,
    schedule_of,
    stale_drafts,
)
from scheduler.campaigns.schedule import MISFIRE_GRACE, Schedule, describe, due
from storage.models import AudienceMember, Campaign, CampaignRecipient, CampaignRun, Channel, Contact, utcnow
from storage.outbox_kinds import Alert, enqueue
from storage.upsert import insert_ignore

log = logging.getLogger(__name__)

SYNC_JOB = "campaigns-sync"
DRAFT_TTL = timedelta(days=1)


async def alert(session: AsyncSession, dedupe: str, subject: str, state: str, text: str,
                campaign_id: int | None = None) -> None:
    """Owe the alerts channel a message (once per dedupe key); a campaign of a workspace other than the
    single-workspace one tells the channel it was created from, in its workspace."""
    found = (await session.execute(select(Campaign.slack_team, Campaign.slack_channel).where(
        Campaign.id == campaign_id))).first() if campaign_id is not None else None
    team, channel = (found[0], found[1]) if found is not None else (DEFAULT_WORKSPACE, None)
    elsewhere = team != DEFAULT_WORKSPACE and bool(channel)
    await enqueue(session, Alert("campaign", subject, state, text, channel=channel if elsewhere else None),
                  dedupe_key=f"alert:campaign:{dedupe}", slack_team=team if elsewhere else DEFAULT_WORKSPACE)


async def fire(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, scheduled_for: datetime, now: datetime | None = None
) -> int | None:
    """Start the campaign's run for scheduled_for; returns its id, or None when it is not this call's to start."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        c = await session.get(Campaign, campaign_id)
        if c is None or c.status != CampaignStatus.SCHEDULED.value:
            return None
        channel = await session.get(Channel, c.channel_id)
        run_id = await insert_ignore(
            session,
            CampaignRun,
            {
                "campaign_id": campaign_id,
                "scheduled_for": scheduled_for,
                "status": RunStatus.RUNNING.value,
                "started_at": now,
                "slack_channel": c.slack_channel or (channel.slack_channel if channel else None),
            },
            ["campaign_id", "scheduled_for"],
        )
        if run_id is None:
            return None  # another process fired it
        busy = await session.scalar(
            select(CampaignRun.id)
            .where(CampaignRun.campaign_id == campaign_id, CampaignRun.id != run_id, CampaignRun.status.in_(ACTIVE_RUN))
            .limit(1)
        )
        if busy is not None:
            await session.execute(
                update(CampaignRun)
                .where(CampaignRun.id == run_id)
                .values(status=RunStatus.SKIPPED.value, finished_at=now)
            )
            await alert(
                session,
                f"{campaign_id}:skipped:{scheduled_for.isoformat()}",
                f"campaign {campaign_id}",
                "skipped",
                f"Campaign #{campaign_id} {c.name}: the firing of "
                f"{scheduled_for:%Y-%m-%d %H:%M} UTC was skipped because run #{busy} is still going.",
                campaign_id=campaign_id,
            )
            return None
        # Copy the audience server-side: constant memory whatever its size.
        await session.execute(
            insert(CampaignRecipient).from_select(
                ["run_id", "wa_id", "fields", "status", "attempts"],
                select(
                    literal(run_id),
                    AudienceMember.wa_id,
                    AudienceMember.fields,
                    literal(RecipientStatus.PENDING.value),
                    literal(0),
                ).where(AudienceMember.campaign_id == campaign_id),
            )
        )
        if is_marketing(c.category):
            await session.execute(
                update(CampaignRecipient)
                .where(
                    CampaignRecipient.run_id == run_id,
                    CampaignRecipient.status == RecipientStatus.PENDING.value,
                    CampaignRecipient.wa_id.in_(select(Contact.wa_id).where(Contact.opted_out.is_(True))),
                )
                .values(status=RecipientStatus.SKIPPED.value, error_title="opted out of marketing")
            )
        if c.schedule_kind != "cron":
            c.status = CampaignStatus.RUNNING.value
        await progress.enqueue(session, run_id, "start")
        log.info("campaign %s fired for %s: run %s", campaign_id, scheduled_for.isoformat(), run_id)
        return run_id


async def record_missed(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, scheduled_for: datetime, now: datetime | None = None
) -> bool:
    """Record a firing passed over by the misfire policy (once, cluster-wide) and alert about it."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        c = await session.get(Campaign, campaign_id)
        if c is None or c.status != CampaignStatus.SCHEDULED.value:
            return False
        run_id = await insert_ignore(
            session,
            CampaignRun,
            {
                "campaign_id": campaign_id,
                "scheduled_for": scheduled_for,
                "status": RunStatus.MISSED.value,
                "started_at": now,
                "finished_at": now,
            },
            ["campaign_id", "scheduled_for"],
        )
        if run_id is None:
            return False
        late = now - scheduled_for
        if c.schedule_kind != "cron":
            c.status = CampaignStatus.MISSED.value
            what = "It was not sent; `/campaign resume` sends it now."
        else:
            what = "That firing was skipped; the schedule continues."
        await alert(
            session,
            f"{campaign_id}:missed:{scheduled_for.isoformat()}",
            f"campaign {campaign_id}",
            "missed",
            f"Campaign #{campaign_id} {c.name} was due at {scheduled_for:%Y-%m-%d %H:%M} UTC, "
            f"{int(late.total_seconds() // 3600)} h ago, while the server was down. {what}",
            campaign_id=campaign_id,
        )
        return True


class CampaignScheduler:
    """Keeps one APScheduler job per scheduled campaign and fires them (see module docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utcnow,
        sync_interval: float = 1.0,
        grace: timedelta = MISFIRE_GRACE,
        on_fire: Callable[[int], None] | None = None,
        health: LoopHealth | None = None,
    ) -> None:
        self._sessions = sessions
        self._health = (health or LoopHealth()).loop("campaign scheduler", log)
        self._clock = clock
        self._sync_interval = sync_interval
        self._grace = grace
        self._on_fire = on_fire
        self._aps: AsyncIOScheduler | None = None
        self._jobs: dict[int, tuple[object, ...]] = {}  # campaign id -> schedule fingerprint of its job
        self._last_cleanup = datetime.min.replace(tzinfo=UTC)
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Start APScheduler, rebuild the jobs from the campaigns table, and keep them in step."""
        self._aps = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
        )
        self._aps.start()
        await self.sync()
        self._aps.add_job(self._job, "interval", args=[self.sync], seconds=self._sync_interval, id=SYNC_JOB,
                          misfire_grace_time=None)

    async def stop(self) -> None:
        """Stop firing and wait for a job that is running (so nothing touches the database afterwards)."""
        self._stopping = True
        aps, self._aps = self._aps, None
        if aps is not None and aps.running:
            aps.remove_all_jobs()  # nothing fires from now on
        # Running firings end before APScheduler shuts down: its executor cancels the jobs it still runs and
        # logs each as an exception with its traceback.
        running = list(self._running)
        if running:
            _, pending = await asyncio.wait(running, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if aps is not None and aps.running:
            aps.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn
        self._jobs.clear()

    async def _job(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run one APScheduler firing as a tracked task, unless stopping."""
        if self._stopping:
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await fn(*args)
            self._health.ok()
        except Exception as exc:  # the next firing (a second later for the sync) tries again
            self._health.failed(exc, getattr(fn, "__name__", "job"))
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cut short by stop() after its grace: the firing is picked up again at the next start (the
            # campaigns table says what is due), so this is an end, not a failure for APScheduler to log.
            log.info("campaign scheduler: a firing was stopped at shutdown")
        finally:
            if task is not None:
                self._running.discard(task)

    def job_ids(self) -> list[str]:
        """The campaign jobs APScheduler holds (for tests and `doctor`)."""
        if self._aps is None:
            return []
        return sorted(j.id for j in self._aps.get_jobs() if j.id != SYNC_JOB)

    async def sync(self) -> list[int]:
        """Match jobs to the table, then fire (or record as missed) whatever is owed now; returns runs started."""
        now = self._clock()
        async with self._sessions() as session:
            rows = list(
                (await session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SCHEDULED.value))).all()
            )
            fired_at = await last_fired(session, [c.id for c in rows])
        self._sync_jobs(rows)
        started: list[int] = []
        for c in rows:
            run_id = await self._apply_due(c, fired_at.get(c.id), now)
            if run_id is not None:
                started.append(run_id)
        if now - self._last_cleanup > timedelta(hours=1):
            self._last_cleanup = now
            await self._cleanup_drafts()
        return started

    async def check(self, campaign_id: int) -> int | None:
        """One campaign's job fired: start whatever it owes now."""
        now = self._clock()
        async with self._sessions() as session:
            c = await session.get(Campaign, campaign_id)
            if c is None or c.status != CampaignStatus.SCHEDULED.value:
                return None
            fired_at = (await last_fired(session, [campaign_id])).get(campaign_id)
        return await self._apply_due(c, fired_at, now)

    async def _apply_due(self, c: Campaign, fired: datetime | None, now: datetime) -> int | None:
        try:
            sched = schedule_of(c)
        except ValueError as exc:
            log.error("campaign %s has an unusable schedule: %s", c.id, exc)
            return None
        # A repeating campaign owes nothing from before it was scheduled or last resumed.
        since = c.active_since or c.created_at
        owed = due(sched, fired, since, now, self._grace)
        if owed.missed is not None:
            await record_missed(self._sessions, c.id, owed.missed, now)
            return None
        if owed.fire_at is None:
            return None
        run_id = await fire(self._sessions, c.id, owed.fire_at, now)
        if run_id is not None and self._on_fire is not None:
            self._on_fire(run_id)
        return run_id

    def _sync_jobs(self, rows: list[Campaign]) -> None:
        if self._aps is None:
            return
        wanted: dict[int, tuple[object, ...]] = {}
        schedules: dict[int, Schedule] = {}
        for c in rows:
            try:
                schedules[c.id] = schedule_of(c)
            except ValueError:
                continue
            wanted[c.id] = (c.schedule_kind, c.run_at, c.cron, c.timezone)
        for cid in list(self._jobs):
            if cid not in wanted:
                self._remove(cid)
        for cid, fingerprint in wanted.items():
            if self._jobs.get(cid) == fingerprint:
                continue
            sched = schedules[cid]
            self._aps.add_job(
                self._job,
                sched.trigger(),
                args=[self.check, cid],
                id=f"campaign:{cid}",
                name=f"campaign {cid}: {describe(sched)}",
                replace_existing=True,
            )
            self._jobs[cid] = fingerprint

    def _remove(self, cid: int) -> None:
        self._jobs.pop(cid, None)
        if self._aps is not None and self._aps.get_job(f"campaign:{cid}") is not None:
            self._aps.remove_job(f"campaign:{cid}")

    async def _cleanup_drafts(self) -> None:
        async with self._sessions() as session:
            ids = await stale_drafts(session, DRAFT_TTL)
        for cid in ids:
            await discard_draft(self._sessions, cid)
