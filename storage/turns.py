"""Database-wide turns: a transaction-scoped advisory lock named by a key, for work two processes must not do
at once (claims that must see each other's leases, the channels' sync at start-up)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_TAKE = text("SELECT pg_advisory_xact_lock(:k)")


async def take_turn(session: AsyncSession, key: int) -> None:
    """Wait for this key's turn and hold it until the session's transaction ends. PostgreSQL only: SQLite's
    writers already take turns (each transaction begins IMMEDIATE)."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(_TAKE, {"k": key})
