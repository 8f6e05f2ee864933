"""What an outbox handler raises to say how its item went, and where a conversation lives in Slack."""

from __future__ import annotations

from dataclasses import dataclass


class Retry(Exception):
    """Try the item again later: after `delay` seconds (None: exponential backoff)."""

    def __init__(self, reason: str, *, delay: float | None = None, uncertain: bool = False) -> None:
        super().__init__(reason)
        self.delay = delay
        self.uncertain = uncertain


class Deferred(Retry):
    """Not a failure: the item's Slack call is seconds from its turn, and it waits at the table, not in a slot."""


class GiveUp(Exception):
    """The item can never be delivered (e.g. Slack rejects its content); it is closed with the reason."""


class SlackCallFailed(Exception):
    """A Slack answer `{"ok": false, "error": …}` that is neither transient nor a rate limit."""

    def __init__(self, error: str, method: str) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error
        self.method = method


@dataclass(frozen=True)
class Thread:
    """Where a conversation lives in Slack."""

    channel: str
    ts: str


__all__ = ["Deferred", "GiveUp", "Retry", "SlackCallFailed", "Thread"]
