"""Processes starting together on a new database each sync the configured numbers, and all of them start."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Channel
from storage.repository import sync_channels
from tests.helpers import make_settings


async def test_processes_syncing_the_numbers_at_once_agree_and_none_fails(pg_url: str) -> None:
    await migrate(pg_url)
    settings = make_settings(pg_url)
    engines = [make_engine(pg_url) for _ in range(4)]  # `serve --processes 4`: four pools, one database
    try:
        ids = await asyncio.gather(*(sync_channels(make_sessionmaker(e), settings.channels) for e in engines))
        assert all(found == ids[0] for found in ids) and ids[0]
        async with make_sessionmaker(engines[0])() as s:
            assert await s.scalar(select(func.count()).select_from(Channel)) == len(settings.channels)
    finally:
        for engine in engines:
            await engine.dispose()
