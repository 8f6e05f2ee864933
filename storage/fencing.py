"""Claims fenced by owner and token: what a queue row needs so that only its current claimant settles it.

A claim sets ``owner_id`` to the claiming worker and bumps ``fence``; the claimant keeps both as a
`bot.core.liveness.Fence`. Settling is an UPDATE conditional on both: if another process took the row over
meanwhile (the claimant was silent too long), it matches nothing and `settle` raises `FencedOut`, which rolls
the caller's transaction back, so nothing the stale claimant did in it is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from bot.core.liveness import Fence


class FencedOut(Exception):
    """A settle matched no row: the work was taken over by another process."""


def claim_values(table: Table, owner: int | ColumnElement[int]) -> dict[str, Any]:
    """SET clause of a claim: this owner, the next fence token."""
    return {"owner_id": owner, "fence": table.c.fence + 1}


def held_by(table: Table, fence: Fence) -> ColumnElement[bool]:
    """WHERE clause matching a row only while this claim still holds it."""
    return and_(table.c.owner_id == fence.owner, table.c.fence == fence.token)


async def settle(session: AsyncSession, statement: Executable, expected: int = 1,
                 params: Any = None) -> int:
    """Execute a fenced UPDATE; raise `FencedOut` when it changed fewer rows than expected."""
    result = await session.execute(statement, params) if params is not None else await session.execute(statement)
    changed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if changed < expected:
        raise FencedOut(f"{expected - changed} of {expected} rows were taken over by another process")
    return changed


async def release_from(session: AsyncSession, table: Table, owners: Iterable[int], unfinished: ColumnElement[bool],
                       **values: Any) -> int:
    """Take unfinished rows away from silent owners: a new fence token (their claim is void), plus whatever
    the queue needs (e.g. its lease cleared so that the next claim finds them at once).

    The owner is left in place on purpose: the next claimant sees that the previous claim never settled, so
    it must check what that claim already did (a Slack post, say) before doing it again."""
    ids = sorted(set(owners))
    if not ids:
        return 0
    result = await session.execute(
        update(table).where(table.c.owner_id.in_(ids), unfinished).values(fence=table.c.fence + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def owners_of(session: AsyncSession, table: Table, unfinished: ColumnElement[bool]) -> set[int]:
    """Workers holding unfinished rows of a queue (to ask which of them are silent)."""
    rows = await session.scalars(select(table.c.owner_id).where(table.c.owner_id.is_not(None), unfinished)
                                 .distinct())
    return {int(o) for o in rows.all() if o is not None}


class InHand:
    """The claims of one queue this process still works on: row id -> fence token.

    A claim is put in hand before its transaction commits and dropped once its outcome is written (or its
    work is abandoned). This process's unfinished rows missing from it were cut off (a database outage ended
    their work, a claim's commit answer was lost) and `release_own` gives them back without waiting for a
    lease to run out or for this process to fall silent."""

    def __init__(self) -> None:
        self.claims: dict[int, int] = {}

    def take(self, claims: Iterable[tuple[int, int]]) -> None:
        self.claims.update(claims)

    def drop(self, claims: Iterable[tuple[int, int]]) -> None:
        for row_id, token in claims:
            if self.claims.get(row_id) == token:
                del self.claims[row_id]

    def holds(self, row_id: int, token: int) -> bool:
        return self.claims.get(row_id) == token


async def release_own(session: AsyncSession, table: Table, owner: int, unfinished: ColumnElement[bool],
                      hand: InHand, **values: Any) -> int:
    """Give back this owner's unfinished rows that are not in hand, as `release_from` does for silent owners.

    The hand is read after the rows, so a claim committed before the read is in it; each row is matched on
    the token read with it, so one settled and claimed again meanwhile is left alone."""
    rows = (await session.execute(
        select(table.c.id, table.c.fence).where(table.c.owner_id == owner, unfinished)
    )).all()
    loose = [(int(r.id), int(r.fence)) for r in rows if not hand.holds(int(r.id), int(r.fence))]
    if not loose:
        return 0
    result = await session.execute(
        update(table).where(tuple_(table.c.id, table.c.fence).in_(loose), table.c.owner_id == owner, unfinished)
        .values(fence=table.c.fence + 1, **values).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
