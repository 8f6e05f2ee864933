"""Slack interactions acted on once: the first delivery claims a key in `slack_actions`, and stores the answer.

Slack may deliver an interaction again, and anyone holding a signed request can replay it within Slack's five
minutes. A replay finds the key and gets the stored answer (or 'still at work') instead of acting again.
A claim whose action certainly did nothing (a refusal before any send) is released, so the person can retry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import SlackAction, utcnow
from storage.upsert import insert_ignore


@dataclass(frozen=True)
class Prior:
    """An earlier delivery of the same interaction: its answer, or None while it is still at work."""

    outcome: dict[str, Any] | None


def action_key(*parts: str) -> str:
    """A fixed-length key for an interaction from the parts that identify it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


async def claim(sessions: async_sessionmaker[AsyncSession], key: str) -> Prior | None:
    """None when this delivery is the first (and now owns the key), else what the first one recorded."""
    async with sessions() as s, s.begin():
        if await insert_ignore(s, SlackAction, {"key": key, "outcome": None, "created_at": utcnow()},
                               ["key"]) is not None:
            return None
        row = await s.get(SlackAction, key)
        return Prior(row.outcome if row is not None else None)


async def settle(sessions: async_sessionmaker[AsyncSession], key: str, outcome: dict[str, Any]) -> None:
    """Record the answer the first delivery gave."""
    async with sessions() as s, s.begin():
        await s.execute(update(SlackAction).where(SlackAction.key == key).values(outcome=outcome))


async def release(sessions: async_sessionmaker[AsyncSession], key: str) -> None:
    """Forget a claim whose action did nothing, so the same request may be tried again."""
    async with sessions() as s, s.begin():
        await s.execute(delete(SlackAction).where(SlackAction.key == key))
