"""Process liveness and fenced claims: heartbeats, the silence rule, take-over, and a woken owner fenced off."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Table, select, update

from bot.core.liveness import SILENCE, Fence, is_silent, still_trusted
from storage import liveness
from storage.db import make_engine, make_sessionmaker, migrate
from storage.fencing import FencedOut, claim_values, held_by, release_from, settle
from storage.models import WebhookLog, Worker, utcnow

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LOGS: Table = WebhookLog.__table__  # type: ignore[assignment]


def test_a_process_is_silent_after_five_seconds_without_a_heartbeat_or_once_stopped() -> None:
    assert not is_silent(T0, None, T0 + timedelta(seconds=4.9))
    assert is_silent(T0, None, T0 + timedelta(seconds=5.1))
    assert is_silent(T0, T0, T0 + timedelta(seconds=0.1))  # a clean stop: at once
    assert is_silent(None, None, T0)
    assert SILENCE == timedelta(seconds=5)


def test_a_process_distrusts_its_own_claims_before_others_may_take_them() -> None:
    assert still_trusted(T0, T0 + timedelta(seconds=2))
    assert not still_trusted(T0, T0 + timedelta(seconds=2.6))  # others judge at 5 s; it stops trusting at 2.5
    assert not still_trusted(None, T0)


@pytest.fixture
async def sessions(db_url: str):  # type: ignore[no-untyped-def]
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def test_heartbeats_keep_a_worker_alive_and_a_clean_stop_makes_it_silent_at_once(sessions) -> None:  # type: ignore[no-untyped-def]
    a = await liveness.register(sessions, "serve-a", now=T0)
    b = await liveness.register(sessions, "serve-b", now=T0)
    assert a != b
    assert await liveness.beat(sessions, a, now=T0 + timedelta(seconds=6))
    async with sessions() as s:
        assert await liveness.silent_workers(s, now=T0 + timedelta(seconds=7), among={a, b}) == {b}
        assert await liveness.silent_workers(s, now=T0 + timedelta(seconds=7), among={a, 999}) == {999}
    await liveness.mark_stopped(sessions, a)
    assert not await liveness.beat(sessions, a)  # a stopped row never comes back to life
    async with sessions() as s:
        assert await liveness.silent_workers(s, now=T0 + timedelta(seconds=7), among={a}) == {a}


async def test_heartbeat_task_registers_beats_and_marks_itself_stopped_when_cancelled(sessions) -> None:  # type: ignore[no-untyped-def]
    hb = liveness.Heartbeat(sessions, "serve-x", interval=0.05)
    task = asyncio.create_task(hb.run())
    worker_id = await hb.ready()
    async with sessions() as s:
        first = await s.scalar(select(Worker.heartbeat_at).where(Worker.id == worker_id))
    for _ in range(100):
        await asyncio.sleep(0.05)
        async with sessions() as s:
            latest = await s.scalar(select(Worker.heartbeat_at).where(Worker.id == worker_id))
        if latest != first:
            break
    assert latest != first and hb.trusted
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with sessions() as s:
        row = await s.get(Worker, worker_id)
        assert row is not None and row.stopped_at is not None and row.pid > 0 and row.host


async def _claim(sessions, log_id: int, owner: int) -> Fence:  # type: ignore[no-untyped-def]
    async with sessions() as s, s.begin():
        await settle(s, update(LOGS).where(LOGS.c.id == log_id, LOGS.c.claimed_until.is_(None))
                     .values(claimed_until=utcnow() + timedelta(seconds=60), **claim_values(LOGS, owner)))
        token = await s.scalar(select(WebhookLog.fence).where(WebhookLog.id == log_id))
    return Fence(owner, int(token or 0))


async def test_work_of_a_silent_owner_is_taken_over_and_the_woken_owner_cannot_settle_it(sessions) -> None:  # type: ignore[no-untyped-def]
    paused = await liveness.register(sessions, "paused", now=utcnow() - timedelta(seconds=30))
    survivor = await liveness.register(sessions, "survivor")
    async with sessions() as s, s.begin():
        s.add_all([WebhookLog(raw_body=b"{}", event_type="messages") for _ in range(2)])
    async with sessions() as s:
        ids = sorted((await s.scalars(select(WebhookLog.id))).all())
    old = await _claim(sessions, ids[0], paused)
    kept = await _claim(sessions, ids[1], survivor)

    # The survivor finds the paused owner silent and takes its unfinished row back into the queue.
    async with sessions() as s, s.begin():
        silent = await liveness.silent_workers(s, among={paused, survivor})
        assert silent == {paused}
        assert await release_from(s, LOGS, silent, LOGS.c.processed_at.is_(None), claimed_until=None) == 1
        assert await release_from(s, LOGS, silent, LOGS.c.claimed_until.is_not(None), claimed_until=None) == 0
    new = await _claim(sessions, ids[0], survivor)
    assert new.token > old.token

    # The paused process wakes up and tries to settle what it once held: nothing it wrote in that
    # transaction is kept.
    with pytest.raises(FencedOut):
        async with sessions() as s, s.begin():
            s.add(WebhookLog(raw_body=b"side effect", event_type="messages"))
            await settle(s, update(LOGS).where(LOGS.c.id == ids[0], held_by(LOGS, old))
                         .values(processed_at=utcnow()))
    async with sessions() as s:
        assert await s.scalar(select(WebhookLog.processed_at).where(WebhookLog.id == ids[0])) is None
        assert (await s.scalars(select(WebhookLog.id).where(WebhookLog.raw_body == b"side effect"))).all() == []

    # The current holders settle normally, including the survivor's own earlier claim.
    async with sessions() as s, s.begin():
        await settle(s, update(LOGS).where(LOGS.c.id == ids[0], held_by(LOGS, new)).values(processed_at=utcnow()))
        await settle(s, update(LOGS).where(LOGS.c.id == ids[1], held_by(LOGS, kept)).values(processed_at=utcnow()))
    # A stale settle by the same owner but of an older claim of the same row is fenced too.
    with pytest.raises(FencedOut):
        async with sessions() as s, s.begin():
            await settle(s, update(LOGS).where(LOGS.c.id == ids[0], held_by(LOGS, Fence(survivor, old.token)))
                         .values(error="late"))


async def test_a_guard_taken_at_a_claim_fails_once_the_process_went_unheard_long_enough(sessions) -> None:  # type: ignore[no-untyped-def]
    hb = liveness.Heartbeat(sessions, "serve-g", interval=0.05, silence=timedelta(seconds=1))
    task = asyncio.create_task(hb.run())
    try:
        await hb.ready()
        for _ in range(100):  # the first beat
            if hb.trusted:
                break
            await asyncio.sleep(0.02)
        guard = hb.guard()
        await asyncio.sleep(0.2)
        assert guard()  # heartbeats kept going: the claim is still this process's
        hb._last_ok = utcnow() - timedelta(seconds=3)  # as after a pause of three seconds
        assert not guard()
        for _ in range(100):  # the next heartbeat goes in, but the gap has been seen
            if hb.trusted:
                break
            await asyncio.sleep(0.02)
        assert hb.trusted and not guard() and hb.guard()()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
