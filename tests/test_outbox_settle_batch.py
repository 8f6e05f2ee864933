"""Outbox outcomes written together: each item settled once with what its attempt learnt, one taken over
refused alone, a failing write costing no other item its outcome, a database restart only a delay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, event, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack.outbox_queue import OutboxItem, OutboxQueue
from storage import liveness
from storage.db import make_engine, make_sessionmaker, migrate
from storage.deferred import Write
from storage.models import SlackOutbox, utcnow


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await migrate(db_url)
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _claimed(sessions: async_sessionmaker[AsyncSession], n: int) -> tuple[OutboxQueue, list[OutboxItem]]:
    """n items in threads of their own, claimed by one process."""
    async with sessions() as s, s.begin():
        for i in range(n):
            s.add(_row(f"batch:{i}", f"thread:{i}", {"n": i}))
    owner = await liveness.register(sessions, "settle-test")
    queue = OutboxQueue(sessions, timedelta(seconds=60), owner=lambda: owner)
    items = await queue.claim(n)
    assert len(items) == n
    return queue, items


def _row(dedupe_key: str, thread_key: str, payload: dict[str, Any]) -> SlackOutbox:
    """An item in a thread of its own (the kind does not matter: no handler runs here)."""
    return SlackOutbox(dedupe_key=dedupe_key, thread_key=thread_key, kind="alert", payload=payload,
                       order_ts=utcnow(), attempts=0, created_at=utcnow())


def _note_write(i: int) -> Write:
    """What an attempt learnt, written with its outcome (as a message's Slack ts is)."""
    return Write(update(SlackOutbox).where(SlackOutbox.dedupe_key == f"batch:{i}").values(payload={"learnt": i}))


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, SlackOutbox]:
    async with sessions() as s:
        return {r.dedupe_key: r for r in (await s.scalars(select(SlackOutbox))).all()}


async def test_outcomes_settled_at_once_are_each_written_once_with_what_they_learnt(sessions) -> None:  # type: ignore[no-untyped-def]
    queue, items = await _claimed(sessions, 30)
    await asyncio.gather(*(
        queue.complete(item, {"parts": {"0": f"17000.{i}"}}, writes=[_note_write(int(item.payload["n"]))])
        if int(item.payload["n"]) % 3 else
        queue.release(item, 60.0, False, "try later", {"parts": {}})
        for i, item in enumerate(items)))
    rows = await _rows(sessions)
    for item in items:
        n = int(item.payload["n"])
        row = rows[f"batch:{n}"]
        assert row.claimed_until is None and row.owner_id is None
        if n % 3:
            assert row.done_at is not None and row.payload == {"learnt": n}
        else:
            assert row.done_at is None and row.next_attempt_at is not None and row.last_error == "try later"


async def test_an_item_taken_over_is_refused_alone_and_its_learning_rolled_back(sessions) -> None:  # type: ignore[no-untyped-def]
    queue, items = await _claimed(sessions, 6)
    stolen = items[2]
    async with sessions() as s, s.begin():  # another process took it over: a later fence
        await s.execute(update(SlackOutbox).where(SlackOutbox.id == stolen.id).values(fence=SlackOutbox.fence + 1))
    await asyncio.gather(*(queue.complete(item, {"ok": True}, writes=[_note_write(int(item.payload["n"]))])
                           for item in items))
    rows = await _rows(sessions)
    for item in items:
        row = rows[f"batch:{item.payload['n']}"]
        if item.id == stolen.id:
            assert row.done_at is None and row.payload == {"n": 2}  # the new claimant's to settle
        else:
            assert row.done_at is not None and row.payload == {"learnt": item.payload["n"]}


async def test_a_write_that_keeps_failing_holds_its_own_item_only(sessions) -> None:  # type: ignore[no-untyped-def]
    queue, items = await _claimed(sessions, 8)
    broken = items[3]
    failing = Write(text("UPDATE no_such_table SET x = 1"))  # fails in the shared transaction, and again alone
    stuck = asyncio.create_task(queue.complete(broken, {"ok": True}, writes=[failing]))
    await asyncio.gather(*(queue.complete(item, {"ok": True}, writes=[_note_write(int(item.payload["n"]))])
                           for item in items if item is not broken))
    # Later outcomes are not held behind it either.
    async with sessions() as s, s.begin():
        s.add(_row("batch:later", "thread:later", {}))
    later = await queue.claim(5)
    assert [i.thread_key for i in later] == ["thread:later"]
    await queue.complete(later[0], {"ok": True})
    assert not stuck.done()  # still trying: its thread waits, as it would for any unwritable outcome
    rows = await _rows(sessions)
    assert rows["batch:later"].done_at is not None
    for item in items:
        row = rows[f"batch:{item.payload['n']}"]
        assert (row.done_at is not None) == (item is not broken)
        assert row.payload == ({"n": 3} if item is broken else {"learnt": item.payload["n"]})
    await queue.close()
    with pytest.raises(asyncio.CancelledError):
        await stuck


async def test_a_database_restart_delays_the_batch_and_loses_no_outcome(pg_url: str) -> None:
    await migrate(pg_url)
    engine = make_engine(pg_url, pool_pre_ping=False)
    sessions = make_sessionmaker(engine)
    try:
        queue, items = await _claimed(sessions, 10)
        other = make_engine(pg_url)
        async with other.begin() as conn:  # what a restart does to every pooled connection
            await conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        await other.dispose()
        await asyncio.wait_for(asyncio.gather(*(queue.complete(item, {"ok": True}) for item in items)), 60)
        rows = await _rows(sessions)
        assert all(rows[f"batch:{i.payload['n']}"].done_at is not None for i in items)
    finally:
        await engine.dispose()


_LEARNT = update(SlackOutbox).where(SlackOutbox.dedupe_key == bindparam("key")).values(payload=bindparam("learnt"))


async def test_writes_of_one_template_go_to_the_database_as_one_executemany(sessions) -> None:  # type: ignore[no-untyped-def]
    queue, items = await _claimed(sessions, 12)
    seen: list[tuple[str, bool]] = []

    def note(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        seen.append((statement.split()[0].upper(), executemany))

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        await asyncio.gather(*(
            queue.complete(item, {"ok": True},
                           writes=[Write(_LEARNT, {"key": f"batch:{item.payload['n']}", "learnt": {"t": item.id}})])
            for item in items))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    rows = await _rows(sessions)
    assert all(rows[f"batch:{i.payload['n']}"].payload == {"t": i.id} for i in items)
    assert all(rows[f"batch:{i.payload['n']}"].done_at is not None for i in items)
    # However the outcomes fell into batches, each batch sent its rows and its writes as one statement each.
    updates = [many for verb, many in seen if verb == "UPDATE"]
    assert len(updates) < len(items) and any(updates)
