"""Who may send templates, opt customers out or in, and export threads from Slack (`slack.permissions`).

Channel membership and user-group membership come from Slack and are cached for a minute, so a burst of
clicks costs one lookup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from functools import partial

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import Role, SlackSettings

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0


class Action(StrEnum):
    SEND_TEMPLATES = "send_templates"
    OPT_OUT = "opt_out"
    EXPORT = "export"


_DOING = {Action.SEND_TEMPLATES: "send templates", Action.OPT_OUT: "opt customers out or in",
          Action.EXPORT: "export threads"}
_WHO = {Role.CHANNEL_MEMBERS: "members of this channel", Role.CAMPAIGN_MANAGERS: "campaign managers"}


def refusal(action: Action, role: Role) -> str:
    """What a refused person is told."""
    return f":no_entry: Only {_WHO.get(role, 'some people')} may {_DOING[action]} here."


class _TimedSets:
    """Named sets of user ids read from Slack, each kept for CACHE_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sets: dict[str, tuple[float, frozenset[str]]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[frozenset[str]]]) -> frozenset[str]:
        cached = self._sets.get(key)
        if cached is not None and self._clock() - cached[0] < CACHE_SECONDS:
            return cached[1]
        value = await load()
        self._sets[key] = (self._clock(), value)
        return value


class Permissions:
    """Answers 'may this user do this in this channel' from the configured roles."""

    def __init__(self, slack: SlackSettings, client: AsyncWebClient) -> None:
        self._settings = slack
        self._client = client
        self._cache = _TimedSets()

    def role(self, action: Action) -> Role:
        return Role(getattr(self._settings.permissions, action.value))

    async def allows(self, action: Action, user: str, channel: str) -> bool:
        role = self.role(action)
        if role is Role.ANYONE:
            return True
        if not user:
            return False
        if role is Role.CHANNEL_MEMBERS:
            return user in await self._cache.get(f"channel:{channel}", lambda: self._channel_members(channel))
        return await self.is_manager(user)

    async def is_manager(self, user: str) -> bool:
        managers = self._settings.campaign_managers
        if user in managers:
            return True
        for group in (g for g in managers if g.startswith("S")):
            if user in await self._cache.get(f"group:{group}", partial(self._group_members, group)):
                return True
        return False

    async def _channel_members(self, channel: str) -> frozenset[str]:
        members: set[str] = set()
        cursor = ""
        try:
            while True:
                resp = await self._client.conversations_members(channel=channel, limit=1000, cursor=cursor or None)
                members.update(str(m) for m in resp.get("members") or [])
                cursor = str((resp.get("response_metadata") or {}).get("next_cursor") or "")
                if not cursor:
                    return frozenset(members)
        except SlackApiError as exc:
            log.warning("cannot read the members of %s: %s", channel, exc.response.get("error"))
            return frozenset()

    async def _group_members(self, group: str) -> frozenset[str]:
        try:
            resp = await self._client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            log.warning("cannot read user group %s: %s", group, exc.response.get("error"))
            return frozenset()
        return frozenset(str(u) for u in resp.get("users") or [])
