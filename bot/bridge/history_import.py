"""A history delivery applied in slices: HISTORY_SLICE messages (or SLICE_SECONDS) per transaction, then the
chunk's progress and the delivery's mark in a last one.

Meta sends a Business app's history in chunks of thousands of conversations. In one transaction a chunk held
SQLite's only write lock for longer than a customer's webhook may wait for its row (30 s, then 503). Between
slices the import lets other writers go first (`storage.write_gate`). A slice stored twice (a retry after a
crash) stores nothing new, as messages are unique by wamid; the import's count of messages then leaves out
what the first attempt stored.
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.bridge.meta_events import EventContext, apply_event, fold_history, store_history
from bot.bridge.webhook_batch import Parsed
from bot.meta import events as ev
from storage import webhook_logs
from storage.write_gate import WriteGate

HISTORY_SLICE = 100  # messages per transaction at most
SLICE_SECONDS = 0.2  # and a transaction's time at most (checked every _STEP messages)
_STEP = 10


def carries_history(parsed: Parsed) -> bool:
    """Whether a parsed delivery holds a history chunk with messages (the kind worth slicing)."""
    return parsed.error is None and any(isinstance(e, ev.HistoryChunk) and e.messages for e in parsed.events)


async def apply_history(sessions: async_sessionmaker[AsyncSession], ctx: EventContext, parsed: Parsed,
                        gate: WriteGate, *, slice_size: int = HISTORY_SLICE) -> None:
    """Store the delivery's history slice by slice, then fold its progress and mark it processed (fenced).

    Raises what failed (FencedOut when another process took the delivery over): the caller records it."""
    stored: dict[int, int] = {}
    for n, event in enumerate(parsed.events):
        if not isinstance(event, ev.HistoryChunk):
            continue
        done = 0
        while done < len(event.messages):
            await gate.between()
            async with sessions() as session, session.begin():
                # A slice ends at slice_size messages or SLICE_SECONDS, whichever comes first: on a busy host
                # a hundred messages can take seconds, and the lock is what others wait for.
                end, deadline = min(done + slice_size, len(event.messages)), time.monotonic() + SLICE_SECONDS
                while done < end and time.monotonic() < deadline:
                    step = event.messages[done:min(done + _STEP, end)]
                    stored[n] = stored.get(n, 0) + await store_history(session, ctx, event, step)
                    done += len(step)
    await gate.between()
    async with sessions() as session, session.begin():
        for n, event in enumerate(parsed.events):
            if isinstance(event, ev.HistoryChunk):
                ctx.count(type(event).__name__)
                await fold_history(session, ctx, event, stored.get(n, 0))
            else:
                await apply_event(session, ctx, event)
        await webhook_logs.mark_processed(session, parsed.item.id, fence=parsed.item.fence)
