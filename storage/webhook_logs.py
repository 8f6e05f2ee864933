"""The webhook log: raw deliveries stored before the 200, then claimed and processed (an outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    DateTime,
    Integer,
    LargeBinary,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from bot.core.liveness import Fence
from storage.fencing import InHand, claim_values, held_by, settle
from storage.lanes import LANES, LIVE, Lane, lane_for
from storage.models import WebhookLog, as_utc, utcnow
from storage.turns import take_turn

LEASE = timedelta(seconds=60)
_LIVE_CLAIM_LOCK = 0x7762_6C69_7665  # pg_advisory_xact_lock key of round-robin live claims ("wblive")


@dataclass(frozen=True)
class ClaimedLog:
    id: int
    raw_body: bytes
    attempts: int
    lane: str = "live"
    fence: Fence | None = None  # None: claimed without an owner (a bare lease)
    event_type: str = ""  # as stored on the ack path ("": unknown, the worker reads it off the payload)


async def store(sessions: async_sessionmaker[AsyncSession], raw_body: bytes, event_type: str,
                source: str = "") -> int:
    """Commit one raw delivery; returns its id only once it is durable."""
    async with sessions() as session, session.begin():
        log = WebhookLog(raw_body=raw_body, event_type=event_type, lane=lane_for(event_type), source=source)
        session.add(log)
        await session.flush()
        return log.id


_TABLE: Table = WebhookLog.__table__  # type: ignore[assignment]
# One statement for every group size: SQLAlchemy renders the executemany as multi-row INSERTs
# ("insertmanyvalues") and, with sort_by_parameter_order, hands the ids back in the order of the rows.
_INSERT_MANY = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
# PostgreSQL: the group as arrays, unnested in their order (WITH ORDINALITY … ORDER BY) so that the ids come
# back in the order of the rows (an INSERT … SELECT returns its rows in the order it inserted them).
_INSERT_ARRAYS = text(
    "INSERT INTO webhook_logs (raw_body, event_type, lane, source, received_at, attempts) "
    "SELECT r.body, r.event_type, r.lane, r.source, :at, 0 "
    "FROM unnest(:bodies, :types, :lanes, :sources) WITH ORDINALITY AS r(body, event_type, lane, source, n) "
    "ORDER BY r.n RETURNING id"
).bindparams(bindparam("bodies", type_=ARRAY(LargeBinary)), bindparam("types", type_=ARRAY(String)),
             bindparam("lanes", type_=ARRAY(String)), bindparam("sources", type_=ARRAY(String)),
             bindparam("at", type_=DateTime(timezone=True)))


# The same statement on asyncpg's own connection, for the ingest writer's AUTOCOMMIT connections: SQLAlchemy's
# execution (context, cursor, result, greenlet hops) cost as much client CPU as the round trip itself.
_INSERT_ARRAYS_ASYNCPG = (
    "INSERT INTO webhook_logs (raw_body, event_type, lane, source, received_at, attempts) "
    "SELECT r.body, r.event_type, r.lane, r.source, $5::timestamptz, 0 "
    "FROM unnest($1::bytea[], $2::varchar[], $3::varchar[], $4::varchar[]) "
    "WITH ORDINALITY AS r(body, event_type, lane, source, n) ORDER BY r.n RETURNING id"
)


class ConnectionLost(Exception):
    """The connection went away during the insert (a database restart): the rows may or may not be stored."""


async def store_many(conn: AsyncConnection, rows: Sequence[tuple[bytes, str] | tuple[bytes, str, str]]
                     ) -> list[int]:
    """Insert (raw_body, event_type[, source]) rows in the caller's transaction; ids in the order of rows.

    On a PostgreSQL connection in AUTOCOMMIT the INSERT is its own transaction, sent by asyncpg directly;
    ConnectionLost when the connection dropped meanwhile (it is invalidated)."""
    received_at = utcnow()
    sources = [str(row[2]) if len(row) > 2 else "" for row in rows]
    if conn.dialect.name == "postgresql":
        # One statement with four array parameters: no per-row work in SQLAlchemy (3 µs a row, not 11),
        # and on an AUTOCOMMIT connection the INSERT is its own transaction: one round trip per group.
        bodies, types = [row[0] for row in rows], [row[1] for row in rows]
        lanes = [lane_for(t) for t in types]
        if _autocommit(conn):
            return await _store_on_driver(conn, bodies, types, lanes, sources, received_at)
        result = await conn.execute(_INSERT_ARRAYS, {
            "bodies": bodies, "types": types, "lanes": lanes, "sources": sources, "at": received_at})
        return list(result.scalars().all())
    params = [{"raw_body": row[0], "event_type": row[1], "lane": lane_for(row[1]), "source": source,
               "received_at": received_at, "attempts": 0} for row, source in zip(rows, sources, strict=True)]
    result = await conn.execute(_INSERT_MANY, params)
    return list(result.scalars().all())


def _autocommit(conn: AsyncConnection) -> bool:
    sync = conn.sync_connection
    return sync is not None and sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


async def _store_on_driver(conn: AsyncConnection, bodies: list[bytes], types: list[str], lanes: Sequence[str],
                           sources: list[str], received_at: datetime) -> list[int]:
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    try:
        records = await driver.fetch(_INSERT_ARRAYS_ASYNCPG, bodies, types, lanes, sources, received_at)
    except Exception as exc:
        # How SQLAlchemy's asyncpg dialect tells a disconnect: the connection is closed afterwards.
        if driver.is_closed():
            await conn.invalidate()
            raise ConnectionLost(f"{exc.__class__.__name__}: {exc}") from exc
        raise
    return [record[0] for record in records]


async def claim_batch(
    sessions: async_sessionmaker[AsyncSession], limit: int = 50, now: datetime | None = None,
    *, bulk_limit: int | None = None, lanes: Sequence[Lane] = LANES, owner: int | None = None,
    hand: InHand | None = None, fair: bool = False,
) -> list[ClaimedLog]:
    """Lease pending logs to this worker, the live lane first; other workers skip them until the lease ends.

    A claim holds one lane only: up to limit live deliveries when any wait, else up to bulk_limit (default
    limit) bulk ones. So a customer message waits for at most the one bulk batch already being applied.
    With an owner (this process's worker id) the claim is bound to its liveness: silent owners' leases are
    given back within seconds (storage/takeover.py), and the claim's fence token fences its settles.
    `fair`: live deliveries are taken round robin across their sources (workspaces): each one's oldest, then
    each one's second, …, so one business's storm never queues in front of another's customers.
    """
    now = now or utcnow()
    limits: dict[Lane, int] = {"live": limit, "bulk": bulk_limit or limit}
    async with sessions() as session, session.begin():
        postgres = session.bind.dialect.name == "postgresql"
        for lane in lanes:
            round_robin = fair and lane == LIVE
            if round_robin:
                # PostgreSQL allows no SKIP LOCKED beside a window function, so live claims there take turns
                # under a transaction-scoped advisory lock instead.
                await take_turn(session, _LIVE_CLAIM_LOCK)
            # One statement per lane: pick, lease and read the rows (a worker's claim is one round trip).
            rows = (await session.execute(_claim_statement(lane, round_robin, postgres, owner is not None), {
                "now": now, "until": now + LEASE, "limit": limits[lane], "owner": owner})).tuples().all()
            if rows and owner is not None and hand is not None:
                # In hand before the commit (see InHand); dropped again if the commit fails, answer lost or not.
                taken = [(int(r[0]), int(r[4])) for r in rows]
                hand.take(taken)
                try:
                    await session.commit()
                except BaseException:
                    hand.drop(taken)
                    raise
            if rows:
                return sorted((ClaimedLog(log_id, raw_body, attempts, row_lane,
                                          Fence(owner, fence) if owner is not None else None, event_type)
                               for log_id, raw_body, attempts, row_lane, fence, event_type in rows),
                              key=lambda c: c.id)
    return []


# Claim statements, built once per (lane, round robin, dialect is PostgreSQL, with an owner): the time, the lease's
# end, the limit and the owner are parameters, so a claim neither builds a statement nor generates its cache key.
_CLAIMS: dict[tuple[str, bool, bool, bool], Any] = {}


def _claim_statement(lane: Lane, round_robin: bool, postgres: bool, owned: bool) -> Any:
    key = (lane, round_robin, postgres, owned)
    statement = _CLAIMS.get(key)
    if statement is None:
        statement = _CLAIMS[key] = _build_claim(lane, round_robin, postgres, owned)
    return statement


def _build_claim(lane: Lane, round_robin: bool, postgres: bool, owned: bool) -> Any:
    table = _TABLE
    now = bindparam("now", type_=table.c.claimed_until.type)
    claimable = and_(
        table.c.processed_at.is_(None),
        or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
    )
    limit = bindparam("limit", type_=Integer)
    # On PostgreSQL the picked rows are found again by their tuple address (a TID scan, whatever the statistics):
    # joined back by id, the prepared statement's generic plan, made from statistics of a table that was empty
    # when last analysed, walked every pending row of the lane against the picked ids (1.5 million comparisons,
    # 300-900 ms a claim with a 10,000-delivery backlog, which starved the intake's commits). A row locked FOR
    # UPDATE keeps its address until this statement updates it, and FOR UPDATE rechecks `claimable` on the rows
    # it locks.
    row: ColumnElement[Any] = literal_column(f"{table.name}.ctid") if postgres else table.c.id
    pick: Select[tuple[Any]]
    if round_robin:
        pick = _round_robin(row, claimable, limit)
    else:
        pick = select(row.label("address")).where(table.c.lane == lane, claimable).order_by(table.c.id).limit(limit)
        if postgres:
            pick = pick.with_for_update(skip_locked=True)
    # Materialised: as a plain `IN (subquery)` PostgreSQL may run the LIMIT … SKIP LOCKED pick more
    # than once and lease more rows than asked for.
    picked = pick.cte("picked").prefix_with("MATERIALIZED")
    chosen: ColumnElement[bool]
    if postgres and round_robin:
        # The round robin's pick (a window over the lane) locks nothing: its rows are locked by address, and a
        # row claimed or processed since the pick comes back from the lock as its newest version, checked here
        # on the lock's own output (checked in the UPDATE, the condition let the planner scan the lane again).
        locked = (select(row.label("address"), table.c.processed_at, table.c.claimed_until)
                  .where(row == any_(func.array(select(picked.c.address).scalar_subquery())))
                  .with_for_update(skip_locked=True).cte("locked").prefix_with("MATERIALIZED"))
        still = select(locked.c.address).where(
            locked.c.processed_at.is_(None), or_(locked.c.claimed_until.is_(None), locked.c.claimed_until < now))
        chosen = row == any_(func.array(still.scalar_subquery()))
    elif postgres:
        chosen = row == any_(func.array(select(picked.c.address).scalar_subquery()))
    else:
        chosen = and_(table.c.id == picked.c.address, claimable)
    return (update(table)
            .where(chosen)
            .values(claimed_until=bindparam("until", type_=table.c.claimed_until.type),
                    attempts=table.c.attempts + 1,
                    **(claim_values(table, bindparam("owner", type_=Integer)) if owned else {"owner_id": None}))
            .returning(table.c.id, table.c.raw_body, table.c.attempts, table.c.lane, table.c.fence,
                       table.c.event_type))


def _round_robin(row: ColumnElement[Any], claimable: ColumnElement[bool],
                 limit: BindParameter[int]) -> Select[tuple[Any]]:
    """The live lane's pick, round robin across sources: each one's oldest, then each one's second, …"""
    turn = func.row_number().over(partition_by=_TABLE.c.source, order_by=_TABLE.c.id).label("turn")
    ranked = select(row.label("address"), _TABLE.c.id, turn).where(_TABLE.c.lane == LIVE, claimable).subquery()
    return select(ranked.c.address).order_by(ranked.c.turn, ranked.c.id).limit(limit)


def _held(log_id: int, fence: Fence | None) -> list[ColumnElement[bool]]:
    return [_TABLE.c.id == log_id] + ([held_by(_TABLE, fence)] if fence is not None else [])


async def mark_processed(session: AsyncSession, log_id: int, error: str | None = None,
                         fence: Fence | None = None) -> None:
    """Mark a log done inside the caller's transaction, so its effects and the mark commit together.

    With a fence, raises `FencedOut` (rolling all of it back) when another process took the log over."""
    await settle(session, update(_TABLE).where(*_held(log_id, fence))
                 .values(processed_at=utcnow(), claimed_until=None, error=error, owner_id=None),
                 expected=1 if fence is not None else 0)


async def mark_processed_many(session: AsyncSession, log_ids: list[int],
                              fences: Sequence[Fence | None] | None = None) -> None:
    """Mark a batch's applied logs done in one statement, inside the batch's transaction; with fences, raise
    `FencedOut` (the whole batch rolls back) unless this process still holds every one of them."""
    if not log_ids:
        return
    held = [(i, f.owner, f.token) for i, f in zip(log_ids, fences or (), strict=False) if f is not None]
    if held and len(held) == len(log_ids) and session.bind.dialect.name == "postgresql":
        # The claims as three arrays: one statement text whatever the batch's size, no per-id parameters.
        await settle(session, _PG_MARK_HELD, expected=len(held), params={
            "ids": [h[0] for h in held], "owners": [h[1] for h in held], "fences": [h[2] for h in held],
            "now": utcnow()})
        return
    where = (tuple_(_TABLE.c.id, _TABLE.c.owner_id, _TABLE.c.fence).in_(held) if held
             else _TABLE.c.id.in_(log_ids))
    await settle(session, update(_TABLE).where(where)
                 .values(processed_at=utcnow(), claimed_until=None, error=None, owner_id=None),
                 expected=len(held))


_PG_MARK_HELD = text(
    "UPDATE webhook_logs AS w SET processed_at = :now, claimed_until = NULL, error = NULL, owner_id = NULL "
    "FROM unnest(:ids, :owners, :fences) AS h(id, owner_id, fence) "
    "WHERE w.id = h.id AND w.owner_id = h.owner_id AND w.fence = h.fence"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)), bindparam("owners", type_=ARRAY(Integer)),
             bindparam("fences", type_=ARRAY(Integer)), bindparam("now", type_=DateTime(timezone=True)))


