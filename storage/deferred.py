"""Statements written later, in a transaction of the caller's choosing (an outbox item's outcome), grouped.

A write with `params` names a statement template shared by many items (bound parameters, built once): the
writes of a batch of outcomes that share a template go to the database as one executemany, one round trip
instead of one per item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Write:
    """A statement to run later; with `params`, `statement` is a template run with these parameters."""

    statement: Executable
    params: Mapping[str, Any] | None = None


async def run_writes(session: AsyncSession, writes: Sequence[Write]) -> None:
    """Run the writes in the session's transaction: unparameterised ones in order, then each template once
    with the parameters of all its writes (their order kept)."""
    templates: dict[int, tuple[Executable, list[Mapping[str, Any]]]] = {}
    for write in writes:
        if write.params is None:
            await session.execute(write.statement)
        else:
            templates.setdefault(id(write.statement), (write.statement, []))[1].append(write.params)
    if not templates:
        return
    # On the connection, as Core statements: the ORM would take a list of parameters for a bulk update by
    # primary key.
    conn = await session.connection()
    for statement, params in templates.values():
        await conn.execute(statement, params[0] if len(params) == 1 else list(params))
