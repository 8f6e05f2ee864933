"""Prune old rows in the background, off the hot path: one small batch per transaction, then a pause.

Log tables age by `retention.days`; customers' messages, media references and erasure records by
`retention.messages_days`, `media_days` and `audit_days` when set. The pass also carries on erasures a stop
left unfinished (bot/ops/privacy.py), so a request is completed without anyone running it again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import RetentionSettings
from bot.core.loop_health import Backoff
from bot.core.loops import forever, monitor_of
from bot.core.metrics import Metrics
from storage import retention
from storage.models import utcnow

log = logging.getLogger(__name__)

BATCH_PAUSE = 0.05  # seconds between two delete batches: a long prune leaves room for the hot path


class RetentionWorker:
    """Every interval, delete rows older than their retention period, table by table, in batches."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: RetentionSettings, *,
                 metrics: Metrics | None = None, resume: Callable[[], Awaitable[Any]] | None = None) -> None:
        self._sessions = sessions
        self._settings = settings
        self._metrics = metrics
        self._resume = resume

    async def prune_once(self) -> dict[str, int]:
        """One pass over every table with a retention period; returns rows deleted (or cleared) per table."""
        now, s = utcnow(), self._settings
        deleted: dict[str, int] = {}
        for table in retention.PRUNABLE + retention.PERSONAL:
            days = getattr(s, table.days_key)
            if days is not None:
                deleted[table.name] = await retention.prune_table(self._sessions, table, now - timedelta(days=days),
                                                                  s.batch_size, BATCH_PAUSE, owe=s.redact_slack)
        if s.media_days is not None:
            deleted["media"] = await retention.strip_media(self._sessions, now - timedelta(days=s.media_days),
                                                           s.batch_size, BATCH_PAUSE, owe=s.redact_slack)
        if self._metrics is not None:
            for name, n in deleted.items():
                self._metrics.retention_rows.labels(name).inc(n)
        return deleted

    async def run(self) -> None:
        interval = self._settings.interval_seconds
        # A failed pass is tried again at the next interval (pruning is heavy; nothing waits for it).
        await forever(self._pass, interval, doing="retention pass", backoff=Backoff(first=interval, cap=interval),
                      monitor=monitor_of(None, "retention", log, reported=False))

    async def _pass(self) -> None:
        deleted = await self.prune_once()
        if any(deleted.values()):
            log.info("retention pruned old rows", extra={"deleted": deleted})
        if self._resume is not None:
            await self._resume()
