"""Insert-or-ignore on a unique key, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


async def insert_ignore(
    session: AsyncSession, model: type[DeclarativeBase], values: dict[str, Any], conflict: list[str]
) -> int | None:
    """Insert one row unless its unique key already exists; returns the new primary key or None."""
    dialect = session.bind.dialect.name
    table: Any = model.__table__
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    else:
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    pk = next(iter(table.primary_key))
    result = await session.execute(stmt.returning(pk))
    row = result.first()
    return None if row is None else row[0]
