"""Which way a message went and who sent it: stored with every message (`messages.direction`, `.source`).

Only customer messages (INBOUND/CUSTOMER) open or extend the 24-hour window; echoes (OUTBOUND/PHONE_APP) never do.
Stored as their values ("inbound", "phone_app", …) in plain strings columns, as they always were.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Source(StrEnum):
    CUSTOMER = "customer"  # the customer wrote it (always INBOUND)
    PHONE_APP = "phone_app"  # sent from the WhatsApp Business app on the phone (an echo)
    SLACK = "slack"  # a staff reply from Slack, with its Slack user
    CAMPAIGN = "campaign"
    API = "api"
    BRIDGE = "bridge"  # sent by Wabridge on its own: an away message, a satisfaction survey


__all__ = ["Direction", "Source"]
