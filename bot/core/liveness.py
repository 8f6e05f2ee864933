"""When a process counts as gone, and the token that fences off what it claimed: pure rules, no I/O.

Every `serve` process writes a heartbeat row about once a second. Work it claimed (webhook deliveries, Slack
posts, campaign recipients) carries its worker id and a per-claim fence number. Another process may take the
work over once the owner has been silent for ``SILENCE``; the take-over bumps the fence, so anything the
first process tries to settle afterwards (it was only paused, say, and woke up) matches no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

HEARTBEAT_INTERVAL = 1.0  # seconds between two heartbeats of one process
# Five missed heartbeats: long enough to ride out a slow commit or a GC pause, short enough that a dead
# process's customers wait seconds, not the minutes a fixed lease costs.
SILENCE = timedelta(seconds=5)


@dataclass(frozen=True)
class Fence:
    """Who holds a claim, and which claim: settle statements match both or change nothing."""

    owner: int
    token: int


def is_silent(heartbeat_at: datetime | None, stopped_at: datetime | None, now: datetime,
              silence: timedelta = SILENCE) -> bool:
    """True when a process's work may be taken over: it stopped, or its last heartbeat is too old."""
    if stopped_at is not None:
        return True
    if heartbeat_at is None:
        return True
    return now - heartbeat_at > silence


def still_trusted(last_beat_ok: datetime | None, now: datetime, silence: timedelta = SILENCE) -> bool:
    """Whether a process may still believe it owns its claims: its own heartbeat went in recently enough
    that nobody else can have judged it silent. Half the silence leaves room for clock drift between hosts."""
    return last_beat_ok is not None and now - last_beat_ok < silence / 2
