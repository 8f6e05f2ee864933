"""The campaign runner: sends a run's recipients through the shared throttle, each at most once.

The pipeline of one run in one process: a feeder claims batches of recipients into a small queue
(``scheduler.campaigns.queue`` owns every SQL statement), senders take throttle slots in batches
(``scheduler.slots``) and call Meta, a writer records results every few dozen milliseconds. What a failed
send means is ``scheduler.campaigns.policy``. Only about a quarter of a second of sends is claimed ahead,
so a crash leaves only those few `unknown`.

Pause, resume and cancel are rows in the database; every run's watcher re-reads its status every
``status_interval`` seconds and stops its workers (even one waiting for the throttle), so a pause takes
effect within a second. Any number of runner tasks and processes work on the same run.

The feeder, senders, writer and watcher of a run share its state and the runner's; apart,
each would take all of it as parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, Settings
from bot.core.identity_hash import optional_salt
from bot.core.loop_health import Backoff, LoopHealth
from bot.core.loops import CAMPAIGNS, Wake, WakeHub, forever
from bot.core.metrics import Metrics
from bot.core.waits import wait_until
from bot.meta.errors import GraphError, SendAction
from bot.meta.graph import GraphClient
from bot.meta.sender import TemplateBody, TemplateSender
from scheduler.campaigns import progress
from scheduler.campaigns.attempts import MAX_LEAD, AttemptMarks
from scheduler.campaigns.estimate import CAMPAIGN_MARGIN
from scheduler.campaigns.pipe import Pipe, RunState, Stopped
from scheduler.campaigns.policy import Claimed, Outcome, Result, RunnerConfig, backoff, decide, penalty_hold
from scheduler.campaigns.queue import RecipientQueue
from scheduler.campaigns.records import RecipientStatus, RunStatus, is_marketing, run_with_campaign
from scheduler.campaigns.unknowns import callback_data
from scheduler.campaigns.variables import components_for
from scheduler.slots import SlotDispenser
from scheduler.throttle import LocalThrottle, RedisThrottle, Throttle, ThrottleUnavailable
from storage.models import utcnow
from storage.send_errors import COUNTED_CODES, count_send_error

__all__ = ["CampaignRunner", "RunnerConfig", "batch_size", "campaign_throttle", "worker_count"]

log = logging.getLogger(__name__)

KEEPALIVE_TRUST = 4.0  # seconds an idle connection to Meta is assumed still open (httpx keeps them 5 s)


def campaign_throttle(redis: Any, shared: Throttle | None = None) -> Throttle:
    """What campaign sends acquire: the shared Redis budget counted with CAMPAIGN_MARGIN, or, without
    Redis, the process's own throttle (a second in-process throttle would not share the number's budget)."""
    if redis is None:
        return shared if shared is not None else LocalThrottle(margin=CAMPAIGN_MARGIN)
    return RedisThrottle(redis, margin=CAMPAIGN_MARGIN)


def batch_size(mps: int) -> int:
    """Recipients claimed in one statement: about 1/8 s of sending, at most 50 (one claim per 50 ms at
    1,000 mps; at low rates few, as a crash leaves what is claimed `unknown`)."""
    return max(1, min(50, mps // 8))


def worker_count(mps: int) -> int:
    """Concurrent senders per run and process: enough to cover, at the full rate, the attempt mark's lead
    (at most ``MAX_LEAD``) and 50 ms of latency (a busy event loop included)."""
    return max(1, min(160, math.ceil(mps * (MAX_LEAD + 0.05))))


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
    body: TemplateBody
    channel_id: int = 0


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
        sender: TemplateSender | None = None,
        owner: Callable[[], int | None] | None = None,
        guard: Callable[[], Callable[[], bool]] | None = None,
        health: LoopHealth | None = None,
        wakes: WakeHub | None = None,
    ) -> None:
        self._sessions = sessions
        self.wakes = wakes or WakeHub()  # woken (CAMPAIGNS) when a campaign fires or recipients are freed
        self.health = health or LoopHealth()
        self._loop_health = self.health.loop("campaign runner", log)
        self._pass_health = self.health.loop("campaign sending", log)
        self._progress_health = self.health.loop("campaign progress updates", log)
        # This process's worker id: what it claims is taken back once it falls silent (campaigns.recovery).
        self._owner = owner or (lambda: None)
        self._marks = AttemptMarks(sessions)
        self._graph = graph
        self._templates = sender  # the pooled template sender; without it, the general Graph client sends
        self._throttle = throttle
        self._settings = settings
        self._metrics = metrics
        self.config = config or RunnerConfig()
        self._queue = RecipientQueue(sessions, self.config.lease, owner=owner, guard=guard,
                                     salt=optional_salt(settings))
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = Wake()
        self._penalty_streak: dict[str, int] = {}
        self._progress_at: dict[int, float] = {}
        self._graph_used: dict[str, float] = {}  # phone_number_id -> loop time of the last Graph call

    # ---- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Recover what a crash left, then drive every running run until cancelled."""
        loop = asyncio.get_running_loop()
        last_recovery = float("-inf")

        async def turn() -> None:
            nonlocal last_recovery
            if loop.time() - last_recovery > self.config.lease / 2:
                await self.recover()
                last_recovery = loop.time()
            await self.release_own()
            self._tasks = {k: t for k, t in self._tasks.items() if not t.done()}
            for run_id in await self._queue.running_runs():
                task = self._tasks.get(run_id)
                if task is None or task.done():
                    self._tasks[run_id] = asyncio.create_task(self._drive_logged(run_id),
                                                              name=f"campaign-run-{run_id}")

        self.wakes.listen(CAMPAIGNS, self._wake)
        try:
            await forever(turn, self.config.poll, self._wake, monitor=self._loop_health, doing="looking for runs")
        finally:
            self.wakes.forget(CAMPAIGNS, self._wake)
            for task in self._tasks.values():
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # ---- one run -----------------------------------------------------------------------------------

    async def recover(self, now: datetime | None = None) -> int:
        """Mark recipients left `sending` past the lease as `unknown` (never re-sent blindly)."""
        return await self._queue.recover(now)

    async def release_own(self) -> None:
        """Recipients this process claimed but no longer works on (a database outage cut their pass off):
        `pending` again if never attempted, `unknown` if their request may have left."""
        done = await self._queue.release_own()
        if done:
            log.warning("campaign recipients this process no longer works on given back: %s", dict(done))
            if done.get(RecipientStatus.PENDING.value):
                self._wake.set()

    async def _drive_logged(self, run_id: int) -> None:
        """`drive`, its failure kept in the log (at a bounded rate); the loop drives the run again."""
        try:
            await self.drive(run_id)
            self._pass_health.ok()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._pass_health.failed(exc, f"run {run_id}")

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
                wait = await self._queue.next_retry_in(run_id)
                if wait is None:
                    break
                await state.sleep(min(wait, self.config.poll))  # only deferred recipients are left
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self._queue.finish_if_done(run_id)

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
            await self._queue.pause(run_id, camp.id, f"channel {channel.name} is no longer configured", None)
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
            body=TemplateBody(camp.template_name, camp.language),
            channel_id=channel.id,
        )

    async def _watch(self, run_id: int, state: RunState) -> None:
        while not state.stopped.is_set():
            await asyncio.sleep(self.config.status_interval)
            try:
                status = await self._queue.run_status(run_id)
            except Exception as exc:
                self._pass_health.failed(exc, f"run {run_id}: status check")
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
        pipe = Pipe(size, reserve=ctx.channel.mps // 4)
        slots = SlotDispenser(self._throttle, ctx.channel.phone_number_id, ctx.channel.mps, self.config.slot_hold,
                              lead=self._marks.lead)
        slots.start()
        senders = [asyncio.create_task(self._sender(ctx, state, pipe, slots)) for _ in range(workers)]
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
            claimed = list(pipe.claimed)
            # A pause lets each sender finish the request it is in; only shutdown cuts one off.
            if cancelled:
                for task in senders:
                    task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            await slots.close()
            # Claimed but never attempted: back to pending. A send cut off mid-call stays `sending`.
            pipe.results.extend(Result(rec, Outcome.RELEASE) for rec in pipe.take_queued())
            pipe.flush_now.set()
            # The writer writes what is left and stops; it is never cancelled mid-write.
            await asyncio.gather(asyncio.shield(writer), return_exceptions=True)
            try:
                if pipe.results:
                    await asyncio.shield(self._flush_until_written(ctx, pipe))
            finally:
                # Whatever is still `sending` of this pass is nobody's work now: `release_own` sees to it.
                self._queue.forget(claimed)
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

        await wait_until(asyncio.gather(*(touch() for _ in range(connections))), 5)
        self._graph_used[pnid] = loop.time()

    async def _feeder(self, ctx: RunContext, state: RunState, pipe: Pipe, size: int) -> None:
        retry = Backoff()
        while not state.stopped.is_set():
            await pipe.wait_for_room(state)
            if state.stopped.is_set():
                return
            try:
                batch = await self._queue.claim(ctx.run_id, size, marketing=ctx.marketing)
            except Exception as exc:
                # The database is away: the senders finish what they hold, the claims resume when it is back.
                self._pass_health.failed(exc, f"run {ctx.run_id}: claiming recipients")
                await state.sleep(retry.next())
                continue
            retry.reset()
            self._pass_health.ok()
            if not batch:
                return
            await pipe.put(batch)

    async def _sender(self, ctx: RunContext, state: RunState, pipe: Pipe, slots: SlotDispenser) -> None:
        while not state.stopped.is_set():
            rec = await pipe.get(state)
            if rec is None:
                return
            result = await self._send(ctx, state, rec, slots)
            await pipe.done(result)
            if result.outcome is Outcome.PAUSE:
                state.stop("paused: " + (result.note or "account problem"))
            if len(pipe.results) >= pipe.size:
                pipe.flush_now.set()

    async def _writer(self, ctx: RunContext, pipe: Pipe) -> None:
        loop = asyncio.get_running_loop()
        last_refresh = loop.time()
        retry = Backoff()
        while True:
            await wait_until(pipe.flush_now.wait(), 0.05)
            pipe.flush_now.clear()
            try:
                await self._flush(ctx, pipe)
                if pipe.closed:
                    return
                if loop.time() - last_refresh > self.config.lease / 3:
                    # Keep the lease of what this process still holds (a long penalty, a slow Meta).
                    last_refresh = loop.time()
                    await self._queue.refresh(pipe.held())
                await self._maybe_progress(ctx.run_id)
                retry.reset()
                self._pass_health.ok()
            except Exception as exc:
                # The results stay in memory, and their recipients `sending` and this process's, until the
                # database takes them: a send that went out is recorded `sent`, never lost nor sent again.
                if pipe.closed:
                    return  # the pass writes what is left itself
                self._pass_health.failed(exc, f"run {ctx.run_id}: recording results")
                await asyncio.sleep(retry.next())

    async def _flush_until_written(self, ctx: RunContext, pipe: Pipe) -> None:
        """The pass's last results, written once the database takes them (for up to one lease; after that
        `release_own` gives what is left its fate)."""
        retry = Backoff()
        deadline = asyncio.get_running_loop().time() + self.config.lease
        while True:
            try:
                await self._flush(ctx, pipe)
                return
            except Exception as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                self._pass_health.failed(exc, f"run {ctx.run_id}: recording the last results")
                await asyncio.sleep(retry.next())

    async def _flush(self, ctx: RunContext, pipe: Pipe) -> None:
        if not pipe.results:
            return
        results, pipe.results = pipe.results, []
        try:
            await self._queue.write(ctx.run_id, ctx.campaign_id, results)
        except Exception:
            pipe.results[:0] = results  # keep them for the next flush; they stay `sending` meanwhile
            raise

    # ---- one send ----------------------------------------------------------------------------------

    async def _send(self, ctx: RunContext, state: RunState, rec: Claimed, slots: SlotDispenser) -> Result:
        pnid = ctx.channel.phone_number_id
        throttled = 0
        while True:
            try:
                slot = await state.race(slots.take())
            except Stopped:
                return Result(rec, Outcome.RELEASE)
            except ThrottleUnavailable as exc:
                log.warning("campaign run %s: throttle unavailable (%s); retrying later", ctx.run_id, exc)
                return Result(rec, Outcome.RETRY, delay=self.config.backoff_base, note=str(exc))
            # Mark no earlier than needed, as a crash between mark and request leaves the recipient `unknown`;
            # twice the lead, as a mark that outlasts its slot's start costs rate (measured: with one lead,
            # 0.983-0.997 of a 1,000-mps cap; with two, 0.993-0.997, as when marking at the grant).
            await slot.wait(ahead=2 * self._marks.lead())
            if state.stopped.is_set():  # paused or cancelled meanwhile: not attempted
                slots.give_back(slot)
                return Result(rec, Outcome.RELEASE)
            held = await self._marks.before_send(rec, self._owner(), self.config.backoff_base)
            if held is not None:
                slots.give_back(slot)
                return held
            await slot.wait()  # the slot was granted for the moment the mark was expected to be done
            state.in_flight.add(rec.id)
            try:
                components = components_for(ctx.variables, rec.fields)
                callback = callback_data(rec.id)
                if self._templates is not None:
                    sent = await self._templates.send(pnid, ctx.channel.access_token, rec.wa_id, ctx.body, components,
                                                      callback_data=callback)
                else:
                    sent = await self._graph.send_template(
                        pnid, ctx.channel.access_token, rec.wa_id, ctx.template, ctx.language, components,
                        callback_data=callback)
            except GraphError as err:
                slots.settle(slot, time.monotonic())
                state.in_flight.discard(rec.id)
                result = await self._failed(ctx, rec, err, throttled)
                if result is None:  # 130429: penalised; same recipient again
                    throttled += 1
                    continue
                self._count(ctx, result.outcome.value)
                return result
            except BaseException as exc:
                slots.settle(slot, time.monotonic())
                if not isinstance(exc, Exception):
                    raise  # shutdown cut the request off
                # A bug or an unexpected transport failure: treat as not sent.
                state.in_flight.discard(rec.id)
                log.exception("campaign run %s: send to %s failed unexpectedly", ctx.run_id, rec.wa_id)
                return backoff(rec, GraphError(None, None, message=repr(exc)), self.config)
            slots.settle(slot, time.monotonic())
            state.in_flight.discard(rec.id)
            self._graph_used[pnid] = asyncio.get_running_loop().time()
            self._penalty_streak.pop(pnid, None)
            self._count(ctx, "sent")
            return Result(rec, Outcome.SENT, wamid=sent.wamid)

    async def _failed(self, ctx: RunContext, rec: Claimed, err: GraphError, throttled: int) -> Result | None:
        hold = 0.0
        if err.code in COUNTED_CODES and ctx.channel_id:
            try:
                await count_send_error(self._sessions, ctx.channel_id, err.code)
            except Exception as exc:  # bookkeeping only: the recipient's outcome does not depend on it
                log.warning("campaign run %s: could not count Meta error %s: %s", ctx.run_id, err.code, exc)
        if err.action is SendAction.THROTTLE:
            pnid = ctx.channel.phone_number_id
            streak = self._penalty_streak.get(pnid, 0) + 1
            self._penalty_streak[pnid] = streak
            hold = penalty_hold(err, self.config, streak)
            with contextlib.suppress(ThrottleUnavailable):
                await self._throttle.penalize(pnid, hold)
            log.info("campaign run %s: %s from Meta; holding %s for %.1fs", ctx.run_id, err.code, pnid, hold)
        return decide(err, rec, self.config, throttled=throttled, hold=hold)

    def _count(self, ctx: RunContext, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.whatsapp_sends.labels(ctx.channel.name, "campaign", outcome).inc()

    # ---- writing results ---------------------------------------------------------------------------

    async def _maybe_progress(self, run_id: int) -> None:
        loop_now = asyncio.get_running_loop().time()
        if loop_now - self._progress_at.get(run_id, 0.0) < self.config.progress_interval:
            return
        self._progress_at[run_id] = loop_now
        bucket = int(utcnow().timestamp() // self.config.progress_interval)
        try:
            async with self._sessions() as session, session.begin():
                await progress.enqueue(session, run_id, str(bucket))
            self._progress_health.ok()
        except Exception as exc:  # a progress update missed is made good by the next one
            self._progress_health.failed(exc, f"run {run_id}: progress update")
