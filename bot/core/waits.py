"""Waiting with a deadline without losing a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def wait_until(aw: Awaitable[object], seconds: float) -> bool:
    """Await ``aw`` for at most ``seconds``: True if it finished, False at the deadline.

    ``asyncio.wait_for`` on Python 3.11 returns normally when what it awaits finishes in the same loop
    iteration as a cancellation of the waiter, and the cancellation is lost (cpython gh-86296): a worker
    loop stopped by cancelling it then runs on, and whoever awaits its end waits for ever. ``asyncio.timeout``
    keeps the cancellation.
    """
    try:
        async with asyncio.timeout(seconds):
            await aw
    except TimeoutError:
        return False
    return True
