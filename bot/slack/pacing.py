"""Slack's published rate limits, as pure token buckets (no clock of their own, no I/O).

Slack limits most Web API methods per app, per workspace, per method, in tiers (Tier 2: 20+/min,
Tier 3: 50+/min, Tier 4: 100+/min, occasional bursts tolerated). chat.postMessage is special: about one
message per second *per channel*, short bursts tolerated, plus a workspace-wide ceiling. Calls over a limit
are answered 429 with Retry-After. See https://docs.slack.dev/apis/web-api/rate-limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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
}
"""Defaults per method; methods not listed are not paced (Slack rarely refuses them)."""


def limit_key(method: str, channel: str | None, limit: Limit, workspace: str = "") -> tuple[str, str]:
    """Which bucket a call draws from: (method, channel) for per-channel limits (channel ids are unique across
    workspaces), else (method, workspace): Slack's method tiers count per workspace."""
    return (method, channel or "") if limit.per_channel else (method, f"workspace:{workspace}" if workspace else "")


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

    def _refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens, self.at = self.limit.burst, now
            return
        if now > self.at:
            self.tokens = min(self.limit.burst, self.tokens + (now - self.at) * self.limit.per_second)
            self.at = now

    def wait(self, now: float, urgent: bool = True) -> float:
        """Seconds until one call may go, without taking it (a call not urgent leaves the reserve)."""
        self._refill(now)
        pause = max(0.0, self.paused_until - now)
        keep = 0.0 if urgent else min(self.limit.reserve, self.limit.burst - 1.0)
        shortfall = max(0.0, 1.0 + keep - self.tokens) / self.limit.per_second
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
