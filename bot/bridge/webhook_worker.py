"""Process stored Meta deliveries: claim a batch from webhook_logs (live lane first), apply it and mark it done
in one commit; a batch that cannot commit is applied again one delivery per transaction."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.bridge import history_import, webhook_batch
from bot.bridge.intake_first import IntakeFirst
from bot.bridge.meta_events import EventContext, apply_event
from bot.core.loop_health import LoopHealth
from bot.core.loops import AUTO_REPLIES, SLACK_OUTBOX, WEBHOOKS, WakeHub, forever
from bot.core.metrics import Metrics
from bot.meta.events import HistoryChunk
from bot.meta.parser import event_type_of, parse_delivery
from storage import webhook_logs
from storage.fencing import FencedOut, InHand
from storage.lanes import BULK, LANES, Lane
from storage.write_gate import WriteGate

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 3600.0
PARSE_SLICE = 25  # deliveries parsed between two yields to the event loop
RECORD_RETRY_CAP = 5.0  # seconds between attempts to record a failure while the database is away
BULK_LINGER = 0.25  # seconds the bulk lane lets deliveries gather after a batch that was not full
LAG_REFRESH = 1.0  # seconds between two reads of the processing lag (a gauge; not once per batch)


def retry_delay(attempts: int) -> timedelta:
    """Back off 2, 4, 8 … seconds, at most an hour: a poison delivery never blocks the rest."""
    return timedelta(seconds=min(MAX_RETRY_DELAY, 2.0 ** max(1, attempts)))


def _phone_number_ids(events: list) -> str:
    ids = {e.envelope.phone_number_id for e in events if getattr(e, "envelope", None) is not None}
    return ",".join(sorted(i for i in ids if i)) or "-"


class WebhookWorker:
    """One per process; several processes may run against one database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], make_context: Callable[[], EventContext],
                 metrics: Metrics, *, batch: int = 100, bulk_batch: int = 200, poll_interval: float = 1.0,
                 bulk_linger: float = BULK_LINGER, owner: Callable[[], int | None] | None = None,
                 health: LoopHealth | None = None, gate: WriteGate | None = None, fair: bool = False,
                 wakes: WakeHub | None = None, intake: IntakeFirst | None = None) -> None:
        self._sessions = sessions
        self._intake = intake  # this process's ingest writer, when it takes deliveries too
        self._gate = gate or WriteGate()  # history imports let webhooks being stored go first
        self._health = health or LoopHealth()
        self.hand = InHand()  # deliveries this process is applying (storage.takeover gives back the rest)
        # This process's worker id (its heartbeat row): claims are then bound to its liveness and fenced.
        self._owner = owner or (lambda: None)
        self._make_context = make_context
        self._metrics = metrics
        self._batch = batch
        self._bulk_batch = bulk_batch
        self._poll = poll_interval
        self._bulk_linger = bulk_linger
        # Many workspaces: live deliveries are claimed round robin across workspaces (one's storm never
        # queues in front of another's customers); with one workspace, in arrival order.
        self._fair = fair
        # Woken (WEBHOOKS) when deliveries are stored; wakes the outbox (SLACK_OUTBOX) after each batch.
        self.wakes = wakes or WakeHub()
        self._lag_read_at = -LAG_REFRESH  # monotonic time of the last read of the processing lag

    async def run(self) -> None:
        """One loop per lane: a customer message never waits for the bulk batch in progress to commit, and
        live deliveries are still applied one batch after another in this process (in arrival order)."""
        await asyncio.gather(*(self._loop((lane,)) for lane in LANES))

    async def _loop(self, lanes: Sequence[Lane]) -> None:
        wake = self.wakes.listen(WEBHOOKS)

        # Acks first (`--role all`): while the acks are slow or deliveries arrive faster than they are applied,
        # the bulk lane rests a while; the live lane only in a flood (bot.bridge.intake_first).
        intake = self._intake
        live = lanes != (BULK,)
        limit = self._batch if live else self._bulk_batch

        async def turn() -> float | None:
            if intake is not None:
                await intake.turn(live=live)
            started = time.perf_counter()
            done = await self.process_available(lanes=lanes)
            took, full = time.perf_counter() - started, done >= limit
            rest = 0.0
            if intake is not None and done:
                rest = (intake.live_rest_after(took, full=full) if live
                        else intake.rest_after(done, took, full=full))
            if 0 < done < self._bulk_batch and not live:
                # A status storm arrives a few deliveries at a time: applied as they come, each batch pays a
                # transaction for two or three statuses and takes the CPU live traffic needs. Statuses wait
                # a moment and are applied by the hundred instead; a full batch means a backlog, no wait.
                return max(self._bulk_linger, rest)
            return rest if done else None

        try:
            await forever(turn, self._poll, wake, monitor=self._health.loop(f"webhook worker ({'+'.join(lanes)})", log),
                          doing="claiming and applying deliveries")
        finally:
            self.wakes.forget(WEBHOOKS, wake)

    async def process_available(self, *, lanes: Sequence[Lane] = LANES) -> int:
        """Claim and process one batch from the first of lanes with work waiting; returns its size."""
        claimed = await webhook_logs.claim_batch(self._sessions, self._batch, bulk_limit=self._bulk_batch,
                                                 lanes=lanes, owner=self._owner(), hand=self.hand,
                                                 fair=self._fair)
        if claimed:
            try:
                await self._apply(claimed)
            finally:
                self.hand.drop((c.id, c.fence.token) for c in claimed if c.fence is not None)
            # Before the lag query: the outbox (and the away messages owed) need not wait for it.
            self.wakes.wake(SLACK_OUTBOX, AUTO_REPLIES)
        now = time.monotonic()
        if now - self._lag_read_at >= LAG_REFRESH:
            # Its own session and query: read after each batch it cost a tenth of a small batch's CPU.
            self._lag_read_at = now
            self._metrics.processing_lag.set(await webhook_logs.oldest_pending_age(self._sessions))
        return len(claimed)

    async def _apply(self, claimed: list[webhook_logs.ClaimedLog]) -> None:
        """The whole batch in one transaction; if that fails, each delivery in its own (the old path)."""
        started = time.perf_counter()
        batch = []
        for n, item in enumerate(claimed, 1):
            batch.append(webhook_batch.parse(item))
            if n % PARSE_SLICE == 0:
                # Parsing a bulk batch is pure CPU: let the ack path (same event loop in `--role all`) run.
                await asyncio.sleep(0)
        history = [p for p in batch if history_import.carries_history(p)]
        for parsed in history:
            await self._apply_history(parsed)
        batch = [p for p in batch if p not in history]
        if not batch:
            return
        ctx = self._make_context()
        try:
            async with self._sessions() as session, session.begin():
                outcome = await webhook_batch.apply_batch(session, ctx, batch, retry_delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("batch of %d deliveries failed to commit; applying them one by one", len(batch),
                        exc_info=True)
            for parsed in batch:
                await self._process(parsed.item)
            return
        for kind, n in ctx.stats.items():
            self._metrics.events_applied.labels(kind).inc(n)
        # One increment per event type, not per delivery (a labelled child's look-up and lock each time).
        for event_type, n in Counter(parsed.event_type for parsed in outcome.applied).items():
            self._metrics.webhooks_processed.labels(event_type, "ok").inc(n)
        for parsed, exc in outcome.failed:
            log.error("webhook log %s failed (attempt %s): %r", parsed.item.id, parsed.item.attempts, exc)
            self._metrics.webhooks_processed.labels(parsed.event_type, "error").inc()
        log.info("webhook batch processed", extra={
            "lane": claimed[0].lane, "deliveries": len(claimed), "failed": len(outcome.failed),
            "first_log_id": claimed[0].id, "last_log_id": claimed[-1].id,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        })

    async def _apply_history(self, parsed: webhook_batch.Parsed) -> None:
        """A history delivery in slices of its own transactions (see history_import)."""
        item = parsed.item
        ctx = self._make_context()
        started = time.perf_counter()
        try:
            await history_import.apply_history(self._sessions, ctx, parsed, self._gate)
        except FencedOut:
            log.warning("webhook log %s was taken over by another process; dropped here", item.id)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("webhook log %s failed (attempt %s)", item.id, item.attempts)
            self._metrics.webhooks_processed.labels(parsed.event_type, "error").inc()
            await self._record_failure(item, repr(exc))
            return
        for kind, n in ctx.stats.items():
            self._metrics.events_applied.labels(kind).inc(n)
        self._metrics.webhooks_processed.labels(parsed.event_type, "ok").inc()
        log.info("history delivery processed", extra={
            "log_id": item.id, "messages": sum(len(e.messages) for e in parsed.events
                                               if isinstance(e, HistoryChunk)),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1)})

    async def _process(self, item: webhook_logs.ClaimedLog) -> None:
        try:
            payload = json.loads(item.raw_body)
        except ValueError:
            payload = None
        event_type = event_type_of(payload)
        ctx = self._make_context()
        started = time.perf_counter()
        events: list = []
        try:
            events = parse_delivery(payload)
            async with self._sessions() as session, session.begin():
                for event in events:
                    await apply_event(session, ctx, event)
                await webhook_logs.mark_processed(session, item.id, fence=item.fence)
        except FencedOut:
            # This process was silent long enough for another to take the delivery over: its work here is
            # rolled back, and the new claimant's counts.
            log.warning("webhook log %s was taken over by another process; dropped here", item.id)
            return
        except Exception as exc:
            log.exception("webhook log %s failed (attempt %s)", item.id, item.attempts)
            self._metrics.webhooks_processed.labels(event_type, "error").inc()
            await self._record_failure(item, repr(exc))
            return
        for kind, n in ctx.stats.items():
            self._metrics.events_applied.labels(kind).inc(n)
        self._metrics.webhooks_processed.labels(event_type, "ok").inc()
        log.info("webhook processed", extra={
            "log_id": item.id, "event_type": event_type, "events": len(events),
            "wamids": ",".join(sorted({w for e in events if (w := getattr(e, "wamid", None))})) or "-",
            "channel": _phone_number_ids(events), "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        })

    async def _record_failure(self, item: webhook_logs.ClaimedLog, error: str) -> None:
        """Keep the failure on the log; while the database is unreachable, keep trying.

        Until it is recorded the delivery stays leased to this worker (60 s): giving up would leave it, and
        the rest of the batch, untouched for that long after a database outage of seconds.
        """
        wait = 0.5
        while True:
            try:
                await webhook_logs.record_failure(self._sessions, item.id, error, retry_delay(item.attempts),
                                                  fence=item.fence)
                return
            except Exception:
                log.warning("webhook log %s: cannot record the failure yet; retrying in %.1fs", item.id, wait,
                            exc_info=wait == 0.5)  # its traceback once; the loops say how the outage goes
                await asyncio.sleep(wait)
                wait = min(RECORD_RETRY_CAP, wait * 2)
