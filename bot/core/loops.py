"""The one loop every worker runs, and the one way to say "new rows are committed: look now".

`forever(step, interval, wake)` runs `step` until cancelled. A step returns how soon it wants the next turn:
`None` when it found nothing to do (the loop then waits for a wake-up or `interval`), a number of seconds
otherwise (0: at once, there is more). A step that raises is logged by its loop's monitor (the first traceback
of a streak, then one per 30 s, see bot.core.loop_health) and the next turn waits a backoff that doubles up to
`min(interval, 5 s)`: a database restart is retried into, never waited out for a whole interval, and the
process heals without a restart.

`WakeHub` (one per process, `Deps.wakes`): whoever commits rows of a queue calls `wake(queue)`; every worker
of that queue in the process looks at once instead of at its next poll. A wake-up is a hint: a worker that
misses one finds the rows at its next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

from bot.core.loop_health import Backoff, LoopHealth, LoopMonitor
from bot.core.waits import wait_until

# The queues workers wake each other for; the names are those of the tables (and of `CLAIMS_IN_HAND`).
WEBHOOKS = "webhook_logs"
SLACK_OUTBOX = "slack_outbox"
CAMPAIGNS = "campaign_recipients"
AUTO_REPLIES = "auto_replies"

FIRST_BACKOFF = 0.25  # seconds before the turn after a first failure
MAX_BACKOFF = 5.0  # at most this long between turns of a failing loop (STALE_AFTER needs < 10 s)

Step = Callable[[], Awaitable[float | None]]


class Wake:
    """One worker's wake-up: set by the hub (or by the worker itself, e.g. when a task of its ends)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        """Whether a wake-up came since the last wait."""
        return self._event.is_set()

    async def wait(self, seconds: float) -> bool:
        """Wait for a wake-up for at most `seconds`; True if one came. Either way the next wait starts afresh."""
        try:
            return await wait_until(self._event.wait(), seconds)
        finally:
            self._event.clear()


class WakeHub:
    """Wake-ups keyed by queue name, for the workers of one process."""

    def __init__(self) -> None:
        self._wakes: dict[str, list[Wake]] = {}

    def listen(self, queue: str, wake: Wake | None = None) -> Wake:
        """A wake-up (`wake`, else a new one) set whenever `queue` is woken, until `forget`."""
        wake = wake or Wake()
        self._wakes.setdefault(queue, []).append(wake)
        return wake

    def forget(self, queue: str, wake: Wake) -> None:
        listeners = self._wakes.get(queue, [])
        if wake in listeners:
            listeners.remove(wake)

    def wake(self, *queues: str) -> None:
        """New rows of these queues are committed: their workers in this process look now."""
        for queue in queues:
            for wake in list(self._wakes.get(queue, ())):
                wake.set()


async def forever(step: Step, interval: float, wake: Wake | None = None, *, monitor: LoopMonitor,
                  doing: str = "", backoff: Backoff | None = None) -> NoReturn:
    """Run `step` until cancelled, waiting between turns as it asks (see the module's docstring)."""
    retry = backoff or Backoff(first=min(FIRST_BACKOFF, interval), cap=max(min(interval, MAX_BACKOFF), 0.0))
    while True:
        try:
            delay = await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an outage: logged with its traceback, and tried again
            monitor.failed(exc, doing)
            await asyncio.sleep(retry.next())
            continue
        monitor.ok()
        retry.reset()
        if delay is None:
            if wake is not None:
                await wake.wait(interval)
            else:
                await asyncio.sleep(interval)
        else:
            await asyncio.sleep(delay)  # 0 still lets the rest of the process run between turns


def monitor_of(health: LoopHealth | None, name: str, log: logging.Logger, *, reported: bool = True) -> LoopMonitor:
    """The loop's monitor in `health` (a private one when the worker runs without an application)."""
    return (health or LoopHealth()).loop(name, log, reported=reported)


__all__ = ["AUTO_REPLIES", "CAMPAIGNS", "SLACK_OUTBOX", "WEBHOOKS", "Step", "Wake", "WakeHub", "forever", "monitor_of"]
