"""Per-wamid transaction locks that close the race between a status and the message it refers to.

A status report and its message (an echo, a Slack reply's send, a campaign send) are often written by two
transactions at once. Under READ COMMITTED neither sees the other's uncommitted row, so the status would be
kept but never folded into its message. Each side takes the wamid's lock after writing its row and before
looking for the other: whichever locks second waits for the first to commit, then sees its row.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.ext.asyncio import AsyncSession

# Keys in their own space (the two-integer form), apart from the single-key locks used elsewhere.
_SPACE = 0x3A31D

_LOCK = text(
    "SELECT pg_advisory_xact_lock(:space, k) FROM "
    "(SELECT DISTINCT hashtext(w) AS k FROM unnest(:wamids) AS w ORDER BY k) AS keys"
).bindparams(bindparam("wamids", type_=ARRAY(TEXT)))


async def lock_wamids(session: AsyncSession, wamids: Iterable[str]) -> None:
    """Hold each wamid's lock until the transaction ends (ascending key order, so two callers never deadlock).

    SQLite needs none: its writers are serialized, and each caller writes before it looks.
    """
    keys = sorted(set(wamids))
    if not keys or session.bind.dialect.name != "postgresql":
        return
    await session.execute(_LOCK, {"space": _SPACE, "wamids": keys})
