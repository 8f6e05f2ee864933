"""Prune old log rows in the background, off the hot path: one small batch per transaction, then a pause."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import RetentionSettings
from storage import retention
from storage.models import utcnow

log = logging.getLogger(__name__)

BATCH_PAUSE = 0.05  # seconds between two delete batches: a long prune leaves room for the hot path


class RetentionWorker:
    """Every interval, delete finished rows older than the retention period from each log table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: RetentionSettings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def prune_once(self) -> dict[str, int]:
        """One pass over every log table; returns rows deleted per table."""
        cutoff = utcnow() - timedelta(days=self._settings.days)
        deleted: dict[str, int] = {}
        for table in retention.PRUNABLE:
            deleted[table.name] = await retention.prune_table(self._sessions, table, cutoff,
                                                              self._settings.batch_size, BATCH_PAUSE)
        return deleted

    async def run(self) -> None:
        while True:
            try:
                deleted = await self.prune_once()
                if any(deleted.values()):
                    log.info("retention pruned old rows", extra={"deleted": deleted})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention pass failed; trying again at the next interval")
            await asyncio.sleep(self._settings.interval_seconds)
