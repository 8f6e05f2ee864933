"""Process stored Meta deliveries: claim from webhook_logs, parse, apply, mark done, all in one commit."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.bridge.meta_events import EventContext, apply_event
from bot.core.metrics import Metrics
from bot.meta.parser import event_type_of, parse_delivery
from storage import webhook_logs
from storage.fencing import FencedOut

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 3600.0
RECORD_RETRY_CAP = 5.0  # seconds between attempts to record a failure while the database is away


def retry_delay(attempts: int) -> timedelta:
    """Back off 2, 4, 8 … seconds, at most an hour: a poison delivery never blocks the rest."""
    return timedelta(seconds=min(MAX_RETRY_DELAY, 2.0 ** max(1, attempts)))


def _phone_number_ids(events: list) -> str:
    ids = {e.envelope.phone_number_id for e in events if getattr(e, "envelope", None) is not None}
    return ",".join(sorted(i for i in ids if i)) or "-"


class WebhookWorker:
    """One per process; several processes may run against one database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], make_context: Callable[[], EventContext],
                 metrics: Metrics, *, batch: int = 50, poll_interval: float = 1.0,
                 owner: Callable[[], int | None] | None = None) -> None:
        self._sessions = sessions
        # This process's worker id (its heartbeat row): claims are then bound to its liveness and fenced.
        self._owner = owner or (lambda: None)
        self._make_context = make_context
        self._metrics = metrics
        self._batch = batch
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    def on_processed(self, callback: Callable[[], None]) -> None:
        """Call callback after each committed batch (e.g. to wake the Slack outbox at once)."""
        self._listeners.append(callback)

    def wake(self) -> None:
        """Called after a delivery is stored, so processing starts without waiting for the poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                done = await self.process_available()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook processing loop failed; retrying")
                done = 0
            if done == 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def process_available(self) -> int:
        """Claim and process one batch; returns how many deliveries it handled."""
        claimed = await webhook_logs.claim_batch(self._sessions, self._batch, owner=self._owner())
        for item in claimed:
            await self._process(item)
        self._metrics.processing_lag.set(await webhook_logs.oldest_pending_age(self._sessions))
        if claimed:
            for callback in self._listeners:
                callback()
        return len(claimed)

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
                            exc_info=True)
                await asyncio.sleep(wait)
                wait = min(RECORD_RETRY_CAP, wait * 2)
