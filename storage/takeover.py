"""Work held by silent processes, given back: the webhook log and the Slack outbox, every second.

Each pass asks which owners of still-leased rows are silent (`bot.core.liveness.is_silent`) and clears
their leases with a new fence token, so the next claim, by any process, takes the rows at once instead of
after the fixed lease. Campaign recipients need more than a cleared lease (`scheduler.campaigns.recovery`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.liveness import HEARTBEAT_INTERVAL
from bot.core.loop_health import LoopHealth
from bot.core.loops import WakeHub, forever, monitor_of
from storage.fencing import InHand, owners_of, release_from, release_own
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


async def give_back_own(session: AsyncSession, owner: int, hands: Mapping[str, InHand],
                        queues: tuple[Queue, ...] = QUEUES) -> dict[str, int]:
    """This process's own leased rows that it no longer works on (see `InHand`), given back at once; per queue."""
    freed: dict[str, int] = {}
    for queue in queues:
        hand = hands.get(queue.name)
        if hand is not None:
            n = await release_own(session, queue.table, owner, queue.held, hand, claimed_until=None)
            if n:
                freed[queue.name] = n
    return freed


async def run_takeover(sessions: async_sessionmaker[AsyncSession], *, interval: float = HEARTBEAT_INTERVAL,
                       wakes: WakeHub | None = None, health: LoopHealth | None = None,
                       owner: Callable[[], int | None] | None = None, hands: Mapping[str, InHand] | None = None
                       ) -> None:
    """Loop forever (a background task of every process that works on the queues). With owner and hands
    (this process's worker id and its claims in hand per queue), its own cut-off claims are given back too;
    the workers of the queues given work back are woken through `wakes`."""

    async def turn() -> None:
        async with sessions() as session, session.begin():
            freed = await take_over(session)
            me = owner() if owner is not None else None
            own = await give_back_own(session, me, hands) if me is not None and hands else {}
        if any(freed.values()):
            log.warning("work of silent processes given back: %s", freed)
        if own:
            log.warning("work this process no longer does given back: %s", own)
        if wakes is not None:
            wakes.wake(*(queue for queue, n in {**freed, **own}.items() if n))

    await forever(turn, interval, monitor=monitor_of(health, "take-over of silent processes' work", log),
                  doing="take-over pass")
