"""The PostgreSQL pool: a connection whose server went away is replaced at checkout, by a ping of one round trip."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from storage.db import make_engine


async def _backend_pid(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_pooled_connection_killed_by_the_server_is_replaced_before_anyone_uses_it(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    killer = make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        pid = await _backend_pid(engine)  # the pool now holds this backend's connection
        async with killer.connect() as conn:  # what a server restart or an idle timeout does to it
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # Without the ping at checkout, this statement would be the one to find the connection dead.
        assert await _backend_pid(engine) != pid
    finally:
        await engine.dispose()
        await killer.dispose()


async def test_the_checkout_ping_is_one_simple_query_without_a_transaction(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    sent: list[str] = []
    try:
        await _backend_pid(engine)
        async with engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
        raw.add_query_logger(lambda logged: sent.append(logged.query))
        pings: list[bool] = []
        event.listen(engine.sync_engine.pool, "checkout", lambda *a: pings.append(True))
        await _backend_pid(engine)
        assert pings == [True]
        # The ping, then the statement's own transaction; SQLAlchemy's ping would be BEGIN, a prepared ";" and
        # ROLLBACK before it.
        assert sent[:2] == ["SELECT 1", "BEGIN;"]
    finally:
        await engine.dispose()
