"""Group commit of webhook deliveries: durable before the 200, 503 for anything not stored."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app.factory import create_app
from bot.bridge.ingest_writer import IngestUnavailable, IngestWriter
from bot.bridge.intake_first import IntakeFirst
from bot.core.loops import SLACK_OUTBOX, WEBHOOKS, WakeHub
from bot.core.metrics import Metrics
from bot.handlers import appkeys
from storage.db import make_engine, migrate
from storage.models import WebhookLog
from tests.helpers import inbound_text, make_settings, signed
from tests.ingest_support import engine, running, stored_bodies

_ = (engine,)  # the fixture, shared


async def test_concurrent_deliveries_commit_in_groups_and_each_gets_its_own_row(engine: AsyncEngine) -> None:
    writer = IngestWriter(engine, linger=0.05, max_batch=25)
    async with running(writer):
        bodies = [f'{{"n": {i}}}'.encode() for i in range(60)]
        ids = await asyncio.gather(*(writer.submit(b, "message") for b in bodies))
    stored = await stored_bodies(engine)
    assert [stored[i] for i in ids] == bodies  # each request is answered with the id of its own row
    assert len(set(ids)) == 60
    assert writer.batches < 60  # grouped (at most 25 per group): 3 groups when nothing is slow
    assert writer.batches >= 3


async def test_each_stored_group_wakes_the_webhook_workers(engine: AsyncEngine) -> None:
    wakes = WakeHub()
    wake = wakes.listen(WEBHOOKS)
    outbox = wakes.listen(SLACK_OUTBOX)
    writer = IngestWriter(engine, linger=0.0, wakes=wakes)
    async with running(writer):
        for n, event_type in enumerate(["message", "status"], 1):
            assert not wake.is_set()
            await writer.submit(b"{}", event_type)
            assert wake.is_set() and writer.batches == n
            assert await wake.wait(0.0)  # taken: the next wait starts afresh
    assert not outbox.is_set()  # only the queue whose rows were committed


async def test_a_refused_group_fails_every_request_in_it_and_nothing_is_acked(engine: AsyncEngine) -> None:
    writer = IngestWriter(engine, linger=0.05)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE webhook_logs"))
    async with running(writer):
        results = await asyncio.gather(*(writer.submit(b"{}", "message") for _ in range(5)),
                                       return_exceptions=True)
    assert all(isinstance(r, IngestUnavailable) for r in results), results
    assert writer.batches == 0


async def test_stopping_fails_waiting_requests_and_refuses_new_ones(engine: AsyncEngine) -> None:
    writer = IngestWriter(engine, linger=30.0)  # the group waits for more: the stop comes first
    async with running(writer):
        waiting = asyncio.create_task(writer.submit(b"{}", "message"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
    with pytest.raises(IngestUnavailable):
        await waiting
    with pytest.raises(IngestUnavailable):
        await writer.submit(b"{}", "message")
    assert await stored_bodies(engine) == {}


async def test_a_lost_connection_is_replaced_and_the_group_stored(pg_url: str) -> None:
    await migrate(pg_url)
    engine = make_engine(pg_url, pool_pre_ping=False)
    try:
        writer = IngestWriter(engine, linger=0.0)
        async with running(writer):
            await writer.submit(b'{"n": 1}', "message")
            # What a PostgreSQL restart does to the writer's idle connection.
            other = make_engine(pg_url)
            async with other.begin() as conn:
                killed = await conn.scalar(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            await other.dispose()
            assert killed >= 1
            log_id = await writer.submit(b'{"n": 2}', "message")
        assert (await stored_bodies(engine))[log_id] == b'{"n": 2}'
    finally:
        await engine.dispose()


async def test_each_group_is_one_statement_sent_by_asyncpg_and_counted(pg_url: str) -> None:
    await migrate(pg_url)
    engine = make_engine(pg_url)
    statements = Metrics().db_statements
    try:
        writer = IngestWriter(engine, linger=0.0, statements=statements)
        async with running(writer):
            ids = [await writer.submit(b'{"n": 1}', "message"), await writer.submit(b'{"n": 2}', "status")]
        assert statements._value.get() == writer.batches == 2  # SQLAlchemy's own count does not see them
        async with engine.connect() as conn:
            rows = (await conn.execute(select(WebhookLog.id, WebhookLog.lane, WebhookLog.received_at)
                                       .order_by(WebhookLog.id))).all()
        assert [(r.id, r.lane) for r in rows] == [(ids[0], "live"), (ids[1], "bulk")]
        assert all(r.received_at.tzinfo is not None for r in rows)
    finally:
        await engine.dispose()


async def test_endpoint_answers_503_when_the_database_refuses(aiohttp_client, db_url) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    body, headers = signed(inbound_text("wamid.OK", "hi"))
    assert (await client.post("/webhooks/meta", data=body, headers=headers)).status == 200
    async with client.app[appkeys.ENGINE].begin() as conn:
        await conn.execute(text("DROP TABLE webhook_logs"))
    statuses = await asyncio.gather(*(
        client.post("/webhooks/meta", data=b, headers=h)
        for b, h in (signed(inbound_text(f"wamid.X{i}", "hi")) for i in range(4))
    ))
    assert [r.status for r in statuses] == [503] * 4


async def test_every_200_from_concurrent_posts_has_its_row(aiohttp_client, db_url) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    posts = [signed(inbound_text(f"wamid.G{i}", f"hi {i}")) for i in range(30)]
    statuses = await asyncio.gather(*(client.post("/webhooks/meta", data=b, headers=h) for b, h in posts))
    assert [r.status for r in statuses] == [200] * 30
    async with client.app[appkeys.SESSIONS]() as s:
        bodies = set((await s.scalars(select(WebhookLog.raw_body))).all())
        assert await s.scalar(select(func.count()).select_from(WebhookLog)) == 30
    assert {bytes(b) for b in bodies} == {b for b, _ in posts}


async def test_each_stored_group_reports_how_long_its_first_delivery_waited(engine: AsyncEngine) -> None:
    reports: list[tuple[int, float]] = []

    class Recording(IntakeFirst):
        def stored(self, n: int, waited: float = 0.0) -> None:
            reports.append((n, waited))

    writer = IngestWriter(engine, linger=0.05, intake=Recording())
    async with running(writer):
        await asyncio.gather(*(writer.submit(b"{}", "message") for _ in range(3)))
    assert sum(n for n, _ in reports) == 3
    assert reports[0][1] >= 0.05  # the group lingered that long for more before its commit
