"""Which lane a stored delivery travels in, decided from its event type when it is stored.

Anything a person sees in a Slack thread (customer messages, echoes from the phone) is `live` and is always
claimed before the `bulk` lane (statuses, history, state syncs, template and account updates), so a status
storm from a campaign never queues in front of a customer.
"""

from __future__ import annotations

from typing import Final, Literal

Lane = Literal["live", "bulk"]

LIVE: Final = "live"
BULK: Final = "bulk"
LANES: Final[tuple[Lane, Lane]] = ("live", "bulk")

# "mixed" deliveries may carry a customer message next to statuses: the message must not wait.
_LIVE_EVENT_TYPES: Final = frozenset({"message", "smb_message_echo", "mixed"})


def lane_for(event_type: str) -> Lane:
    """The lane of a delivery whose webhook_logs.event_type is event_type."""
    return "live" if event_type in _LIVE_EVENT_TYPES else "bulk"
