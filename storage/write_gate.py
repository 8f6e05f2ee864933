"""Between a long job's transactions, other writers go first: SQLite has one writer.

A writer that finds SQLite locked waits in SQLite's busy handler, which retries at most every 100 ms; a job
committing transaction after transaction takes the lock back before that retry comes, and a webhook waits out
its 30 s busy timeout (503), a heartbeat its 5 s (the process is taken for dead). So a job calls `between()`
after each transaction: webhooks being stored in this process (`urgent()`) finish first, and on SQLite the job
pauses one busy-handler period, so that a writer waiting anywhere gets the lock. On PostgreSQL it costs a check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

SQLITE_PAUSE = 0.1  # seconds: SQLite's busy handler retries at least this often


class WriteGate:
    """Counts urgent writes in progress; long jobs wait for none (and pause on SQLite) between transactions."""

    def __init__(self, pause: float = 0.0) -> None:
        self._pause = pause
        self._urgent = 0
        self._clear = asyncio.Event()
        self._clear.set()

    @contextlib.asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        """Around an urgent write: jobs between transactions wait until it is done."""
        self._urgent += 1
        self._clear.clear()
        try:
            yield
        finally:
            self._urgent -= 1
            if self._urgent == 0:
                self._clear.set()

    async def between(self) -> None:
        """After one of a long job's transactions, before its next."""
        await asyncio.sleep(self._pause)  # also lets an urgent write just submitted mark itself
        await self._clear.wait()
