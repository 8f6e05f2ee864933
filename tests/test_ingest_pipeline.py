"""Groups of webhook deliveries in flight at once: each acknowledged only after its own row is committed,
nothing lost or stored twice, a crash between the commit and the 200 redelivered once, a restart survived."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.app.factory import create_app
from bot.bridge import ingest_writer
from bot.bridge.ingest_writer import IngestWriter
from bot.handlers import appkeys
from storage import webhook_logs
from storage.db import make_engine, migrate
from storage.models import Message, SlackOutbox, WebhookLog
from tests.harness import drain_webhooks
from tests.helpers import inbound_text, make_settings, signed
from tests.ingest_support import engine, running, stored_bodies

_ = (engine,)  # the fixture, shared


async def test_many_deliveries_with_groups_in_flight_are_each_stored_once(engine: AsyncEngine) -> None:
    writer = IngestWriter(engine, linger=0.0, max_batch=7)
    bodies = [f'{{"n": {i}}}'.encode() for i in range(300)]

    async def arrive(i: int, body: bytes) -> int:
        await asyncio.sleep((i % 13) * 0.001)  # arrivals spread over the groups
        return await writer.submit(body, "status" if i % 3 else "message")

    async with running(writer):
        ids = await asyncio.gather(*(arrive(i, b) for i, b in enumerate(bodies)))
    stored = await stored_bodies(engine)
    assert len(stored) == 300
    assert [stored[i] for i in ids] == bodies  # each request answered with its own row's id
    async with engine.connect() as conn:
        lanes = dict((await conn.execute(select(WebhookLog.raw_body, WebhookLog.lane))).tuples().all())
    assert {bytes(b): lane for b, lane in lanes.items()} == {
        b: "bulk" if i % 3 else "live" for i, b in enumerate(bodies)}


async def test_a_later_group_is_acknowledged_while_an_earlier_one_still_commits(pg_url: str,
                                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    await migrate(pg_url)
    engine = make_engine(pg_url)
    held = asyncio.Event()
    release = asyncio.Event()
    real = webhook_logs.store_many

    async def slow_first(conn: AsyncConnection, rows: list[tuple[bytes, str]]) -> list[int]:
        if rows[0][0] == b'{"first": true}':
            held.set()
            await release.wait()  # a commit that takes its time (a slow fsync)
        return await real(conn, rows)

    monkeypatch.setattr(ingest_writer.webhook_logs, "store_many", slow_first)
    try:
        writer = IngestWriter(engine, linger=0.0, connections=4)
        async with running(writer):
            first = asyncio.create_task(writer.submit(b'{"first": true}', "message"))
            await held.wait()
            second_id = await writer.submit(b'{"second": true}', "message")
            assert not first.done()  # not acknowledged before its own row is committed
            assert (await stored_bodies(engine)) == {second_id: b'{"second": true}'}
            release.set()
            first_id = await first
        assert await stored_bodies(engine) == {first_id: b'{"first": true}', second_id: b'{"second": true}'}
        assert writer.most_in_flight >= 2
    finally:
        await engine.dispose()


async def test_one_group_at_a_time_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        writer = IngestWriter(engine, linger=0.0, max_batch=3)
        async with running(writer):
            await asyncio.gather(*(writer.submit(f'{{"n": {i}}}'.encode(), "message") for i in range(20)))
        assert writer.most_in_flight == 1  # SQLite has one writer: a second group would only wait for the lock
        assert len(await stored_bodies(engine)) == 20
    finally:
        await engine.dispose()


async def test_a_restart_that_drops_every_parked_connection_loses_no_group(pg_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    await migrate(pg_url)
    engine = make_engine(pg_url, pool_pre_ping=False)
    gate = asyncio.Event()
    entered = 0
    real = webhook_logs.store_many

    async def together(conn: AsyncConnection, rows: list[tuple[bytes, str]]) -> list[int]:
        nonlocal entered
        entered += 1
        if entered == 4:
            gate.set()
        await gate.wait()  # four groups in flight at once: four connections parked afterwards
        return await real(conn, rows)

    try:
        writer = IngestWriter(engine, linger=0.0, max_batch=1, connections=4)
        async with running(writer):
            monkeypatch.setattr(ingest_writer.webhook_logs, "store_many", together)
            await asyncio.gather(*(writer.submit(f'{{"warm": {i}}}'.encode(), "message") for i in range(4)))
            monkeypatch.setattr(ingest_writer.webhook_logs, "store_many", real)
            assert writer.parked_connections == 4
            other = make_engine(pg_url)
            async with other.begin() as conn:  # what a PostgreSQL restart does to them
                killed = await conn.scalar(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            await other.dispose()
            assert killed >= 4
            ids = await asyncio.gather(*(writer.submit(f'{{"after": {i}}}'.encode(), "message")
                                         for i in range(12)))
        stored = await stored_bodies(engine)
        assert [stored[i] for i in ids] == [f'{{"after": {i}}}'.encode() for i in range(12)]
    finally:
        await engine.dispose()


async def test_a_crash_between_the_commit_and_the_200_is_redelivered_and_mirrored_once(
        aiohttp_client, db_url: str) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    writer = app[appkeys.INGEST_WRITER]
    body, headers = signed(inbound_text("wamid.CRASH", "Is the Monday batch full?"))
    request = asyncio.create_task(writer.submit(body, "message"))
    # The row commits; the process dies before the 200 leaves (the request never answers).
    for _ in range(200):
        async with app[appkeys.SESSIONS]() as s:
            if await s.scalar(select(func.count()).select_from(WebhookLog)):
                break
        await asyncio.sleep(0.01)
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    # Meta had no 200, so it delivers the same body again.
    assert (await client.post("/webhooks/meta", data=body, headers=headers)).status == 200
    await drain_webhooks(app)
    async with app[appkeys.SESSIONS]() as s:
        assert await s.scalar(select(func.count()).select_from(WebhookLog)) == 2
        assert await s.scalar(select(func.count()).select_from(Message)) == 1
        assert await s.scalar(select(func.count()).select_from(SlackOutbox)) == 1
