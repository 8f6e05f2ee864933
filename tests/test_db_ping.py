"""Pooled PostgreSQL connections are tested on checkout only after a rest, and a dead rested one is replaced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from storage import db


async def _kill_others(pg_url: str) -> int:
    """What a PostgreSQL restart does to every other connection of the database."""
    other = db.make_engine(pg_url, pool_pre_ping=False)
    try:
        async with other.begin() as conn:
            return int(await conn.scalar(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")))
    finally:
        await other.dispose()


def _count_pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the pings of asyncpg connections (SQLAlchemy's pre-ping and ours both call the adapter's ping)."""
    pings: list[int] = []
    ping = asyncpg_dialect.AsyncAdapt_asyncpg_connection.ping

    def counted(self: Any) -> Any:
        pings.append(1)
        return ping(self)

    monkeypatch.setattr(asyncpg_dialect.AsyncAdapt_asyncpg_connection, "ping", counted)
    return pings


async def test_a_connection_used_a_moment_ago_is_not_pinged(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = _count_pings(monkeypatch)
    engine = db.make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        for _ in range(5):
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 1")) == 1
        assert pings == []
    finally:
        await engine.dispose()


async def test_a_rested_connection_whose_server_went_away_is_replaced_on_checkout(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "IDLE_BEFORE_PING", 0.2)
    pings = _count_pings(monkeypatch)
    engine = db.make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            first = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert await _kill_others(pg_url) >= 1
        await asyncio.sleep(0.3)
        async with engine.connect() as conn:  # tested, found dead, replaced: no error reaches the caller
            second = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert second != first and pings == [1]
    finally:
        await engine.dispose()


async def test_without_the_rest_a_dead_connection_fails_once_then_the_pool_heals(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "IDLE_BEFORE_PING", 3600.0)
    engine = db.make_engine(pg_url, pool_size=2, max_overflow=0)
    try:
        async with engine.connect() as conn:
            await conn.scalar(text("SELECT 1"))
        assert await _kill_others(pg_url) >= 1
        with pytest.raises(Exception):  # noqa: B017 - the driver's own error for a closed connection
            async with engine.connect() as conn:
                await conn.scalar(text("SELECT 1"))
        async with engine.connect() as conn:  # the failure invalidated the pool: a fresh connection now
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
