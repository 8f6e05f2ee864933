"""Shared fixtures: real Redis, real PostgreSQL (and SQLite) for every test that needs them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests import services

REQUIRE_SERVICES = os.environ.get("WABRIDGE_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: the configured one, else a throwaway server started for this run."""
    url = services.configured_redis_url()
    if url:
        yield url
        return
    if REQUIRE_SERVICES:
        pytest.fail("WABRIDGE_REQUIRE_SERVICES=1 but no Redis answers")
    with services.throwaway_redis() as url:
        yield url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[object]:
    """A redis.asyncio client on a flushed database."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


def _pg_base_url() -> str | None:
    url = services.configured_pg_url()
    if url is None and REQUIRE_SERVICES:
        pytest.fail("WABRIDGE_REQUIRE_SERVICES=1 but no PostgreSQL answers")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database URL: a file-backed SQLite, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'wabridge.db'}"
        return
    base = _pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL not reachable (set WABRIDGE_TEST_PG_URL)")
    url = await services.create_pg_database(base)
    try:
        yield url
    finally:
        await services.drop_pg_database(base, url)


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh PostgreSQL database only (for behaviour that exists only there)."""
    base = _pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL not reachable (set WABRIDGE_TEST_PG_URL)")
    url = await services.create_pg_database(base)
    try:
        yield url
    finally:
        await services.drop_pg_database(base, url)