async def keep_failure(session: AsyncSession, log_id: int, error: str, retry_in: timedelta,
                       fence: Fence | None = None) -> None:
    """record_failure inside the caller's transaction (a batch keeps its failed deliveries' errors)."""
    await session.execute(
        update(_TABLE).where(*_held(log_id, fence))
        .values(error=error[:4000], claimed_until=utcnow() + retry_in, owner_id=None)
    )


async def record_failure(sessions: async_sessionmaker[AsyncSession], log_id: int, error: str,
                         retry_in: timedelta, fence: Fence | None = None) -> None:
    """Keep a failed log pending, with its error, to be tried again after retry_in (unless it was taken
    over meanwhile: then its new claimant decides)."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(_TABLE).where(*_held(log_id, fence))
            .values(error=error[:4000], claimed_until=utcnow() + retry_in, owner_id=None)
        )


async def pending_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(WebhookLog).where(WebhookLog.processed_at.is_(None))
        ) or 0)


async def oldest_pending_age(sessions: async_sessionmaker[AsyncSession]) -> float:
    """Seconds since the oldest unprocessed delivery arrived (0 when none): the processing lag."""
    async with sessions() as session:
        # Ids grow with arrival: the first pending id is read off the pending index, where min(received_at)
        # would scan every pending row after each batch (50,000 of them in a backlog).
        oldest = await session.scalar(
            select(WebhookLog.received_at).where(WebhookLog.processed_at.is_(None))
            .order_by(WebhookLog.id).limit(1)
        )
    if oldest is None:
        return 0.0
    return max(0.0, (utcnow() - as_utc(oldest)).total_seconds())
