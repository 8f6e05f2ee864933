"""The per-channel pacer in front of the Slack outbox: calls wait for their slot instead of being refused.

Each call draws from the bucket of its method (and channel, for chat.postMessage; see bot.slack.pacing).
Callers waiting for one bucket in this process are served by priority, then in arrival order, so while a
channel is backed up a customer's message goes before a status reaction or a progress update. A 429's
Retry-After pauses only the bucket that was refused, and lowers its rate and burst until calls going through
show it may climb back (a workspace stricter than Slack documents). The buckets live in Redis when it is
configured (bot.slack.pace_redis: every process shares each channel's allowance), else in this process.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.waits import wait_until
from bot.slack.pace_redis import RedisPaces
from bot.slack.pace_store import Grant, Key, LocalPaces, Paces
from bot.slack.pacing import SLACK_LIMITS, Limit, limit_key

URGENT_BELOW = 2
"""Priorities below this are what a person is waiting to read (bot.slack.outbox_policy.priority_of)."""


@dataclass(frozen=True)
class ChannelBacklog:
    """What waits for one Slack channel in this process, and roughly how long until it has all gone."""

    waiting: int
    wait_seconds: float


class Pacer:
    """Token buckets per Slack method (and channel), with priority queues of waiting callers."""

    def __init__(self, limits: Mapping[str, Limit] = SLACK_LIMITS, paces: Paces | None = None) -> None:
        self.limits = dict(limits)
        self.paces: Paces = paces if paces is not None else LocalPaces()
        self._waiting: dict[Key, list[tuple[int, int, asyncio.Event]]] = {}
        self._seen: dict[Key, tuple[float, Grant]] = {}  # each bucket's last answer, and when
        self._deferred: dict[Key, float] = {}  # when the last call sent away (see `defer`) is due back
        self._seq = itertools.count()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _find(self, method: str, channel: str | None, workspace: str) -> tuple[Key, Limit, Key | None] | None:
        limit = self.limits.get(method)
        if limit is None:
            return None
        # A channel without a 429 of its own paces by what its workspace's channels learned.
        profile = (method, f"workspace:{workspace}") if limit.per_channel else None
        return limit_key(method, channel, limit, workspace), limit, profile

    async def acquire(self, method: str, channel: str | None, priority: int = 0, workspace: str = "") -> None:
        """Wait for this call's slot; lower `priority` numbers go first among those waiting, and only the
        urgent ones (below URGENT_BELOW) may use a bucket's reserve."""
        urgent = priority < URGENT_BELOW
        found = self._find(method, channel, workspace)
        if found is None:
            return
        key, limit, profile = found
        heap = self._waiting.setdefault(key, [])
        entry = (priority, next(self._seq), asyncio.Event())
        heapq.heappush(heap, entry)
        try:
            while True:
                event = entry[2]
                event.clear()
                if heap[0] is entry:
                    grant = await self.paces.take(key, limit, urgent, profile, workspace)
                    self._seen[key] = (self._now(), grant)
                    if grant.wait <= 0:
                        return
                    # Woken early if someone more urgent arrives and takes the head, or a pause changes.
                    await wait_until(event.wait(), grant.wait)
                else:
                    await event.wait()
        finally:
            if entry in heap:
                heap.remove(entry)
                heapq.heapify(heap)
            if heap:
                heap[0][2].set()  # the next in line looks at the bucket now
            else:
                self._waiting.pop(key, None)

    async def pause(self, method: str, channel: str | None, seconds: float, workspace: str = "") -> None:
        """Slack answered 429 with Retry-After: hold this method (on this channel, or in this workspace) for
        `seconds`, and pace it more slowly for a while."""
        found = self._find(method, channel, workspace)
        if found is None:
            return
        key, limit, profile = found
        await self.paces.refused(key, limit, seconds, profile, workspace)
        seen = self._seen.get(key)
        rate, burst = (seen[1].rate, seen[1].burst) if seen is not None else (limit.per_second, limit.burst)
        self._seen[key] = (self._now(), Grant(seconds, seconds, rate, burst))

    def paused_for(self, method: str, channel: str | None, workspace: str = "") -> float:
        """Seconds left of a Retry-After pause on this method (and channel or workspace), as last seen here."""
        found = self._find(method, channel, workspace)
        seen = self._seen.get(found[0]) if found is not None else None
        return max(0.0, seen[1].paused - (self._now() - seen[0])) if seen is not None else 0.0

    def ahead(self, method: str, channel: str | None, priority: int = 0, workspace: str = "") -> float:
        """Seconds until a new call of this priority would get its slot, as this process sees it: the bucket's
        wait when last asked, and one slot for each caller here that would go first."""
        found = self._find(method, channel, workspace)
        if found is None:
            return 0.0
        key, limit, _ = found
        first = sum(1 for waiting in self._waiting.get(key, ()) if waiting[0] <= priority)
        seen = self._seen.get(key)
        wait, rate = ((max(0.0, seen[1].wait - (self._now() - seen[0])), seen[1].rate) if seen is not None
                      else (0.0, limit.per_second))
        return wait + first / rate

    def defer(self, method: str, channel: str | None, priority: int = 0, workspace: str = "") -> float:
        """Seconds until a call that will not wait here now should come back: after the calls ahead of it and
        after those sent away before it, one slot apart, so that calls sent away return about at their turn
        rather than all at once."""
        found = self._find(method, channel, workspace)
        if found is None:
            return 0.0
        key, limit, _ = found
        now = self._now()
        seen = self._seen.get(key)
        rate = seen[1].rate if seen is not None else limit.per_second
        due = max(now + self.ahead(method, channel, priority, workspace), self._deferred.get(key, 0.0) + 1.0 / rate)
        self._deferred[key] = due
        for other in [k for k, at in self._deferred.items() if at < now]:  # those due back already
            del self._deferred[other]
        return due - now

    def backlog(self) -> dict[str, ChannelBacklog]:
        """Callers waiting for chat.postMessage per channel, and how long until the last of them may go."""
        now = self._now()
        out: dict[str, ChannelBacklog] = {}
        for key, heap in self._waiting.items():
            method, channel = key
            if method != "chat.postMessage" or not channel or not heap:
                continue
            seen = self._seen.get(key)
            ahead, rate = ((max(0.0, seen[1].wait - (now - seen[0])), seen[1].rate) if seen is not None
                           else (0.0, self.limits[method].per_second))
            out[channel] = ChannelBacklog(len(heap), ahead + (len(heap) - 1) / rate)
        return out


def make_pacer(redis: Any = None, limits: Mapping[str, Limit] = SLACK_LIMITS) -> Pacer:
    """This process's pacer: buckets in Redis (shared by every process) when a client is given."""
    return Pacer(limits, RedisPaces(redis) if redis is not None else None)
