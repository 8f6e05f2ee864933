"""Who sent an /onboard link, by name, so the page can say who invited the shop owner."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

LOOKUP_SECONDS = 2.0  # the page must not wait on Slack for long; without a name it still works


async def inviter_name(slack: Any, requested_by: str | None) -> str | None:
    """The Slack real name of the link's creator, or None (made from the command line, or Slack is slow)."""
    if not requested_by or not requested_by.startswith(("U", "W")):
        return None
    try:
        info = await asyncio.wait_for(slack.users_info(user=requested_by), LOOKUP_SECONDS)
    except (SlackApiError, TimeoutError, OSError) as exc:
        log.info("no name for link creator %s: %s", requested_by, exc)
        return None
    user = info.get("user") or {}
    profile = user.get("profile") or {}
    name = profile.get("real_name") or profile.get("display_name") or user.get("real_name") or user.get("name")
    return str(name) if name else None
