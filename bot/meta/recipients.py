"""How a send names who gets it: a phone number in `to`, a business-scoped user id in `recipient`
(Cloud API, "Business-scoped user IDs"), a group's id in `to` with `recipient_type: group` (Groups API)."""

from __future__ import annotations

GROUP_PREFIX = "group:"  # how a group's contact id reads (bot.bridge.group_events)


def address_of(to: str) -> dict[str, str]:
    """The send payload's addressing fields for a contact id."""
    if to.startswith(GROUP_PREFIX):
        return {"recipient_type": "group", "to": to.removeprefix(GROUP_PREFIX)}
    return {"recipient_type": "individual", ("recipient" if any(ch.isalpha() for ch in to) else "to"): to}
