"""Names for the user, user-group and channel ids in Slack markup, looked up through Slack and kept a while.

One `SlackNames` per application (held on `Deps`): staff mention the same few people again and again, so a
reply costs a `users.info` call only the first time within `ttl`. A lookup that fails leaves that id
unnamed in that one message (the converter then says the text differs); it is tried again next time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.to_whatsapp import Names, References

log = logging.getLogger(__name__)

_LOOKUP_ERRORS = (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError)


def user_name(user: Mapping[str, Any]) -> str | None:
    """The name Slack shows for a user: display name, else real name, else the account name."""
    profile = user.get("profile") or {}
    for value in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


class SlackNames:
    """A per-application cache of Slack names, filled on demand."""

    def __init__(self, *, ttl: float = 3600.0, maxsize: int = 10_000) -> None:
        self._users: TTLCache[str, str] = TTLCache(maxsize, ttl)
        self._channels: TTLCache[str, str] = TTLCache(maxsize, ttl)
        self._groups: TTLCache[str, str] = TTLCache(maxsize, ttl)

    async def resolve(self, slack: AsyncWebClient, refs: References) -> Names:
        """Names for every id in refs that Slack can name."""
        missing_users = [u for u in refs.users if u not in self._users]
        missing_channels = [c for c in refs.channels if c not in self._channels]
        await asyncio.gather(*(self._user(slack, u) for u in missing_users),
                             *(self._channel(slack, c) for c in missing_channels))
        if any(g not in self._groups for g in refs.groups):
            await self._load_groups(slack)
        return Names(users=_known(self._users, refs.users), groups=_known(self._groups, refs.groups),
                     channels=_known(self._channels, refs.channels))

    async def _user(self, slack: AsyncWebClient, user_id: str) -> None:
        try:
            resp = await slack.users_info(user=user_id)
        except _LOOKUP_ERRORS as exc:
            log.info("no name for Slack user %s: %s", user_id, _why(exc))
            return
        name = user_name(resp.get("user") or {})
        if name:
            self._users[user_id] = name

    async def _channel(self, slack: AsyncWebClient, channel_id: str) -> None:
        try:
            resp = await slack.conversations_info(channel=channel_id)
        except _LOOKUP_ERRORS as exc:
            log.info("no name for Slack channel %s: %s", channel_id, _why(exc))
            return
        name = (resp.get("channel") or {}).get("name")
        if isinstance(name, str) and name:
            self._channels[channel_id] = name

    async def _load_groups(self, slack: AsyncWebClient) -> None:
        try:
            resp = await slack.usergroups_list(include_disabled=False)
        except _LOOKUP_ERRORS as exc:
            log.info("no names for Slack user groups: %s", _why(exc))
            return
        for group in resp.get("usergroups") or []:
            handle = group.get("handle") or group.get("name")
            if group.get("id") and isinstance(handle, str) and handle:
                self._groups[str(group["id"])] = handle


def _known(cache: Mapping[str, str], ids: frozenset[str]) -> dict[str, str]:
    return {i: cache[i] for i in ids if i in cache}


def _why(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error"))
    return type(exc).__name__
