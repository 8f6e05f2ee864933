"""The campaign runner: sends a run's recipients through the shared throttle, each at most once.

How a recipient moves: `pending` -> claimed in a small batch (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
SQLite every write transaction holds the database lock and the UPDATE is conditional on `pending`) and
marked `sending` in a commit made BEFORE any call to Meta -> throttle grant -> Graph send -> `sent` with
its wamid (or failed / retried / skipped) in the batch's result commit. A process that dies leaves its
batch `sending`; once the lease has passed, start-up recovery (and every surviving runner, periodically)
turns those into `unknown`: they may or may not have been sent, and re-sending blindly could send twice.
Only about a quarter of a second of sends is claimed ahead (one recipient at a time at low rates), and
results are written every 50 ms, so a crash leaves only those few `unknown`.

What a failed send does (``bot.meta.errors.classify``):
- 130429 (throughput): the whole number is penalised in the shared throttle and the same recipient retried.
- 131056 (pair rate): that recipient goes back to `pending` with a later `next_attempt_at`; others go on.
- 131026, 131049, 131050, 131051 and other per-recipient errors: `failed` with the reason; 131050 also
  opts the contact out of marketing.
- 131042, 190, 368, 131031 and other account-wide errors: the campaign pauses and the alerts channel is
  told; the recipient goes back to `pending` (Meta refused it, so nothing was sent).
- 5xx, connection failures: back to `pending` with exponential backoff, up to ``max_attempts``. A read
  timeout is different: the request reached Meta and may have been sent, so the recipient becomes
  `unknown` rather than risk a second copy.

Pause, resume and cancel are rows in the database; every run's watcher re-reads its status every
``status_interval`` seconds and stops its workers (even one waiting for the throttle), so a pause takes
effect within a second. Any number of runner tasks and processes work on the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar, cast

from sqlalchemy import Table, and_, bindparam, exists, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, Settings
from bot.core.metrics import Metrics
from bot.meta.errors import GraphError, SendAction
from bot.meta.graph import GraphClient
from scheduler.campaigns import progress
from scheduler.campaigns.attempts import AttemptMarks
from scheduler.campaigns.estimate import CAMPAIGN_MARGIN
from scheduler.campaigns.jobs import alert
from scheduler.campaigns.records import (
    CampaignStatus,
    RecipientStatus,
    RunStatus,
    is_marketing,
    run_with_campaign,
)
from scheduler.campaigns.unknowns import callback_data
from scheduler.campaigns.variables import components_for
from scheduler.throttle import LocalThrottle, Priority, RedisThrottle, Throttle, ThrottleUnavailable
from storage import repository as repo
from storage.fencing import claim_values
from storage.models import Campaign, CampaignRecipient, CampaignRun, Contact, MessageStatus, as_utc, utcnow
from storage.send_errors import COUNTED_CODES, count_send_error

log = logging.getLogger(__name__)

T = TypeVar("T")
KEEPALIVE_TRUST = 4.0  # seconds an idle connection to Meta is assumed still open (httpx keeps them 5 s)
R = CampaignRecipient
_TABLE = cast(Table, R.__table__)


@dataclass(frozen=True)
class RunnerConfig:
    """Timings and sizes; the defaults suit production, tests shorten them."""

    lease: float = 60.0  # a recipient `sending` for longer than this, unrefreshed, was left by a dead sender
    poll: float = 0.5  # how often new runs are looked for
    status_interval: float = 0.25  # how often a run's status is re-read (pause/cancel latency)
    pair_retry: float = 6.0  # 131056: wait before trying that recipient again
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    max_attempts: int = 8
    penalty: float = 1.0  # 130429: first hold of the whole number, doubling while it repeats
    penalty_max: float = 30.0
    throttle_retries: int = 5  # 130429 retries of one recipient in place before it goes back to pending
    progress_interval: float = 5.0
    batch: int | None = None  # default: from the number's cap
    workers: int | None = None


def campaign_throttle(redis: Any, shared: Throttle | None = None) -> Throttle:
    """What campaign sends acquire: the shared Redis budget counted with CAMPAIGN_MARGIN, or, without
    Redis, the process's own throttle (a second in-process throttle would not share the number's budget)."""
    if redis is None:
        return shared if shared is not None else LocalThrottle(margin=CAMPAIGN_MARGIN)
    return RedisThrottle(redis, margin=CAMPAIGN_MARGIN)


def batch_size(mps: int) -> int:
    """Recipients claimed at once: about 1/8 s of sending, at most 10 (what a crash can leave unknown)."""
    return max(1, min(10, mps // 8))


def worker_count(mps: int) -> int:
    """Concurrent senders per run and process: enough to keep the throttle busy while others write."""
    return max(1, min(8, math.ceil(mps / 20)))


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    OPT_OUT = "opt_out"
    RETRY = "retry"
    RELEASE = "release"  # not attempted (stopped): back to pending, attempt not counted
    UNKNOWN = "unknown"
    PAUSE = "pause"


@dataclass
class Claimed:
    id: int
    wa_id: str
    fields: dict[str, Any]
    attempts: int
    fence: int | None = None  # this claim's token, when claims are bound to the process's liveness
    guard: Callable[[], bool] | None = None  # false once this process may have lost the claim


@dataclass
class Result:
    recipient: Claimed
    outcome: Outcome
    wamid: str | None = None
    delay: float = 0.0
    error: GraphError | None = None
    note: str | None = None


@dataclass
class RunContext:
    run_id: int
    campaign_id: int
    campaign_name: str
    template: str
    language: str
    variables: dict[str, Any]
    marketing: bool
    channel: ChannelSettings
    channel_id: int = 0


@dataclass
class RunState:
    """A run as one process sees it: stops every worker when its status leaves `running`."""

    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    in_flight: set[int] = field(default_factory=set)  # recipients whose Graph call is under way

    def stop(self, reason: str) -> None:
        if not self.stopped.is_set():
            self.reason = reason
            self.stopped.set()

    async def race(self, aw: Awaitable[T]) -> T:
        """Await aw unless the run stops first (then aw is cancelled and _Stopped raised)."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not stop.done():
                stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise _Stopped()

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), timeout=max(0.0, seconds))


