"""`/wabridge settings`: a manager sees the hours, away messages and surveys of their workspace's numbers.

They are set in app.yaml (not stored per workspace in the database), so the answer is read-only, private to
the person, and says where to change them. Only managers (`slack.campaign_managers`, or the workspace's own
list) see it, and only their workspace's numbers: naming another workspace's number is refused and logged.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.core.config import ChannelSettings
from bot.core.workspace import DEFAULT_WORKSPACE, in_scope, request_scope
from bot.deps import Deps
from bot.ops.settings_view import settings_blocks
from bot.slack.permissions import UNCHECKED, MembershipUnknown, Permissions
from storage.models import utcnow

log = logging.getLogger(__name__)

REFUSED = ("Only managers (`slack.campaign_managers` in app.yaml) see this workspace's hours, away messages and "
           "surveys.")
NO_NUMBERS = "This workspace has no WhatsApp numbers yet (`channels:` in app.yaml)."


def _named(channel: ChannelSettings, name: str) -> bool:
    digits = "".join(ch for ch in name if ch.isdigit())
    shown = "".join(ch for ch in channel.display_phone_number if ch.isdigit())
    return name.lower() == channel.name.lower() or name == channel.phone_number_id or bool(digits and digits == shown)


async def on_settings(deps: Deps, permissions: Permissions, ack: Any, body: dict[str, Any], name: str) -> None:
    """Answer `/wabridge settings [NUMBER]` (name, phone number id or phone number) privately."""
    user = str(body.get("user_id") or "")
    try:
        manager = await permissions.is_manager(user)
    except MembershipUnknown:
        await ack(text=UNCHECKED)
        return
    if not manager:
        log.info("/wabridge settings refused to %s: not a manager", user)
        await ack(text=REFUSED)
        return
    scope = request_scope()
    workspace = scope.workspace if scope is not None else DEFAULT_WORKSPACE
    settings = deps.settings
    numbers = [c for c in settings.channels if settings.workspace_of(c) == workspace]
    if name:
        named = [c for c in settings.channels if _named(c, name)]
        mine = [c for c in named if c in numbers]
        if not mine:
            for other in named:  # another workspace's number: refused (and logged)
                in_scope(settings.workspace_of(other), f"number {other.name}")
            await ack(text=f"No number called {name!r} in this workspace; `/wabridge settings` lists them all.")
            return
        numbers = mine
    if not numbers:
        await ack(text=NO_NUMBERS)
        return
    blocks = settings_blocks(settings, numbers, utcnow())
    await ack(text="Hours, away messages and surveys (set in app.yaml)", blocks=blocks, response_type="ephemeral")
