"""What can go wrong on Slack's side, queued by a test: 429s, errors, outages, lost and broken answers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# What a proxy or a failing Slack edge answers instead of Slack's JSON: a plain-text 503, a JSON content type
# with a body that is not JSON, or no answer at all (the connection stays open until the caller gives up).
BROKEN_ANSWERS = ("text_503", "invalid_json", "hang")


@dataclass
class Limit:
    """Slack's per-channel allowance for one method: `per_second` sustained, `burst` at once."""

    per_second: float
    burst: float
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> (tokens, at)

    def take(self, channel: str, now: float) -> float:
        """0 when the call may go ahead (and is counted), else the seconds until it would."""
        tokens, at = self.buckets.get(channel, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        if tokens >= 1.0:
            self.buckets[channel] = (tokens - 1.0, now)
            return 0.0
        self.buckets[channel] = (tokens, now)
        return (1.0 - tokens) / self.per_second


@dataclass
class Faults:
    """The faults queued per method, and the outage switch."""

    rate_limited: dict[str, list[float]] = field(default_factory=dict)  # method -> retry_after per call
    errors: dict[str, list[str]] = field(default_factory=dict)  # method -> queued errors
    down_until: float | None = None
    down: bool = False
    lost_answers: dict[str, int] = field(default_factory=dict)  # method -> calls whose answer is lost
    broken: dict[str, list[str]] = field(default_factory=dict)  # method -> queued broken answers (BROKEN_ANSWERS)
    broken_always: dict[str, str] = field(default_factory=dict)  # method -> broken answer until mended
    limits: dict[str, Limit] = field(default_factory=dict)  # method -> per-channel allowance

    def is_down(self) -> bool:
        """True during an outage (a timed one ends by itself)."""
        if self.down_until is not None and time.monotonic() >= self.down_until:
            self.down_until = None
        return self.down or self.down_until is not None

    def next_broken(self, method: str) -> str | None:
        """The broken answer the next call of `method` gets, if any (one of BROKEN_ANSWERS)."""
        queued = self.broken.get(method)
        return queued.pop(0) if queued else self.broken_always.get(method)
