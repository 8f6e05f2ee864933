"""Work held by silent processes, given back: the webhook log and the Slack outbox, every second.

Each pass asks which owners of still-leased rows are silent (`bot.core.liveness.is_silent`) and clears
their leases with a new fence token, so the next claim, by any process, takes the rows at once instead of
after the fixed lease. Campaign recipients need more than a cleared lease (`scheduler.campaigns.recovery`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.liveness import HEARTBEAT_INTERVAL
from storage.fencing import owners_of, release_from
from storage.liveness import silent_workers
from storage.models import SlackOutbox, WebhookLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queue:
    name: str
    table: Table
    held: ColumnElement[bool]  # unfinished and still leased


def _queues() -> tuple[Queue, ...]:
    logs = cast(Table, WebhookLog.__table__)
    posts = cast(Table, SlackOutbox.__table__)
    return (Queue("webhook_logs", logs, logs.c.processed_at.is_(None) & logs.c.claimed_until.is_not(None)),
            Queue("slack_outbox", posts, posts.c.done_at.is_(None) & posts.c.claimed_until.is_not(None)))


QUEUES = _queues()


async def take_over(session: AsyncSession, queues: tuple[Queue, ...] = QUEUES) -> dict[str, int]:
    """One pass: rows given back per queue."""
    freed: dict[str, int] = {}
    for queue in queues:
        owners = await owners_of(session, queue.table, queue.held)
        silent = await silent_workers(session, among=owners)
        if silent:
            freed[queue.name] = await release_from(session, queue.table, silent, queue.held, claimed_until=None)
    return freed


async def run_takeover(sessions: async_sessionmaker[AsyncSession], *, interval: float = HEARTBEAT_INTERVAL,
                       on_freed: Callable[[], None] | None = None) -> None:
    """Loop forever (a background task of every process that works on the queues)."""
    while True:
        try:
            async with sessions() as session, session.begin():
                freed = await take_over(session)
            if any(freed.values()):
                log.warning("work of silent processes given back: %s", freed)
                if on_freed is not None:
                    on_freed()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("take-over pass failed; retrying", exc_info=True)
        await asyncio.sleep(interval)
