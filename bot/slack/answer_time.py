"""When a Slack request must be answered: Slack waits 3 seconds, and bolt counts them from its dispatch.

`slack_events` notes the request's arrival in bolt's context; a listener that waits for slow work before
answering (a modal waiting for Meta) budgets from that moment, not from its own start, so the checks it made
first (database, a membership lookup in Slack) are not counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from typing import Any

RECEIVED_AT = "wabridge_received_at"  # bolt context key: the request's arrival, on the monotonic clock


def note_arrival(context: MutableMapping[str, Any], at: float) -> None:
    """Keep the request's arrival (time.monotonic()) in its bolt context."""
    context[RECEIVED_AT] = at


def answer_by(context: object, budget: float) -> float:
    """The monotonic time budget seconds after the request arrived; after now when its arrival is not known
    (Socket Mode, a test calling the listener directly)."""
    received = context.get(RECEIVED_AT) if isinstance(context, Mapping) else None
    return (received if isinstance(received, float) else time.monotonic()) + budget
