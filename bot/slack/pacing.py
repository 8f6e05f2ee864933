"""Slack's published rate limits, as pure token buckets (no clock of their own, no I/O).

Slack limits most Web API methods per app, per workspace, per method, in tiers (Tier 2: 20+/min,
Tier 3: 50+/min, Tier 4: 100+/min, occasional bursts tolerated). chat.postMessage is special: about one
message per second *per channel*, short bursts tolerated, plus a workspace-wide ceiling. Calls over a limit
are answered 429 with Retry-After. See https://docs.slack.dev/apis/web-api/rate-limits.

Some workspaces are stricter than documented, so the limits below are where pacing starts, not a promise:
a 429 cuts the rate and burst in use (`cut`), and calls that go through probe back up (`probe`), quickly
below the level last refused and slowly past it. bot.slack.pace_redis runs the same rules in Redis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limit:
    """A sustained rate with a burst allowance; `per_channel` keys it by channel, else by method alone.

    `reserve` slots of the burst are kept for urgent calls: a call that is not urgent goes only when it
    leaves that many in the bucket."""

    per_second: float
    burst: float = 1.0
    per_channel: bool = False
    reserve: float = 0.0


TIER_2 = Limit(20 / 60, 3)
TIER_3 = Limit(50 / 60, 5)
TIER_4 = Limit(100 / 60, 10)

# One post per second per channel, with the smallest burst Slack's "short bursts tolerated" allows (2), and
# that second slot kept for what a person waits for: a progress update or a status note posted a moment ago
# never makes the next customer message wait for the channel's next second. A reply storm still posts one
# per second, so Slack refuses next to nothing.
SLACK_LIMITS: Mapping[str, Limit] = {
    "chat.postMessage": Limit(1.0, 2, per_channel=True, reserve=1.0),
    "chat.update": TIER_3,
    "reactions.add": TIER_3,
    "reactions.remove": TIER_2,
    "conversations.history": TIER_3,
    "conversations.replies": TIER_3,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "files.info": TIER_4,
    "files.delete": TIER_3,
}
"""Defaults per method; methods not listed are not paced (Slack rarely refuses them)."""


def limit_key(method: str, channel: str | None, limit: Limit, workspace: str = "") -> tuple[str, str]:
    """Which bucket a call draws from: (method, channel) for per-channel limits (channel ids are unique across
    workspaces), else (method, workspace): Slack's method tiers count per workspace."""
    return (method, channel or "") if limit.per_channel else (method, f"workspace:{workspace}" if workspace else "")


# ---- learning a stricter limit from 429s -------------------------------------------------------------

CUT = 0.8  # a 429 multiplies the rate by this and takes one off the burst
STEP = 1.1  # each probe multiplies the rate by this (at most back to the documented rate), then adds burst
FLOOR = 0.5  # never below this share of the documented rate: a storm of 429s (each retry after Retry-After
# refused again) cuts once per retry, and a channel left at a tenth of its rate took minutes to climb back
# while customers waited; no workspace has been seen to hold a channel under one post every two seconds.
PROBE_AFTER = 20  # calls through without a 429 before a step up that stays below the level last refused
PROBE_PAST = 300  # ... before a step back to (or past) the level last refused: a strict workspace refuses
# only about one call in that many, and a workspace whose limit was a passing one gets its rate back.


def learns(limit: Limit) -> bool:
    """Whether a 429 lowers this limit's level: only a channel's posting allowance, which some workspaces hold
    tighter than documented. A method tier's 429 pauses for Retry-After and no more: in a storm every retry is
    refused again, and each cut would leave a workspace-wide lookup slower for minutes after it ends."""
    return limit.per_channel


@dataclass(frozen=True)
class Learned:
    """The rate and burst in use for one bucket (or one workspace's channels), and the level last refused."""

    rate: float
    burst: float
    good: int = 0  # calls through since the last change
    ceiling_rate: float = math.inf  # the rate and burst of the last 429 (inf: none since the last probe past it)
    ceiling_burst: float = math.inf

    def at_nominal(self, limit: Limit) -> bool:
        return self.rate >= limit.per_second and self.burst >= limit.burst


def nominal(limit: Limit) -> Learned:
    """Where a bucket starts: the documented rate and burst."""
    return Learned(limit.per_second, limit.burst)


def cut(learned: Learned, limit: Limit) -> Learned:
    """After a 429: a lower rate and a smaller burst, remembering the level that was refused."""
    return Learned(max(limit.per_second * FLOOR, learned.rate * CUT), max(1.0, learned.burst - 1.0), 0,
                   learned.rate, learned.burst)


def probe(learned: Learned, limit: Limit) -> Learned:
    """After one more call went through: the same level, or one step up when enough calls went through."""
    if learned.at_nominal(limit):
        return nominal(limit)
    good = learned.good + 1
    if learned.rate < limit.per_second:
        rate, burst = min(limit.per_second, learned.rate * STEP), learned.burst
    else:
        rate, burst = learned.rate, min(limit.burst, learned.burst + 1.0)
    past = rate >= learned.ceiling_rate and burst >= learned.ceiling_burst
    if good < (PROBE_PAST if past else PROBE_AFTER):
        return replace(learned, good=good)
    if past:  # the level refused before goes through now: forget it
        return Learned(rate, burst)
    return Learned(rate, burst, 0, learned.ceiling_rate, learned.ceiling_burst)


@dataclass
class Bucket:
    """A token bucket: `reserve` takes the next free slot and says how long the caller must wait for it.

    Reservations are granted in the order they are made, so the caller decides who goes first; the bucket
    never refuses, it only spaces calls out.
    """

    limit: Limit
    tokens: float = -1.0  # -1: not used yet (full)
    at: float = 0.0
    paused_until: float = 0.0
    learned: Learned | None = None  # None: the documented limit

    @property
    def rate(self) -> float:
        return self.learned.rate if self.learned is not None else self.limit.per_second

    @property
    def burst(self) -> float:
        return self.learned.burst if self.learned is not None else self.limit.burst

    def _refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
            return
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        self.tokens = min(self.tokens, self.burst)  # a cut burst holds no more than it allows

    def wait(self, now: float, urgent: bool = True) -> float:
        """Seconds until one call may go, without taking it (a call not urgent leaves the reserve)."""
        self._refill(now)
        pause = max(0.0, self.paused_until - now)
        keep = 0.0 if urgent else min(self.limit.reserve, self.burst - 1.0)
        shortfall = max(0.0, 1.0 + keep - self.tokens) / self.rate
        return max(pause, shortfall)

    def take(self, now: float, urgent: bool = True) -> float:
        """Take a slot now if free (0.0); else leave the bucket as it was and return the wait."""
        wait = self.wait(now, urgent)
        if wait > 0:
            return wait
        self.tokens -= 1.0
        return 0.0

    def pause(self, now: float, seconds: float) -> None:
        """Slack said Retry-After: nothing goes until then, and the burst is spent."""
        self._refill(now)
        self.paused_until = max(self.paused_until, now + seconds)
        self.tokens = min(self.tokens, 0.0)
