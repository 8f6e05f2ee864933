"""Stopping background tasks at shutdown without cutting a database statement in half.

A task cancelled while it holds a pooled connection leaves the pool to close or reset a connection in the
middle of a statement, which it logs as an ERROR with a traceback (aiosqlite: "Exception closing connection";
asyncpg: "Exception during reset or similar"). The work itself is safe (its transaction rolls back and its
lease returns it to the queue), but an operator reading the log cannot tell. So the tasks are cancelled at
a moment when no connection is checked out: once the HTTP site has stopped, the workers soon reach one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

from aiohttp import web

from bot.handlers import appkeys

log = logging.getLogger(__name__)

IDLE_GRACE = 5.0  # seconds of the whole shutdown spent waiting for the pool to be idle, at most
_deadlines: weakref.WeakKeyDictionary[web.Application, float] = weakref.WeakKeyDictionary()
IDLE_POLL = 0.002


def _busy(app: web.Application) -> bool:
    """A connection is in use: checked out, and not the one the ingest writer keeps between groups."""
    engine = app.get(appkeys.ENGINE)
    checkedout = getattr(engine.pool, "checkedout", None) if engine is not None else None
    if checkedout is None:
        return False
    writer = app.get(appkeys.INGEST_WRITER)
    return int(checkedout()) > (writer.parked_connections if writer is not None else 0)


async def stop_tasks(app: web.Application, *tasks: asyncio.Task[object] | asyncio.Task[None]) -> None:
    """Cancel tasks once no database connection is in use (or after IDLE_GRACE), and wait for them."""
    loop = asyncio.get_running_loop()
    # One grace for the whole shutdown, not one per task group: a process manager's stop timeout is short.
    deadline = _deadlines.setdefault(app, loop.time() + IDLE_GRACE)
    while _busy(app) and not all(t.done() for t in tasks):
        if loop.time() > deadline:
            log.warning("database still in use %.0f s into shutdown: stopping %s anyway", IDLE_GRACE,
                        ", ".join(t.get_name() for t in tasks))
            break
        await asyncio.sleep(IDLE_POLL)
    for task in tasks:  # no await between the check and here: nothing can check a connection out meanwhile
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