class _Stopped(Exception):
    pass


def _read_timeout(err: GraphError) -> bool:
    """True when the request was sent but no answer came: Meta may have accepted it."""
    return err.maybe_delivered


class CampaignRunner:
    """Sends every running campaign run; start one per process with `run()` (or drive one run in tests)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        graph: GraphClient,
        throttle: Throttle,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        config: RunnerConfig | None = None,
        owner: Callable[[], int | None] | None = None,
        guard: Callable[[], Callable[[], bool]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._guard = guard
        # This process's worker id: what it claims is taken back once it falls silent (campaigns.recovery).
        self._owner = owner or (lambda: None)
        self._marks = AttemptMarks(sessions)
        self._graph = graph
        self._throttle = throttle
        self._settings = settings
        self._metrics = metrics
        self.config = config or RunnerConfig()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._penalty_streak: dict[str, int] = {}
        self._progress_at: dict[int, float] = {}
        self._graph_used: dict[str, float] = {}  # phone_number_id -> loop time of the last Graph call

    # ---- the loop --------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for runs now (a campaign just fired)."""
        self._wake.set()

    async def run(self) -> None:
        """Recover what a crash left, then drive every running run until cancelled."""
        await self.recover()
        loop = asyncio.get_running_loop()
        last_recovery = loop.time()
        try:
            while True:
                try:
                    if loop.time() - last_recovery > self.config.lease / 2:
                        last_recovery = loop.time()
                        await self.recover()
                    self._tasks = {k: t for k, t in self._tasks.items() if not t.done()}
                    for run_id in await self._running_runs():
                        task = self._tasks.get(run_id)
                        if task is None or task.done():
                            self._tasks[run_id] = asyncio.create_task(self.drive(run_id), name=f"campaign-run-{run_id}")
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("campaign runner loop failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll)
                self._wake.clear()
        finally:
            for task in self._tasks.values():
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _running_runs(self) -> list[int]:
        async with self._sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(CampaignRun.id)
                        .where(CampaignRun.status == RunStatus.RUNNING.value)
                        .order_by(CampaignRun.id)
                    )
                ).all()
            )

    async def recover(self, now: datetime | None = None) -> int:
        """Mark recipients left `sending` past the lease as `unknown` (never re-sent blindly)."""
        now = now or utcnow()
        cutoff = now - timedelta(seconds=self.config.lease)
        live = select(CampaignRun.id).where(
            CampaignRun.status.in_((RunStatus.RUNNING.value, RunStatus.PAUSED.value, RunStatus.CANCELLED.value))
        )
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(R)
                .where(
                    R.run_id.in_(live),
                    R.status == RecipientStatus.SENDING.value,
                    R.claimed_at < cutoff,
                    R.owner_id.is_(None),  # claims bound to a process are taken back by its silence instead
                )
                .values(
                    status=RecipientStatus.UNKNOWN.value, error_title="in flight when its sender stopped; not re-sent"
                )
            )
            n = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if n:
            log.warning("campaign runner: %s recipients were in flight when a sender died; marked unknown", n)
        return n

    # ---- one run -----------------------------------------------------------------------------------

    async def drive(self, run_id: int) -> None:
        """Send run_id's recipients from this process until none is left to claim or the run stops."""
        ctx = await self._context(run_id)
        if ctx is None:
            return
        state = RunState()
        watcher = asyncio.create_task(self._watch(run_id, state))
        try:
            while not state.stopped.is_set():
                await self._pass(ctx, state)
                if state.stopped.is_set():
                    break
                wait = await self._next_retry_in(run_id)
                if wait is None:
                    break
                await state.sleep(min(wait, self.config.poll))  # only deferred recipients are left
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self._finish_if_done(run_id)

    async def _context(self, run_id: int) -> RunContext | None:
        async with self._sessions() as session:
            row = await run_with_campaign(session, run_id)
        if row is None:
            return None
        run, camp, channel = row
        if run.status != RunStatus.RUNNING.value:
            return None
        conf = self._settings.channel_by_phone_number_id(channel.phone_number_id)
        if conf is None:
            await self._pause(run_id, camp.id, f"channel {channel.name} is no longer configured", None)
            return None
        return RunContext(
            run_id=run_id,
            campaign_id=camp.id,
            campaign_name=camp.name,
            template=camp.template_name,
            language=camp.language,
            variables=dict(camp.variables or {}),
            marketing=is_marketing(camp.category),
            channel=conf,
            channel_id=channel.id,
        )

    async def _watch(self, run_id: int, state: RunState) -> None:
        while not state.stopped.is_set():
            await asyncio.sleep(self.config.status_interval)
            try:
                async with self._sessions() as session:
                    status = await session.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id))
            except Exception:
                log.exception("campaign run %s: status check failed", run_id)
                continue
            if status != RunStatus.RUNNING.value:
                state.stop(str(status))

    async def _pass(self, ctx: RunContext, state: RunState) -> None:
        """Claim, send and record until nothing is claimable right now.

        Database work is kept off the sending path: a feeder claims batches into a small queue, senders
        take from it, a writer records results every few dozen milliseconds. A slow commit (SQLite's
        write lock, a busy PostgreSQL) then delays bookkeeping, not sends, and the throttle stays busy.
        """
        size = self.config.batch or batch_size(ctx.channel.mps)
        workers = self.config.workers or worker_count(ctx.channel.mps)
        await self._warm_up(ctx, workers)
        # A quarter of a second of sends in reserve rides out a slow commit without idling the senders.
        pipe = _Pipe(size, reserve=ctx.channel.mps // 4)
        senders = [asyncio.create_task(self._sender(ctx, state, pipe)) for _ in range(workers)]
        writer = asyncio.create_task(self._writer(ctx, pipe))
        cancelled = False
        try:
            await self._feeder(ctx, state, pipe, size)
            await pipe.drained(state)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            pipe.closed = True
            await pipe.wake()
            # A pause lets each sender finish the request it is in; only shutdown cuts one off.
            if cancelled:
                for task in senders:
                    task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            # Claimed but never attempted: back to pending. A send cut off mid-call stays `sending`.
            pipe.results.extend(Result(rec, Outcome.RELEASE) for rec in pipe.take_queued())
            pipe.flush_now.set()
            # The writer writes what is left and stops; it is never cancelled mid-write.
            await asyncio.gather(asyncio.shield(writer), return_exceptions=True)
            if pipe.results:
                await asyncio.shield(self._flush(ctx, pipe))
        await self._maybe_progress(ctx.run_id)

    async def _warm_up(self, ctx: RunContext, connections: int) -> None:
        """Open the connections the senders will use before the first grant.

        A send's connection set-up (TCP and TLS to Meta, a hundred milliseconds or more) happens after
        the throttle granted it; sends delayed that much arrive bunched with the next ones and can exceed
        the number's per-second cap at Meta's end. A cheap read of the number on each connection first
        keeps set-up out of the paced path. Its answer does not matter.
        """
        pnid = ctx.channel.phone_number_id
        loop = asyncio.get_running_loop()
        if loop.time() - self._graph_used.get(pnid, float("-inf")) < KEEPALIVE_TRUST:
            return  # connections used moments ago are still open

        async def touch() -> None:
            with contextlib.suppress(Exception):
                await self._graph.get_phone_number(pnid, ctx.channel.access_token, fields=("id",))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(touch() for _ in range(connections))), timeout=5)
        self._graph_used[pnid] = loop.time()

    async def _feeder(self, ctx: RunContext, state: RunState, pipe: _Pipe, size: int) -> None:
        while not state.stopped.is_set():
            await pipe.wait_for_room(state)
            if state.stopped.is_set():
                return
            batch = await self._claim(ctx, size)
            if not batch:
                return
            await pipe.put(batch)

    async def _sender(self, ctx: RunContext, state: RunState, pipe: _Pipe) -> None:
        while not state.stopped.is_set():
            rec = await pipe.get(state)
            if rec is None:
                return
            result = await self._send(ctx, state, rec)
            await pipe.done(result)
            if result.outcome is Outcome.PAUSE:
                state.stop("paused: " + (result.note or "account problem"))
            if len(pipe.results) >= pipe.size:
                pipe.flush_now.set()

    async def _writer(self, ctx: RunContext, pipe: _Pipe) -> None:
        loop = asyncio.get_running_loop()
        last_refresh = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pipe.flush_now.wait(), timeout=0.05)
            pipe.flush_now.clear()
            await self._flush(ctx, pipe)
            if pipe.closed:
                return
            if loop.time() - last_refresh > self.config.lease / 3:
                # Keep the lease of what this process still holds (a long penalty, a slow Meta).
                last_refresh = loop.time()
                await self._refresh(pipe.held())
            await self._maybe_progress(ctx.run_id)

    async def _flush(self, ctx: RunContext, pipe: _Pipe) -> None:
        if not pipe.results:
            return
        results, pipe.results = pipe.results, []
        try:
            await self._write(ctx, results)
        except Exception:
            pipe.results[:0] = results  # keep them for the next flush; they stay `sending` meanwhile
            raise

    async def _claim(self, ctx: RunContext, limit: int) -> list[Claimed]:
        """Mark up to limit due recipients `sending` and commit, before anything is sent to Meta."""
        while True:
            claimed, skipped = await self._claim_once(ctx, limit)
            if claimed or not skipped:
                return claimed
            # A whole batch of opted-out contacts was skipped: look again rather than report "nothing left".

    async def _claim_once(self, ctx: RunContext, limit: int) -> tuple[list[Claimed], bool]:
        now = utcnow()
        claimable = and_(
            R.run_id == ctx.run_id,
            R.status == RecipientStatus.PENDING.value,
            or_(R.next_attempt_at.is_(None), R.next_attempt_at <= now),
        )
        async with self._sessions() as session, session.begin():
            query = select(R.id).where(claimable).limit(limit)
            if session.bind.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.scalars(query)).all())
            if not ids:
                return [], False
            skipped = False
            if ctx.marketing:
                # Opt-outs that came in after the run started are honoured here, just before sending.
                opted = set(
                    (
                        await session.scalars(
                            select(R.id)
                            .join(Contact, Contact.wa_id == R.wa_id)
                            .where(R.id.in_(ids), Contact.opted_out.is_(True))
                        )
                    ).all()
                )
                if opted:
                    skipped = True
                    await session.execute(
                        update(R)
                        .where(R.id.in_(opted), R.status == RecipientStatus.PENDING.value)
                        .values(status=RecipientStatus.SKIPPED.value, error_title="opted out of marketing")
                    )
                    ids = [i for i in ids if i not in opted]
            if not ids:
                return [], skipped
            owner = self._owner()
            owned = claim_values(_TABLE, owner) if owner is not None else {"owner_id": None}
            rows = (
                await session.execute(
                    update(R)
                    .where(R.id.in_(ids), R.status == RecipientStatus.PENDING.value)
                    .values(status=RecipientStatus.SENDING.value, claimed_at=now, attempts=R.attempts + 1,
                            attempted_at=None, **owned)
                    .returning(R.id, R.wa_id, R.fields, R.attempts, R.fence)
                )
            ).all()
        guard = self._guard() if self._guard is not None else None
        claimed = [Claimed(r.id, r.wa_id, dict(r.fields or {}), int(r.attempts),
                           int(r.fence) if owner is not None else None, guard) for r in rows]
        return sorted(claimed, key=lambda c: c.id), skipped

    async def _refresh(self, ids: list[int]) -> None:
        """Extend the lease of a batch still being worked on (a long throttle penalty, a slow Meta)."""
        if not ids:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(R).where(R.id.in_(ids), R.status == RecipientStatus.SENDING.value).values(claimed_at=utcnow())
            )

    async def _next_retry_in(self, run_id: int) -> float | None:
        """Seconds until the earliest deferred recipient is due; None when nothing is pending at all."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(func.count(), func.min(R.next_attempt_at)).where(
                        R.run_id == run_id, R.status == RecipientStatus.PENDING.value
                    )
                )
            ).one()
        if not row[0]:
            return None
        soonest = row[1]
        if soonest is None:
            return 0.0
        return max(0.0, (as_utc(soonest) - utcnow()).total_seconds())

    # ---- one send ----------------------------------------------------------------------------------

    async def _send(self, ctx: RunContext, state: RunState, rec: Claimed) -> Result:
        pnid, mps = ctx.channel.phone_number_id, ctx.channel.mps
        throttled = 0
        while True:
            try:
                await state.race(self._throttle.acquire(pnid, mps, Priority.BULK))
            except _Stopped:
                return Result(rec, Outcome.RELEASE)
            except ThrottleUnavailable as exc:
                log.warning("campaign run %s: throttle unavailable (%s); retrying later", ctx.run_id, exc)
                return Result(rec, Outcome.RETRY, delay=self.config.backoff_base, note=str(exc))
            # Committed before the request leaves: after a crash only a marked recipient can be `unknown`.
            try:
                if not await self._marks.mark(rec.id, self._owner() if rec.fence is not None else None, rec.fence):
                    log.warning("campaign run %s: recipient %s was taken over; not sent here", ctx.run_id, rec.id)
                    return Result(rec, Outcome.RELEASE)
            except Exception as exc:
                log.warning("campaign run %s: cannot mark recipient %s attempted (%s); later", ctx.run_id, rec.id, exc)
                return Result(rec, Outcome.RETRY, delay=self.config.backoff_base, note=str(exc))
            if rec.guard is not None and not rec.guard():
                # Unheard long enough for another process to have taken this recipient over: sending now could
                # be a second message. Recovery (or the new claimant) decides.
                log.warning("campaign run %s: recipient %s may have been taken over; not sent here", ctx.run_id, rec.id)
                return Result(rec, Outcome.RELEASE)
            state.in_flight.add(rec.id)
            try:
                sent = await self._graph.send_template(
                    pnid,
                    ctx.channel.access_token,
                    rec.wa_id,
                    ctx.template,
                    ctx.language,
                    components_for(ctx.variables, rec.fields),
                    callback_data=callback_data(rec.id),
                )
            except GraphError as err:
                state.in_flight.discard(rec.id)
                result = await self._failed(ctx, rec, err, throttled)
                if result is None:  # 130429: penalised; same recipient again
                    throttled += 1
                    continue
                self._count(ctx, result.outcome.value)
                return result
            except Exception as exc:  # a bug or an unexpected transport failure: treat as not sent
                state.in_flight.discard(rec.id)
                log.exception("campaign run %s: send to %s failed unexpectedly", ctx.run_id, rec.wa_id)
                return self._backoff(rec, GraphError(None, None, message=repr(exc)))
            state.in_flight.discard(rec.id)
            self._graph_used[pnid] = asyncio.get_running_loop().time()
            self._penalty_streak.pop(pnid, None)
            self._count(ctx, "sent")
            return Result(rec, Outcome.SENT, wamid=sent.wamid)

    async def _failed(self, ctx: RunContext, rec: Claimed, err: GraphError, throttled: int) -> Result | None:
        action = err.action
        pnid = ctx.channel.phone_number_id
        if err.code in COUNTED_CODES and ctx.channel_id:
            try:
                await count_send_error(self._sessions, ctx.channel_id, err.code)
            except Exception as exc:  # bookkeeping only: the recipient's outcome does not depend on it
                log.warning("campaign run %s: could not count Meta error %s: %s", ctx.run_id, err.code, exc)
        if action is SendAction.THROTTLE:
            streak = self._penalty_streak.get(pnid, 0) + 1
            self._penalty_streak[pnid] = streak
            hold = err.retry_after or min(self.config.penalty_max, self.config.penalty * 2 ** (streak - 1))
            try:
                await self._throttle.penalize(pnid, hold)
            except ThrottleUnavailable:
                pass
            log.info("campaign run %s: %s from Meta; holding %s for %.1fs", ctx.run_id, err.code, pnid, hold)
            if throttled < self.config.throttle_retries:
                return None
            return Result(rec, Outcome.RETRY, delay=hold, error=err)
        if action is SendAction.RETRY_RECIPIENT_LATER:
            return Result(rec, Outcome.RETRY, delay=self.config.pair_retry, error=err)
        if action is SendAction.OPT_OUT:
            return Result(rec, Outcome.OPT_OUT, error=err)
        if action in (SendAction.FAIL_RECIPIENT, SendAction.WINDOW_CLOSED):
            return Result(rec, Outcome.FAILED, error=err)
        if action is SendAction.PAUSE_AND_ALERT:
            return Result(rec, Outcome.PAUSE, error=err, note=f"{err.explanation} (Meta error {err.code})")
        if _read_timeout(err):
            return Result(
                rec, Outcome.UNKNOWN, error=err, note="no answer from Meta after the request was sent; not re-sent"
            )
        return self._backoff(rec, err)

    def _backoff(self, rec: Claimed, err: GraphError) -> Result:
        if rec.attempts >= self.config.max_attempts:
            return Result(rec, Outcome.FAILED, error=err, note=f"gave up after {rec.attempts} attempts")
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (rec.attempts - 1))
        return Result(rec, Outcome.RETRY, delay=delay, error=err)

    def _count(self, ctx: RunContext, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.whatsapp_sends.labels(ctx.channel.name, "campaign", outcome).inc()

    # ---- writing results ---------------------------------------------------------------------------

    async def _write(self, ctx: RunContext, results: list[Result]) -> None:
        """Record a batch of outcomes in one transaction (one statement per kind of outcome)."""
        if not results:
            return
        now = utcnow()
        table = cast(Table, R.__table__)
        rid: Any = bindparam("rid")
        expected = RecipientStatus.SENDING.value
        by_kind: dict[Outcome, list[dict[str, Any]]] = {}
        pause: Result | None = None
        opt_outs: list[Result] = []
        for res in results:
            err = res.error
            title = res.note or (err.explanation if err else None)
            row: dict[str, Any] = {"rid": res.recipient.id, "code": err.code if err else None,
                                   "title": title[:500] if title else None,
                                   "b_owner": self._owner() if res.recipient.fence is not None else None,
                                   "b_fence": res.recipient.fence}
            if res.outcome is Outcome.SENT:
                row["wamid"] = res.wamid
            elif res.outcome is Outcome.RETRY:
                row["due"] = now + timedelta(seconds=res.delay)
            elif res.outcome is Outcome.PAUSE:
                pause = pause or res
            elif res.outcome is Outcome.OPT_OUT:
                opt_outs.append(res)
            kind = {Outcome.OPT_OUT: Outcome.FAILED, Outcome.PAUSE: Outcome.RELEASE}.get(res.outcome, res.outcome)
            if res.outcome is Outcome.PAUSE:
                row["keep_error"] = True
            by_kind.setdefault(kind, []).append(row)
        # Still this claim's: same owner and token (claims made without an owner have no token to match).
        bound = any(res.recipient.fence is not None for res in results)
        held = (and_(table.c.owner_id == bindparam("b_owner"), table.c.fence == bindparam("b_fence")) if bound
                else true())
        mine = and_(table.c.id == rid, table.c.status == expected, held)
        statements: dict[Outcome, Any] = {
            # Also over `unknown`: recovery may have given up on a slow send that did go out.
            Outcome.SENT: update(table).where(table.c.id == rid, or_(
                and_(table.c.status == expected, held), table.c.status == RecipientStatus.UNKNOWN.value)).values(
                status=RecipientStatus.SENT.value, wamid=bindparam("wamid"), sent_at=now, error_code=None,
                error_title=None, owner_id=None),
            Outcome.RETRY: update(table).where(mine).values(
                status=RecipientStatus.PENDING.value, next_attempt_at=bindparam("due"), owner_id=None,
                error_code=bindparam("code"), error_title=bindparam("title")),
            Outcome.FAILED: update(table).where(mine).values(owner_id=None,
                status=RecipientStatus.FAILED.value, error_code=bindparam("code"), error_title=bindparam("title")),
            Outcome.UNKNOWN: update(table).where(mine).values(owner_id=None,
                status=RecipientStatus.UNKNOWN.value, error_code=bindparam("code"), error_title=bindparam("title")),
        }
        async with self._sessions() as session, session.begin():
            for kind, rows in by_kind.items():
                if kind is Outcome.RELEASE:
                    # Not attempted (or refused by Meta for an account-wide reason): the attempt does not count.
                    plain = [r for r in rows if not r.get("keep_error")]
                    refused = [r for r in rows if r.get("keep_error")]
                    if plain:
                        await session.execute(update(table).where(mine).values(
                            status=RecipientStatus.PENDING.value, attempts=table.c.attempts - 1, owner_id=None,
                            attempted_at=None), plain)
                    if refused:
                        await session.execute(update(table).where(mine).values(
                            status=RecipientStatus.PENDING.value, attempts=table.c.attempts - 1, owner_id=None,
                            attempted_at=None, error_code=bindparam("code"), error_title=bindparam("title")), refused)
                    continue
                # Rows taken over by another process (this one was silent too long) match nothing: skipped,
                # their outcome is the new claimant's, or recovery's and Meta's status webhooks'.
                await session.execute(statements[kind], rows)
            for res in opt_outs:
                code = res.error.code if res.error else None
                contact = await repo.contact_for(session, res.recipient.wa_id)
                await repo.set_opt_out(session, contact.id, True, reason=f"Meta error {code}: stopped marketing")
            wamids = [r["wamid"] for r in by_kind.get(Outcome.SENT, [])]
            if wamids:
                # Statuses can arrive before the send call returns: fold in any that came first.
                early = (await session.scalars(select(MessageStatus.wamid).where(
                    MessageStatus.wamid.in_(wamids)).distinct())).all()
                for wamid in early:
                    await repo.apply_statuses(session, wamid)
        if pause is not None:
            await self._pause(ctx.run_id, ctx.campaign_id, pause.note or "account problem", pause.error)

    async def _pause(self, run_id: int, campaign_id: int, reason: str, err: GraphError | None) -> None:
        """Pause a campaign from inside (an account-wide error); the first process to do so alerts."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(CampaignRun)
                .where(CampaignRun.id == run_id, CampaignRun.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.PAUSED.value)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return
            camp = await session.get(Campaign, campaign_id)
            if camp is not None and camp.status in (CampaignStatus.RUNNING.value, CampaignStatus.SCHEDULED.value):
                camp.status = CampaignStatus.PAUSED.value
                camp.pause_reason = reason[:500]
            name = camp.name if camp else str(campaign_id)
            await alert(
                session,
                f"{campaign_id}:paused:{run_id}:{utcnow().isoformat()}",
                f"campaign {campaign_id}",
                "paused",
                f":warning: Campaign #{campaign_id} {name} paused: {reason}. "
                f"Fix it, then `/campaign resume {campaign_id}`.",
            )
            await progress.enqueue(session, run_id, f"paused:{utcnow().isoformat()}")
        log.warning("campaign %s paused: %s", campaign_id, reason)

    async def _finish_if_done(self, run_id: int) -> bool:
        """Close a run with nothing pending or in flight, and post its final report."""
        async with self._sessions() as session, session.begin():
            left = await session.scalar(
                select(
                    exists().where(
                        R.run_id == run_id, R.status.in_((RecipientStatus.PENDING.value, RecipientStatus.SENDING.value))
                    )
                )
            )
            if left:
                return False
            result = await session.execute(
                update(CampaignRun)
                .where(CampaignRun.id == run_id, CampaignRun.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.DONE.value, finished_at=utcnow())
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            run = await session.get(CampaignRun, run_id)
            camp = await session.get(Campaign, run.campaign_id) if run else None
            if camp is not None and camp.schedule_kind != "cron" and camp.status == CampaignStatus.RUNNING.value:
                camp.status = CampaignStatus.DONE.value
            await progress.enqueue(session, run_id, "final")
        log.info("campaign run %s finished", run_id)
        return True

    async def _maybe_progress(self, run_id: int) -> None:
        loop_now = asyncio.get_running_loop().time()
        if loop_now - self._progress_at.get(run_id, 0.0) < self.config.progress_interval:
            return
        self._progress_at[run_id] = loop_now
        bucket = int(utcnow().timestamp() // self.config.progress_interval)
        async with self._sessions() as session, session.begin():
            await progress.enqueue(session, run_id, str(bucket))


class _Pipe:
    """Claimed recipients waiting to be sent, and results waiting to be written, for one pass of a run."""

    def __init__(self, size: int, reserve: int | None = None) -> None:
        self.size = size
        self.reserve = max(size, reserve or 0)  # claim more once no more than this many are queued
        self.queue: list[Claimed] = []
        self.results: list[Result] = []
        self.sending: dict[int, Claimed] = {}
        self.idle_senders = 0
        self.closed = False
        self.flush_now = asyncio.Event()
        self._changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wake(self) -> None:
        """Make every waiter look again (the pass is closing)."""
        await self._notify()

    async def put(self, batch: list[Claimed]) -> None:
        self.queue.extend(batch)
        await self._notify()

    async def get(self, state: RunState) -> Claimed | None:
        """The next claimed recipient; None when the pass is over or the run stopped."""
        async with self._changed:
            self.idle_senders += 1
            self._changed.notify_all()  # the feeder may be waiting for an idle sender
            try:
                while not self.queue and not self.closed and not state.stopped.is_set():
                    await _wait(self._changed, state)
            finally:
                self.idle_senders -= 1
            if not self.queue or state.stopped.is_set():
                return None
            rec = self.queue.pop(0)
            self.sending[rec.id] = rec
            self._changed.notify_all()
            return rec

    async def done(self, result: Result) -> None:
        self.sending.pop(result.recipient.id, None)
        self.results.append(result)
        await self._notify()

    async def wait_for_room(self, state: RunState) -> None:
        """Claim the next batch while one is still queued, so a slow commit never leaves the senders idle;
        at low rates (batches of one) only once a sender is idle: the fewer recipients sit claimed, the
        fewer a crash leaves `unknown`."""
        async with self._changed:
            while not state.stopped.is_set():
                if self.size > 1 and len(self.queue) <= self.reserve:
                    return
                if self.size == 1 and not self.queue and self.idle_senders > 0:
                    return
                await _wait(self._changed, state)

    async def drained(self, state: RunState) -> None:
        """Wait until every queued recipient has been sent (or the run stopped)."""
        async with self._changed:
            while (self.queue or self.sending) and not state.stopped.is_set():
                await _wait(self._changed, state)

    def take_queued(self) -> list[Claimed]:
        queued, self.queue = self.queue, []
        return queued

    def held(self) -> list[int]:
        return [r.id for r in self.queue] + list(self.sending)


async def _wait(cond: asyncio.Condition, state: RunState) -> None:
    # A short timeout re-checks the run's status even when nobody notifies.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cond.wait(), timeout=0.1)
