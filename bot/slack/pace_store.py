"""Where the pacer's buckets live: in this process (`LocalPaces`), or in Redis for every process
(bot.slack.pace_redis). Both apply the rules of bot.slack.pacing: token buckets, Retry-After pauses and the
rate and burst learned from 429s, per channel and per workspace."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from bot.slack.pacing import Bucket, Learned, Limit, cut, learns, nominal, probe

Key = tuple[str, str]


@dataclass(frozen=True)
class Grant:
    """A bucket's answer: `wait` 0.0 when the call may go now (its slot is taken), else seconds to wait;
    `paused` seconds left of a Retry-After; the rate and burst in use."""

    wait: float
    paused: float
    rate: float
    burst: float


class Paces(Protocol):
    """Token buckets keyed by (method, channel or workspace), with what each learned from 429s.

    `profile`: the key of what the workspace's channels learned together (per-channel limits only); a
    channel without a 429 of its own paces by it, so one channel's 429 spares the others theirs."""

    async def take(self, key: Key, limit: Limit, urgent: bool, profile: Key | None, workspace: str = "") -> Grant:
        """Take one slot now if free; else say how long to wait (nothing taken)."""
        ...

    async def refused(self, key: Key, limit: Limit, seconds: float, profile: Key | None,
                      workspace: str = "") -> None:
        """Slack answered 429 with Retry-After `seconds`: pause the bucket and learn a lower limit."""
        ...


class LocalPaces:
    """The buckets of this process alone (no Redis, or while Redis does not answer)."""

    def __init__(self) -> None:
        self._buckets: dict[Key, Bucket] = {}
        self._own: set[Key] = set()  # buckets that learned from a 429 of their own
        self._profiles: dict[Key, Learned] = {}

    def bucket(self, key: Key, limit: Limit) -> Bucket:
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = Bucket(limit)
        return found

    def _follow(self, key: Key, bucket: Bucket, profile: Key | None) -> None:
        if key not in self._own:
            bucket.learned = self._profiles.get(profile) if profile is not None else None

    def take_at(self, now: float, key: Key, limit: Limit, urgent: bool, profile: Key | None) -> Grant:
        """`take` on an explicit clock (seconds)."""
        bucket = self.bucket(key, limit)
        self._follow(key, bucket, profile)
        wait = bucket.take(now, urgent)
        grant = Grant(wait, max(0.0, bucket.paused_until - now), bucket.rate, bucket.burst)
        if wait > 0:
            return grant
        if key in self._own:
            bucket.learned = probe(bucket.learned or nominal(limit), limit)
            if bucket.learned.at_nominal(limit):  # back where it started: follow the workspace again
                bucket.learned = None
                self._own.discard(key)
        elif profile is not None and profile in self._profiles:
            learned = probe(self._profiles[profile], limit)
            if learned.at_nominal(limit):
                del self._profiles[profile]
            else:
                self._profiles[profile] = learned
        return grant

    def refused_at(self, now: float, key: Key, limit: Limit, seconds: float, profile: Key | None) -> None:
        """`refused` on an explicit clock (seconds)."""
        bucket = self.bucket(key, limit)
        self._follow(key, bucket, profile)
        # Calls granted before the first 429 came back are refused too: one cut per pause, not one per call.
        learn = bucket.paused_until <= now and learns(limit)
        bucket.pause(now, seconds)
        if not learn:
            return
        bucket.learned = cut(bucket.learned or nominal(limit), limit)
        self._own.add(key)
        if profile is not None:
            known = self._profiles.get(profile) or nominal(limit)
            if bucket.learned.rate < known.rate or bucket.learned.burst < known.burst:
                self._profiles[profile] = bucket.learned

    async def take(self, key: Key, limit: Limit, urgent: bool, profile: Key | None, workspace: str = "") -> Grant:
        return self.take_at(_now(), key, limit, urgent, profile)

    async def refused(self, key: Key, limit: Limit, seconds: float, profile: Key | None,
                      workspace: str = "") -> None:
        self.refused_at(_now(), key, limit, seconds, profile)


def _now() -> float:
    return asyncio.get_running_loop().time()
