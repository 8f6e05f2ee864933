"""Group commit of webhook deliveries: one writer per process commits waiting deliveries as one INSERT.

A request waits on its future until the group holding its row has committed, so every 200 still follows
a durable row; a group that cannot be committed fails every request in it (`IngestUnavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.core.loop_health import LoopHealth
from storage import webhook_logs
from storage.write_gate import WriteGate

log = logging.getLogger(__name__)

DEFAULT_LINGER = 0.002
DEFAULT_MAX_BATCH = 100


class IngestUnavailable(Exception):
    """The delivery was not stored (database refused, or the writer stopped): answer 5xx, Meta retries."""


@dataclass
class _Delivery:
    raw_body: bytes
    event_type: str
    future: asyncio.Future[int] = field(repr=False)


class IngestWriter:
    """Collects deliveries from request handlers and commits them in groups from a single task."""

    def __init__(self, engine: AsyncEngine, *, linger: float = DEFAULT_LINGER,
                 max_batch: int = DEFAULT_MAX_BATCH, on_stored: Callable[[], None] | None = None,
                 health: LoopHealth | None = None, gate: WriteGate | None = None) -> None:
        self._engine = engine
        # Long jobs (a history import) let waiting deliveries go first between their transactions.
        self._gate = gate or WriteGate()
        self._health = (health or LoopHealth()).loop("webhook intake", log)
        self._linger = linger
        self._max_batch = max_batch
        self._on_stored = on_stored
        self._waiting: list[_Delivery] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._conn: AsyncConnection | None = None
        self._closed = False
        self.batches = 0  # groups committed, for tests and metrics

    async def submit(self, raw_body: bytes, event_type: str) -> int:
        """Queue one delivery and return its webhook_logs id once committed; raises IngestUnavailable."""
        if self._closed:
            raise IngestUnavailable("ingest writer stopped")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Delivery(raw_body, event_type, future))
        self._arrived.set()
        if len(self._waiting) >= self._max_batch:
            self._full.set()
        return await future

    async def run(self) -> None:
        """Commit groups until cancelled; on the way out every request still waiting gets IngestUnavailable."""
        try:
            while True:
                await self._arrived.wait()
                async with self._gate.urgent():
                    await self._next_group()
        finally:
            self._closed = True
            self._fail(self._waiting, "ingest writer stopped")
            self._waiting = []
            await self._release_connection()

    async def _next_group(self) -> None:
        if self._linger > 0 and len(self._waiting) < self._max_batch:
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
        await self._commit(group)

    async def _commit(self, group: list[_Delivery]) -> None:
        rows = [(d.raw_body, d.event_type) for d in group]
        try:
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
        for delivery, log_id in zip(group, ids, strict=True):
            if not delivery.future.done():
                delivery.future.set_result(log_id)
        if self._on_stored is not None:
            self._on_stored()

    async def _insert(self, rows: list[tuple[bytes, str]]) -> list[int]:
        """Insert on the writer's own connection; a dropped connection is replaced and the group tried once more."""
        # Holding one connection means no pool checkout (and no pre-ping) per group; a connection lost
        # meanwhile (database restarted) shows up here as a disconnect and is retried on a fresh one.
        # A disconnect during COMMIT can leave the rows stored and the retry stores them again: duplicates
        # are already expected (Meta redelivers) and processing ignores a wamid it has seen.
        for attempt in (1, 2):
            try:
                conn = await self._connection()
                async with conn.begin():
                    return await webhook_logs.store_many(conn, rows)
            except DBAPIError as exc:
                await self._release_connection()
                if attempt == 1 and exc.connection_invalidated:
                    log.warning("webhook writer lost its database connection; retrying the group once")
                    continue
                raise
            except BaseException:
                await self._release_connection()
                raise
        raise AssertionError("unreachable")

    async def _connection(self) -> AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self._engine.connect()
        return self._conn

    @property
    def parked_connections(self) -> int:
        """Connections this writer keeps checked out between groups (1 or 0): not a statement in progress."""
        conn = self._conn
        return 1 if conn is not None and not conn.closed and not conn.in_transaction() else 0

    async def _release_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    @staticmethod
    def _fail(group: list[_Delivery], reason: str) -> None:
        for delivery in group:
            if not delivery.future.done():
                delivery.future.set_exception(IngestUnavailable(reason))
