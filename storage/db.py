"""Engine, sessions and migrations for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _force_close_aiosqlite() -> None:
    """Close an invalidated aiosqlite connection with aiosqlite's stop(), never through a pending future.

    A task cancelled while it holds a SQLite connection (a worker stopping at shutdown) makes SQLAlchemy
    close that connection in a shielded task, then, once that task is cancelled too, force it with stop().
    With aiosqlite >= 0.22 stop() ends the worker thread before the graceful close it queued has run, so the
    shielded task waits for ever and so does the event loop's shutdown (sqlalchemy#13039; the same hang is
    wapiti-scanner/wapiti#802). aiosqlite's stop() closes the sqlite3 connection before it ends the thread,
    so going straight to it loses nothing."""
    from sqlalchemy.dialects.sqlite import aiosqlite as dialect

    adapted: Any = dialect.AsyncAdapt_aiosqlite_connection
    if getattr(adapted, "_wabridge_force_close", False):
        return

    async def skip_graceful(self: Any) -> None:
        raise TimeoutError("closed with stop() instead")  # terminate() then calls _terminate_force_close()

    adapted._terminate_graceful_close = skip_graceful
    adapted._wabridge_force_close = True


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so several writers queue instead of failing."""
    if is_sqlite(url):
        _force_close_aiosqlite()
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Take the write lock at BEGIN: a deferred transaction that upgrades to a writer after another
            # process committed fails at once with SQLITE_BUSY, whatever the busy timeout says.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.driver == "asyncpg":
        engine.dialect.do_ping = _ping_in_one_round_trip  # type: ignore[method-assign]
    return engine


def _ping_in_one_round_trip(dbapi_connection: Any) -> bool:
    """Test a pooled asyncpg connection with one simple query before it is handed out.

    SQLAlchemy's own ping opens a transaction, runs a prepared `;` and rolls back: three round trips on every
    checkout, which the mirror path makes several times per message. A simple-protocol `SELECT 1` prepares nothing,
    so it is as safe behind PgBouncer's transaction pooling (sqlalchemy#10226), in one round trip; a dead
    connection raises here as in SQLAlchemy's ping, and the pool replaces it.
    """
    try:
        dbapi_connection.await_(dbapi_connection._connection.execute("SELECT 1"))
    except Exception as error:
        dbapi_connection._handle_exception(error)
    return True


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads that need no transaction: on PostgreSQL each statement runs on its own, without the
    BEGIN and ROLLBACK round trips a session otherwise adds (the mirror path reads a message this way for every
    post). Never write through these. On SQLite, ordinary sessions."""
    if engine.dialect.name == "sqlite":
        return make_sessionmaker(engine)
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate_sync(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to revision (blocking); the history is one line, so "head" is unique."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def migrate(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations without blocking the event loop."""
    await asyncio.to_thread(migrate_sync, url, revision)



async def revision(url: str) -> str | None:
    """The database's Alembic revision; None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()
