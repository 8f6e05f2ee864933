"""The `slack_outbox` table as a queue: claim thread heads with a lease, hand back, record progress, settle.

Per `thread_key` only the head item (earliest `order_ts`, then id) is ever in flight, so a thread's posts
appear in WhatsApp timestamp order. Claims are serialized per database (PostgreSQL advisory lock, SQLite's
write lock) so that two processes can never both put an item of one thread in flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Select, Table, and_, bindparam, case, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.liveness import Fence
from bot.core.workspace import DEFAULT_WORKSPACE
from storage.deferred import Write, run_writes
from storage.fencing import FencedOut, InHand, claim_values, held_by, settle
from storage.models import Campaign, CampaignRun, Conversation, SlackOutbox, utcnow
from storage.outbox_kinds import run_of_thread
from storage.turns import take_turn

log = logging.getLogger(__name__)

_TABLE: Table = SlackOutbox.__table__  # type: ignore[assignment]
_CLAIM_LOCK_KEY = 0x5AB0_0B0C  # pg_advisory_xact_lock key serializing outbox claims
_SETTLE_RETRY_CAP = 5.0  # seconds between attempts to record an outcome while the database is away
_SETTLE_BATCH = 100  # outcomes written in one transaction at most
_SETTLE_WRITERS = 2  # batches of outcomes written at once (each its own transaction and connection)
_OUTCOME_COLUMNS = ("done_at", "claimed_until", "next_attempt_at", "result", "last_error", "owner_id")
# Every outcome sets the same columns, so a batch's rows go as one executemany of this template.
_SETTLE_ROW = update(_TABLE).where(_TABLE.c.id == bindparam("item_id")).values(
    {name: bindparam(f"new_{name}", type_=_TABLE.c[name].type) for name in _OUTCOME_COLUMNS})


@dataclass
class OutboxItem:
    """One claimed row, as a handler sees it."""

    id: int
    thread_key: str
    kind: str
    payload: dict[str, Any]
    conversation_id: int | None
    attempts: int  # this attempt included
    result: dict[str, Any]  # progress kept across attempts (posted parts, pending uploads)
    uncertain: bool  # a previous attempt may have reached Slack without us knowing
    claimed_until: datetime | None = None  # this claim's lease, which names it when handed back unstarted
    fence: Fence | None = None  # owner and token of this claim, when bound to a process's liveness
    guard: Callable[[], bool] | None = None  # false once this process may have lost the claim (Heartbeat.guard)
    # The Slack workspace the item is delivered to: its conversation's, else its own (alerts, progress, …).
    slack_team: str = DEFAULT_WORKSPACE
    # Rows read for the item with its claim's batch (bot.bridge.mirror.prefetch_messages), used if it starts soon.
    cache: dict[str, Any] = field(default_factory=dict, repr=False)


def _held(item: OutboxItem) -> list[Any]:
    """The condition that this claim still holds the row (none for a claim made without an owner)."""
    return [held_by(_TABLE, item.fence)] if item.fence is not None else []


async def _item_teams(session: AsyncSession, rows: Sequence[Any]) -> dict[int, str]:
    """Each claimed item's workspace, where it is not the item's own: a conversation's items go to the
    conversation's workspace, a campaign run's (progress, unknown notices; a run's thread) to the
    campaign's."""
    conv_ids = sorted({r.conversation_id for r in rows if r.conversation_id is not None})
    run_of = {r.id: run for r in rows if r.conversation_id is None and (run := run_of_thread(r.thread_key)) is not None}
    by_conv: dict[int, str] = dict((await session.execute(
        select(Conversation.id, Conversation.slack_team).where(Conversation.id.in_(conv_ids)))).tuples().all()
    ) if conv_ids else {}
    by_run: dict[int, str] = dict((await session.execute(
        select(CampaignRun.id, Campaign.slack_team).join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(CampaignRun.id.in_(sorted(set(run_of.values())))))).tuples().all()) if run_of else {}
    out = {r.id: by_conv[r.conversation_id] for r in rows if r.conversation_id in by_conv}
    out.update({item: by_run[run] for item, run in run_of.items() if run in by_run})
    return out


async def _still_held(session: AsyncSession, items: Sequence[OutboxItem]) -> set[int]:
    """Which of these fenced claims still hold their rows, locked until the transaction ends (so that no
    takeover can come between this read and the outcome's write)."""
    fenced = [(i.id, i.fence.owner, i.fence.token) for i in items if i.fence is not None]
    if not fenced:
        return set()
    t = _TABLE.c
    rows = await session.execute(select(t.id).where(tuple_(t.id, t.owner_id, t.fence).in_(fenced))
                                 .with_for_update())
    return set(rows.scalars())


def _observed(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()


def _row_params(outcome: _Outcome) -> dict[str, Any]:
    values = outcome.values()
    return {"item_id": outcome.item.id, **{f"new_{name}": values[name] for name in _OUTCOME_COLUMNS}}


@functools.cache
def _heads_query(by_kind: bool, with_paused: bool, workspaces: bool) -> Select[Any]:
    """The due thread heads, oldest first (round robin across workspaces with `workspaces`), with bound
    parameters now, limit, kinds and paused. Built once per shape: building it cost more CPU than running it.

    Heads come from one pass over the pending rows in thread order (window functions), whatever the planner
    believes of their number: as correlated NOT EXISTS, a backlog larger than the table's statistics said
    made PostgreSQL compare every pending row with every other, a claim taking seconds in a burst."""
    o = SlackOutbox
    now = bindparam("now", type_=o.claimed_until.type)
    position = func.row_number().over(partition_by=o.thread_key, order_by=(o.order_ts, o.id)).label("position")
    # A thread with a live claim is busy, whichever of its rows holds it (an earlier item may have arrived since).
    claimed = case((and_(o.claimed_until.is_not(None), o.claimed_until >= now), 1), else_=0)
    busy = func.max(claimed).over(partition_by=o.thread_key).label("busy")
    team = func.coalesce(select(Conversation.slack_team).where(Conversation.id == o.conversation_id)
                         .scalar_subquery(), o.slack_team).label("team")
    pending = select(o.id, o.owner_id, o.order_ts, o.kind, o.next_attempt_at, position, busy,
                     *([team] if with_paused or workspaces else [])).where(o.done_at.is_(None)).subquery("pending")
    p = pending.c
    ready = [p.position == 1, p.busy == 0, or_(p.next_attempt_at.is_(None), p.next_attempt_at <= now)]
    if with_paused:
        ready.append(p.team.not_in(bindparam("paused", expanding=True)))
    if by_kind:
        ready.append(p.kind.in_(bindparam("kinds", expanding=True)))
    limit = bindparam("limit", type_=Integer)
    if workspaces:
        # Round robin across workspaces: each one's oldest head, then each one's second, …, so a storm in one
        # workspace never makes another's customer messages wait behind it.
        turn = func.row_number().over(partition_by=p.team, order_by=(p.order_ts, p.id)).label("turn")
        due_heads = select(p.id, p.owner_id, p.order_ts, turn).where(*ready).subquery()
        return (select(due_heads.c.id, due_heads.c.owner_id)
                .order_by(due_heads.c.turn, due_heads.c.order_ts, due_heads.c.id).limit(limit))
    return select(p.id, p.owner_id).where(*ready).order_by(p.order_ts, p.id).limit(limit)


@functools.cache
def _lease_statement(owned: bool) -> Any:
    """Lease the heads `ids` until `until` (those still unclaimed at `now`), for `owner` when `owned`: the
    claim then bumps the fence. Built once, like the heads' query."""
    o = SlackOutbox
    now = bindparam("now", type_=o.claimed_until.type)
    values: dict[str, Any] = {"claimed_until": bindparam("until", type_=o.claimed_until.type),
                              "attempts": o.attempts + 1}
    values.update(claim_values(_TABLE, bindparam("owner", type_=Integer)) if owned else {"owner_id": None})
    return (update(o).where(o.id.in_(bindparam("ids", expanding=True)), o.done_at.is_(None),
                            or_(o.claimed_until.is_(None), o.claimed_until < now))
            .values(**values)
            .returning(o.id, o.thread_key, o.kind, o.payload, o.conversation_id, o.attempts, o.result, o.fence,
                       o.slack_team)
            .execution_options(synchronize_session=False))


@dataclass
class _Outcome:
    """An item's outcome waiting to be written with others."""

    item: OutboxItem
    values: Callable[[], dict[str, Any]]
    writes: tuple[Write, ...]
    done: asyncio.Future[None] = field(repr=False)


class OutboxQueue:
    """The outbox's SQL: every statement the worker runs against `slack_outbox`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], lease: timedelta,
                 owner: Callable[[], int | None] | None = None,
                 guard: Callable[[], Callable[[], bool]] | None = None) -> None:
        self.sessions = sessions
        self._guard = guard
        self.hand = InHand()  # items this process works on (storage.takeover gives back the rest)
        self.lease = lease
        # This process's worker id: claims are bound to its liveness (taken over once it is silent) and fenced.
        self._owner = owner or (lambda: None)
        self._outcomes: list[_Outcome] = []  # outcomes waiting for the next batch
        self._writers: set[asyncio.Task[None]] = set()  # write batches while outcomes wait
        self._alone: set[asyncio.Task[None]] = set()  # outcomes of a failed batch, written one by one

    async def claim(self, limit: int, now: datetime | None = None, *,
                    kinds: Collection[str] | None = None, paused: Collection[str] = (),
                    workspaces: bool = False) -> list[OutboxItem]:
        """Lease up to limit thread heads (of these kinds, if given) that are due and whose thread has
        nothing in flight, leaving the `paused` workspaces' items alone (their tokens are gone).

        `workspaces`: name each item's workspace from its conversation (many-workspace mode; in single-workspace
        mode every item is the 'default' workspace's)."""
        now = now or utcnow()
        query = _heads_query(kinds is not None, bool(paused), workspaces)
        params: dict[str, Any] = {"now": now, "limit": limit}
        if kinds is not None:
            params["kinds"] = sorted(kinds)
        if paused:
            params["paused"] = sorted(paused)
        async with self.sessions() as session, session.begin():
            await take_turn(session, _CLAIM_LOCK_KEY)
            heads = (await session.execute(query, params)).all()
            if not heads:
                return []
            ids = [h.id for h in heads]
            # A claim that never settled (its process died, or was taken over) may have posted anything,
            # whatever an earlier attempt recorded.
            unsettled = {h.id for h in heads if h.owner_id is not None}
            until = now + self.lease
            owner = self._owner()
            guard = self._guard() if self._guard is not None else None
            rows = (await session.execute(_lease_statement(owner is not None),
                                          {"ids": ids, "now": now, "until": until, "owner": owner})).all()
            teams = await _item_teams(session, rows) if workspaces else {}
            items = []
            for row in rows:
                result = dict(row.result or {})
                # A previous attempt that recorded no outcome (crash, expired lease) may have posted.
                uncertain = row.attempts > 1 and (row.id in unsettled or bool(result.get("uncertain", True)))
                items.append(OutboxItem(id=row.id, thread_key=row.thread_key, kind=row.kind,
                                        payload=dict(row.payload or {}), conversation_id=row.conversation_id,
                                        attempts=row.attempts, result=result, uncertain=uncertain,
                                        claimed_until=until,
                                        fence=Fence(owner, row.fence) if owner is not None else None,
                                        guard=guard,
                                        slack_team=teams.get(row.id, row.slack_team)))
            held = [(i.id, i.fence.token) for i in items if i.fence is not None]
            # In hand before the commit (see InHand); dropped again if the commit fails, answer lost or not.
            self.hand.take(held)
            try:
                await session.commit()
            except BaseException:
                self.hand.drop(held)
                raise
            order = {item_id: i for i, item_id in enumerate(ids)}
            return sorted(items, key=lambda i: order[i.id])

    async def unclaim(self, items: Sequence[OutboxItem]) -> None:
        """Hand back claimed items that were never started, as if this claim had not happened."""
        o = SlackOutbox
        try:
            async with self.sessions() as session, session.begin():
                for item in items:
                    await session.execute(
                        update(o).where(o.id == item.id, o.done_at.is_(None), o.claimed_until == item.claimed_until,
                                        *_held(item))
                        .values(claimed_until=None, attempts=o.attempts - 1, owner_id=None)
                        .execution_options(synchronize_session=False))
        finally:
            self._let_go(items)  # handed back, or, if that failed, left to storage.takeover

    def _let_go(self, items: Sequence[OutboxItem]) -> None:
        self.hand.drop((i.id, i.fence.token) for i in items if i.fence is not None)

    async def fold_later(self, item: OutboxItem) -> int:
        """Close the due items owed after this one in its thread as done by it (their kind shows the state at
        delivery time, and this delivery starts after they were owed); returns how many.

        A conversation owes its parent a refresh for every message that moves its window, while chat.update's
        allowance is about one a second per workspace: the refresh that goes does the work of all those owed
        meanwhile, in one statement, instead of each being claimed and skipped in turn."""
        o = SlackOutbox
        now = utcnow()
        async with self.sessions() as session, session.begin():
            folded = await session.execute(
                update(o).where(o.thread_key == item.thread_key, o.done_at.is_(None), o.id != item.id,
                                or_(o.claimed_until.is_(None), o.claimed_until < now),
                                or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))
                .values(done_at=now, claimed_until=None, result={"skipped": True, "folded_into": item.id})
                .execution_options(synchronize_session=False))
        return int(folded.rowcount or 0)  # type: ignore[attr-defined]

    async def save_progress(self, item_id: int, result: Mapping[str, Any], item: OutboxItem | None = None) -> None:
        """Record an item's progress mid-attempt (e.g. an upload about to be completed)."""
        async with self.sessions() as session, session.begin():
            await session.execute(update(SlackOutbox).where(SlackOutbox.id == item_id,
                                                            *(_held(item) if item else []))
                                  .values(result={**result, "uncertain": True}))

    async def complete(self, item: OutboxItem, result: Mapping[str, Any], error: str | None = None,
                       writes: Sequence[Write] = ()) -> None:
        """Close the item (delivered, or given up with `error`)."""
        await self.settle(item, lambda: {
            "done_at": utcnow(), "claimed_until": None, "next_attempt_at": None, "result": dict(result),
            "last_error": error[:4000] if error else None, "owner_id": None}, writes=writes)

    async def release(self, item: OutboxItem, delay: float, uncertain: bool, error: str,
                      result: Mapping[str, Any], *, retry: bool = True, writes: Sequence[Write] = ()
                      ) -> None:
        """Give the item back to be tried again after `delay` seconds."""
        await self.settle(item, lambda: {
            "done_at": None, "claimed_until": None, "next_attempt_at": utcnow() + timedelta(seconds=delay),
            "result": {**result, "uncertain": uncertain}, "last_error": error[:4000], "owner_id": None},
            retry=retry, writes=writes)

    async def settle(self, item: OutboxItem, values: Any, *, retry: bool = True,
                     writes: Sequence[Write] = ()) -> None:
        """Write an item's outcome; while the database is unreachable, keep trying (unless retry is False).

        Until the outcome is written the item stays leased and its whole thread waits behind it: giving up
        would hold the conversation for the rest of the lease (minutes) after a database outage of seconds.
        Outcomes that arrive while another batch is being written go together in the next one (one
        transaction for many items instead of one each); the call returns once its own is committed.
        """
        try:
            if not retry:  # a worker stopping: its own transaction, now
                await self._settle(item, values, retry=retry, writes=writes)
                return
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            # A caller cancelled meanwhile (a worker stopping) no longer awaits its outcome: read its failure here,
            # so that asyncio does not report it as never retrieved.
            done.add_done_callback(_observed)
            self._outcomes.append(_Outcome(item, values, tuple(writes), done))
            if len(self._writers) < _SETTLE_WRITERS:
                writer = asyncio.create_task(self._write_outcomes(), name="slack-outbox-settle")
                self._writers.add(writer)
                writer.add_done_callback(self._writers.discard)
            # Shielded: a caller cancelled meanwhile does not take the others' outcomes down with it.
            await asyncio.shield(done)
        finally:
            self._let_go([item])

    async def _settle_alone(self, outcome: _Outcome) -> None:
        try:
            await self._settle(outcome.item, outcome.values, retry=True, writes=outcome.writes)
        except BaseException as exc:
            if not outcome.done.done():
                outcome.done.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
        else:
            if not outcome.done.done():
                outcome.done.set_result(None)

    async def close(self) -> None:
        """Write the batch under way, and stop retrying outcomes that could not be written (a stopping worker
        calls this last; their leases run out and the items are tried again)."""
        if self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)
        alone = list(self._alone)
        for task in alone:
            task.cancel()
        if alone:
            await asyncio.gather(*alone, return_exceptions=True)

    async def _write_outcomes(self) -> None:
        batch: list[_Outcome] = []
        try:
            while self._outcomes:
                batch = self._outcomes[:_SETTLE_BATCH]
                del self._outcomes[:_SETTLE_BATCH]
                await self._write_batch(batch)
        except BaseException as exc:
            # Stopped (the loop is closing): whoever still waits hears it, as from a settle of their own;
            # those outcomes are not written, like a crash's (their leases run out, or takeover frees them).
            left, self._outcomes = [*batch, *self._outcomes], []
            for outcome in left:
                if not outcome.done.done():
                    outcome.done.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise

    async def _write_batch(self, batch: list[_Outcome]) -> None:
        """One transaction for the batch; if it fails, each outcome on its own (retried while the database is
        away), so that one item's failing write never holds the others.

        The claims still held are read and locked first; their rows, then each write template, go as one
        executemany each: a handful of round trips for the batch instead of two or three per item."""
        try:
            async with self.sessions() as session, session.begin():
                held = await _still_held(session, [outcome.item for outcome in batch])
                kept = [o for o in batch if o.item.fence is None or o.item.id in held]
                fenced = [o for o in batch if o.item.fence is not None and o.item.id not in held]
                if kept:
                    await (await session.connection()).execute(_SETTLE_ROW, [_row_params(o) for o in kept])
                    await run_writes(session, [write for o in kept for write in o.writes])
        except Exception:
            if len(batch) > 1:
                log.info("slack outbox: a batch of %d outcomes failed; writing them one by one", len(batch),
                         exc_info=True)
            # Each on its own, retried while it fails, beside the batches that follow: an outcome that
            # cannot be written holds its own thread only, as it would unbatched.
            for outcome in batch:
                task = asyncio.create_task(self._settle_alone(outcome), name=f"slack-outbox-settle-{outcome.item.id}")
                self._alone.add(task)
                task.add_done_callback(self._alone.discard)
            return
        for outcome in fenced:
            # Taken over: what this attempt learnt is not written.
            log.warning("slack outbox %s was taken over by another process; its outcome is theirs", outcome.item.id)
        for outcome in batch:
            if not outcome.done.done():
                outcome.done.set_result(None)

    async def _settle(self, item: OutboxItem, values: Any, *, retry: bool, writes: Sequence[Write]) -> None:
        wait = 0.5
        while True:
            try:
                async with self.sessions() as session, session.begin():
                    # What the attempt learnt (e.g. a message's Slack ts) commits with its outcome, or neither
                    # (in this order, as in a batch: a fenced-out settle raises before anything is written).
                    await settle(session, update(_TABLE).where(_TABLE.c.id == item.id, *_held(item))
                                 .values(**values()), expected=1 if item.fence is not None else 0)
                    await run_writes(session, writes)
                return
            except FencedOut:
                # Taken over while this process was silent: the new claimant looks in Slack before posting and
                # records the outcome; what this attempt learnt is rolled back with its settle.
                log.warning("slack outbox %s was taken over by another process; its outcome is theirs", item.id)
                return
            except Exception:
                if not retry:
                    raise
                log.warning("slack outbox %s: cannot record its outcome yet; retrying in %.1fs", item.id, wait,
                            exc_info=wait == 0.5)  # its traceback once; the loops say how the outage goes
                await asyncio.sleep(wait)
                wait = min(_SETTLE_RETRY_CAP, wait * 2)
