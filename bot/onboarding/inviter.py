"""Who sent an /onboard link, by name, so the page can say who invited the shop owner."""

from __future__ import annotations

from typing import Any

from bot.slack.lookup import as_dict, lookup
from bot.slack.names import full_name

LOOKUP_SECONDS = 2.0  # the page must not wait on Slack for long; without a name it still works


async def inviter_name(slack: Any, requested_by: str | None) -> str | None:
    """The Slack real name of the link's creator, or None (made from the command line, or Slack is slow)."""
    if not requested_by or not requested_by.startswith(("U", "W")):
        return None
    info = await lookup(slack.users_info(user=requested_by), f"the name of link creator {requested_by}",
                        within=LOOKUP_SECONDS)
    return full_name(as_dict(info.get("user"))) if info is not None else None
