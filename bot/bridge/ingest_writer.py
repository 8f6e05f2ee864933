"""Group commit of webhook deliveries: one writer per process commits waiting deliveries as one INSERT.

A request waits on its future until the group holding its row has committed, so every 200 still follows
a durable row; a group that cannot be committed fails every request in it (`IngestUnavailable`).

Several groups may be in flight at once, each on a connection of its own (`connections`, 4 on PostgreSQL):
while one group waits for its commit the next one forms and goes, so an ack waits for about one commit
rather than for the commits queued in front of it. SQLite has one writer, so one group at a time there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.bridge.intake_first import IntakeFirst
from bot.core.loop_health import LoopHealth
from bot.core.loops import WEBHOOKS, WakeHub
from storage import webhook_logs
from storage.write_gate import WriteGate

log = logging.getLogger(__name__)

# A group's round trip and commit cost about the same whatever its size: at 3,500 deliveries/s, 5 ms instead of
# 2 ms took serve's CPU per delivery from 158-168 to 141-152 µs and PostgreSQL's from 33-35 to 24-26 µs. But an ack
# waits for its group, and at 4,000/s over Meta's (the loader's) 64 connections, 10-25 ms per ack in the server is
# 3,800 acks/s at most: the acks queue. 2 ms keeps them under that in most floods (bench.ingest, docs/benchmarks.md
# section 0.9.0: ack p99 under 100 ms in most runs, 0.3-1.5 s at 5 ms); 1 ms made the mirror's groups, and so its
# batches, smaller (0.4 -> 1.1 statements per message in bench.mirror_latency's backlog step).
DEFAULT_LINGER = 0.002
DEFAULT_MAX_BATCH = 500
DEFAULT_CONNECTIONS = 4  # groups in flight at once on PostgreSQL


class IngestUnavailable(Exception):
    """The delivery was not stored (database refused, or the writer stopped): answer 5xx, Meta retries."""


@dataclass
class _Delivery:
    raw_body: bytes
    event_type: str
    source: str
    future: asyncio.Future[int] = field(repr=False)
    at: float  # loop time of its arrival


class IngestWriter:
    """Collects deliveries from request handlers and commits them in groups, several groups in flight."""

    def __init__(self, engine: AsyncEngine, *, linger: float = DEFAULT_LINGER,
                 max_batch: int = DEFAULT_MAX_BATCH, wakes: WakeHub | None = None,
                 health: LoopHealth | None = None, gate: WriteGate | None = None,
                 connections: int | None = None, statements: Counter | None = None,
                 intake: IntakeFirst | None = None) -> None:
        self._engine = engine
        self._intake = intake  # told of each stored group, when this process's worker steps aside for acks
        # On PostgreSQL the INSERT bypasses SQLAlchemy's events: counted here (wabridge_db_statements).
        self._statements = statements
        # Long jobs (a history import) let waiting deliveries go first between their transactions.
        self._gate = gate or WriteGate()
        self._health = (health or LoopHealth()).loop("webhook intake", log)
        self._linger = linger
        self._max_batch = max_batch
        self._wakes = wakes  # the webhook workers of this process are woken after each group
        self._postgres = engine.dialect.name == "postgresql"
        self._slots = max(1, connections if connections is not None
                          else (DEFAULT_CONNECTIONS if self._postgres else 1))
        self._waiting: list[_Delivery] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._idle: list[AsyncConnection] = []  # parked between groups, one per slot at most
        self._busy: set[AsyncConnection] = set()
        self._closed = False
        self.batches = 0  # groups committed, for tests and metrics
        self.most_in_flight = 0  # the most groups seen in flight at once, for tests

    async def submit(self, raw_body: bytes, event_type: str, source: str = "") -> int:
        """Queue one delivery (of `source`, see bot.bridge.webhook_sources) and return its webhook_logs id once
        committed; raises IngestUnavailable."""
        if self._closed:
            raise IngestUnavailable("ingest writer stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._waiting.append(_Delivery(raw_body, event_type, source, future, loop.time()))
        self._arrived.set()
        if len(self._waiting) >= self._max_batch:
            self._full.set()
        return await future

    async def run(self) -> None:
        """Commit groups until cancelled; on the way out every request still waiting gets IngestUnavailable."""
        slots = asyncio.Semaphore(self._slots)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._arrived.wait()
                # Waiting for a slot is lingering enough: the group formed meanwhile.
                waited = slots.locked()
                await slots.acquire()
                group = await self._next_group(linger=not waited)
                if not group:
                    slots.release()
                    continue
                task = asyncio.create_task(self._commit(group), name="ingest-group")
                in_flight.add(task)
                self.most_in_flight = max(self.most_in_flight, len(in_flight))

                def done(t: asyncio.Task[None]) -> None:
                    in_flight.discard(t)
                    slots.release()

                task.add_done_callback(done)
        finally:
            self._closed = True
            for task in list(in_flight):
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            self._fail(self._waiting, "ingest writer stopped")
            self._waiting = []
            await self._release_all()

    async def _next_group(self, *, linger: bool = True) -> list[_Delivery]:
        if linger and self._linger > 0 and len(self._waiting) < self._max_batch:
            # Give requests already on their way a moment to join this group.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._linger):
                    await self._full.wait()
        group = self._waiting[:self._max_batch]
        del self._waiting[:self._max_batch]
        if len(self._waiting) < self._max_batch:
            self._full.clear()
        if not self._waiting:
            self._arrived.clear()
        return group

    async def _commit(self, group: list[_Delivery]) -> None:
        rows = [(d.raw_body, d.event_type, d.source) for d in group]
        try:
            async with self._gate.urgent():
                ids = await self._insert(rows)
        except asyncio.CancelledError:
            # The commit may or may not have happened: no 200 for rows not known to be stored.
            self._fail(group, "ingest writer stopped during a commit")
            raise
        except Exception as exc:
            # Each request gets its 503; the log gets a traceback now and then, not one per group.
            self._health.failed(exc, f"storing a group of {len(group)} deliveries (answered 503)")
            self._fail(group, f"database refused the group: {exc.__class__.__name__}")
            return
        self._health.ok()
        self.batches += 1
        if self._intake is not None:
            self._intake.stored(len(group), asyncio.get_running_loop().time() - group[0].at)
        for delivery, log_id in zip(group, ids, strict=True):
            if not delivery.future.done():
                delivery.future.set_result(log_id)
        if self._wakes is not None:
            self._wakes.wake(WEBHOOKS)

    async def _insert(self, rows: list[tuple[bytes, str, str]]) -> list[int]:
        """Insert on a connection of the writer's own; a dropped connection is replaced and the group tried
        once more."""
        # Parked connections mean no pool checkout (and no pre-ping) per group; one lost meanwhile (database
        # restarted) shows up here as a disconnect and is retried on a fresh one. A disconnect during the
        # commit can leave the rows stored and the retry stores them again: duplicates are already expected
        # (Meta redelivers) and processing ignores a wamid it has seen.
        for attempt in (1, 2):
            conn = None
            try:
                conn = await self._connection(fresh=attempt > 1)
                if self._postgres:
                    # AUTOCOMMIT: the INSERT is its own transaction, sent by asyncpg directly.
                    if self._statements is not None:
                        self._statements.inc()
                    ids = await webhook_logs.store_many(conn, rows)
                else:
                    async with conn.begin():
                        ids = await webhook_logs.store_many(conn, rows)
                self._park(conn)
                return ids
            except (DBAPIError, webhook_logs.ConnectionLost) as exc:
                await self._discard(conn)
                lost = isinstance(exc, webhook_logs.ConnectionLost) or exc.connection_invalidated
                if attempt == 1 and lost:
                    log.warning("webhook writer lost its database connection; retrying the group once")
                    # A restart took the parked ones too: drop them rather than fail a group on each.
                    await self._drop_idle()
                    continue
                raise
            except BaseException:
                await self._discard(conn)
                raise
        raise AssertionError("unreachable")

    async def _connection(self, *, fresh: bool = False) -> AsyncConnection:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed and not conn.invalidated:
                self._busy.add(conn)
                return conn
            with contextlib.suppress(Exception):
                await conn.close()
        conn = await self._engine.connect()
        self._busy.add(conn)
        if self._postgres:
            # Each group's INSERT is its own transaction: no BEGIN and COMMIT round trips around it.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _park(self, conn: AsyncConnection) -> None:
        self._busy.discard(conn)
        self._idle.append(conn)

    @property
    def parked_connections(self) -> int:
        """Connections this writer keeps checked out between groups: not a statement in progress."""
        return sum(1 for conn in self._idle if not conn.closed and not conn.in_transaction())

    async def _discard(self, conn: AsyncConnection | None) -> None:
        if conn is None:
            return
        self._busy.discard(conn)
        with contextlib.suppress(Exception):
            await conn.close()

    async def _drop_idle(self) -> None:
        conns, self._idle = self._idle, []
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _release_all(self) -> None:
        conns = [*self._idle, *self._busy]
        self._idle, self._busy = [], set()
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()

    @staticmethod
    def _fail(group: list[_Delivery], reason: str) -> None:
        for delivery in group:
            if not delivery.future.done():
                delivery.future.set_exception(IngestUnavailable(reason))
