"""The `workers` table: one row per running process, its heartbeat, and who is silent.

The decision (`bot.core.liveness.is_silent`) is pure; this module only reads and writes rows. A process
registers once at start (its row id is its worker id, never reused), beats every second and marks itself
stopped on a clean exit, so its work is taken over at once rather than after the silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.liveness import HEARTBEAT_INTERVAL, SILENCE, is_silent, still_trusted
from bot.core.loop_health import LoopHealth
from bot.core.loops import forever
from storage.models import Worker, utcnow
from storage.write_gate import WriteGate

log = logging.getLogger(__name__)


async def register(sessions: async_sessionmaker[AsyncSession], name: str, *, now: datetime | None = None) -> int:
    """A new worker row for this process; returns its id."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        row = Worker(name=name[:100], host=socket.gethostname()[:255], pid=os.getpid(), started_at=now,
                     heartbeat_at=now)
        session.add(row)
        await session.flush()
        return row.id


async def beat(sessions: async_sessionmaker[AsyncSession], worker_id: int, *, now: datetime | None = None) -> bool:
    """Record a heartbeat; False when the row says this worker stopped (it must not claim more work)."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(Worker).where(Worker.id == worker_id, Worker.stopped_at.is_(None))
            .values(heartbeat_at=now or utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_stopped(sessions: async_sessionmaker[AsyncSession], worker_id: int) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(Worker).where(Worker.id == worker_id).values(stopped_at=utcnow()))


async def silent_workers(session: AsyncSession, *, now: datetime | None = None,
                         silence: timedelta = SILENCE, among: set[int] | None = None) -> set[int]:
    """Ids of workers whose work may be taken over (optionally only among the given owners)."""
    now = now or utcnow()
    query = select(Worker.id, Worker.heartbeat_at, Worker.stopped_at)
    if among is not None:
        if not among:
            return set()
        query = query.where(Worker.id.in_(among))
    else:
        # Without a list, only rows that could still be holding work: those not long gone.
        query = query.where(Worker.heartbeat_at > now - timedelta(days=7))
    rows = (await session.execute(query)).all()
    silent = {r.id for r in rows if is_silent(r.heartbeat_at, r.stopped_at, now, silence)}
    if among is not None:
        silent |= among - {r.id for r in rows}  # an owner with no row at all is gone too
    return silent


class Heartbeat:
    """Registers this process and keeps its heartbeat fresh; start with `run()` as a background task."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], name: str, *,
                 interval: float = HEARTBEAT_INTERVAL, silence: timedelta = SILENCE,
                 health: LoopHealth | None = None, gate: WriteGate | None = None) -> None:
        self._sessions = sessions
        self._health = (health or LoopHealth()).loop("heartbeat", log)
        self._gate = gate or WriteGate()  # a beat goes before a long job's next transaction (SQLite: one writer)
        self._name = name
        self._interval = interval
        self._silence = silence
        self.worker_id: int | None = None
        self._last_ok: datetime | None = None
        self._registered = asyncio.Event()
        # Bumped whenever a heartbeat follows a gap long enough for others to have judged this process silent
        # (a pause, an overloaded host, a database outage): work claimed before it may belong to another now.
        self._epoch = 0

    async def start(self) -> int:
        """Register (once) and return the worker id."""
        if self.worker_id is None:
            self.worker_id = await register(self._sessions, self._name)
            self._last_ok = utcnow()
            self._registered.set()
        return self.worker_id

    async def ready(self) -> int:
        await self._registered.wait()
        assert self.worker_id is not None
        return self.worker_id

    @property
    def trusted(self) -> bool:
        """False once this process has gone long enough without a heartbeat that others may take over."""
        return still_trusted(self._last_ok, utcnow(), self._silence)

    def guard(self) -> Callable[[], bool]:
        """Taken when work is claimed: stays true while nobody can have taken that work over. Checked just
        before an effect no fence can undo (a Slack post, a WhatsApp send)."""
        epoch = self._epoch
        return lambda: self._epoch == epoch and self.trusted

    async def _beat(self) -> None:
        assert self.worker_id is not None
        async with self._gate.urgent():
            now = utcnow()
            alive = await beat(self._sessions, self.worker_id, now=now)
        if alive:
            if self._last_ok is None or now - self._last_ok >= self._silence / 2:
                self._epoch += 1
            self._last_ok = now
        else:
            log.error("worker %s was marked stopped; no longer trusted with work", self.worker_id)
            self._last_ok = None

    async def run(self) -> None:
        await self.start()
        assert self.worker_id is not None
        try:
            await asyncio.sleep(self._interval)  # registering was the first beat
            await forever(self._beat, self._interval, monitor=self._health,
                          doing=f"heartbeat of worker {self.worker_id}")
        finally:
            # Others may take this process's work at once; bounded, so a database that is gone cannot hold
            # the shutdown (the silence then says the same a few seconds later).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(mark_stopped(self._sessions, self.worker_id)), timeout=5)
