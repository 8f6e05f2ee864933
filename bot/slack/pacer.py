"""The per-channel pacer in front of the Slack outbox: calls wait for their slot instead of being refused.

Each call draws from the bucket of its method (and channel, for chat.postMessage; see bot.slack.pacing).
Callers waiting for one bucket are served by priority, then in arrival order, so while a channel is
backed up a customer's message goes before a status reaction or a progress update. A 429's Retry-After
pauses only the bucket that was refused: other channels keep going. Pacing is per process; several
processes posting into one channel share Slack's allowance, and the rare 429 that follows is honoured.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.waits import wait_until
from bot.slack.pacing import SLACK_LIMITS, Bucket, Limit, limit_key

Key = tuple[str, str]

URGENT_BELOW = 2
"""Priorities below this are what a person is waiting to read (bot.slack.outbox_policy.priority_of)."""


@dataclass(frozen=True)
class ChannelBacklog:
    """What waits for one Slack channel in this process, and roughly how long until it has all gone."""

    waiting: int
    wait_seconds: float


class Pacer:
    """Token buckets per Slack method (and channel), with priority queues of waiting callers."""

    def __init__(self, limits: Mapping[str, Limit] = SLACK_LIMITS) -> None:
        self.limits = dict(limits)
        self._buckets: dict[Key, Bucket] = {}
        self._waiting: dict[Key, list[tuple[int, int, asyncio.Event]]] = {}
        self._seq = itertools.count()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _bucket(self, method: str, channel: str | None, workspace: str = "") -> tuple[Key, Bucket] | None:
        limit = self.limits.get(method)
        if limit is None:
            return None
        key = limit_key(method, channel, limit, workspace)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(limit)
        return key, bucket

    async def acquire(self, method: str, channel: str | None, priority: int = 0, workspace: str = "") -> None:
        """Wait for this call's slot; lower `priority` numbers go first among those waiting, and only the
        urgent ones (below URGENT_BELOW) may use a bucket's reserve."""
        urgent = priority < URGENT_BELOW
        found = self._bucket(method, channel, workspace)
        if found is None:
            return
        key, bucket = found
        heap = self._waiting.setdefault(key, [])
        entry = (priority, next(self._seq), asyncio.Event())
        heapq.heappush(heap, entry)
        try:
            while True:
                event = entry[2]
                event.clear()
                if heap[0] is entry:
                    wait = bucket.take(self._now(), urgent)
                    if wait <= 0:
                        heapq.heappop(heap)
                        return
                    # Woken early if someone more urgent arrives and takes the head, or a pause changes.
                    await wait_until(event.wait(), wait)
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

    def pause(self, method: str, channel: str | None, seconds: float, workspace: str = "") -> None:
        """Slack answered 429 with Retry-After: hold this method (on this channel, or in this workspace) for
        `seconds`."""
        found = self._bucket(method, channel, workspace)
        if found is not None:
            found[1].pause(self._now(), seconds)

    def paused_for(self, method: str, channel: str | None, workspace: str = "") -> float:
        """Seconds left of a Retry-After pause on this method (and channel or workspace); 0 when not paused."""
        limit = self.limits.get(method)
        bucket = self._buckets.get(limit_key(method, channel, limit, workspace)) if limit is not None else None
        return max(0.0, bucket.paused_until - self._now()) if bucket is not None else 0.0

    def backlog(self) -> dict[str, ChannelBacklog]:
        """Callers waiting for chat.postMessage per channel, and how long until the last of them may go."""
        now = self._now()
        out: dict[str, ChannelBacklog] = {}
        for (method, channel), heap in self._waiting.items():
            if method != "chat.postMessage" or not channel or not heap:
                continue
            bucket = self._buckets[(method, channel)]
            seconds = bucket.wait(now) + (len(heap) - 1) / bucket.limit.per_second
            out[channel] = ChannelBacklog(len(heap), seconds)
        return out
