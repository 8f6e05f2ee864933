"""What the intake tests share: a migrated engine, a running IngestWriter, and the bodies stored."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.bridge.ingest_writer import IngestWriter
from storage.db import make_engine, migrate
from storage.models import WebhookLog


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate(db_url)
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


@contextlib.asynccontextmanager
async def running(writer: IngestWriter) -> AsyncIterator[asyncio.Task[None]]:
    """The writer's loop, cancelled on exit."""
    task = asyncio.create_task(writer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stored_bodies(engine: AsyncEngine) -> dict[int, bytes]:
    """Every stored delivery's body by id."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(WebhookLog.id, WebhookLog.raw_body))).all()
    return {r.id: bytes(r.raw_body) for r in rows}
