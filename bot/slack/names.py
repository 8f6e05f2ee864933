"""Names for the user, user-group and channel ids in Slack markup, looked up through Slack's Web API.

Looked-up names go into the application's `NameCache` (on `Deps`), so a reply costs a `users.info` call
only the first time within the cache's ttl. A lookup that fails leaves that id unnamed in that one message
(the converter then says the text differs); it is tried again next time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.name_cache import NameCache
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


async def resolve_names(slack: AsyncWebClient, cache: NameCache, refs: References) -> Names:
    """Names for every id in refs that Slack can name, from the cache or looked up and cached."""
    await asyncio.gather(*(_user(slack, cache, u) for u in refs.users if u not in cache.users),
                         *(_channel(slack, cache, c) for c in refs.channels if c not in cache.channels))
    if any(g not in cache.groups for g in refs.groups):
        await _load_groups(slack, cache)
    return Names(users=_known(cache.users, refs.users), groups=_known(cache.groups, refs.groups),
                 channels=_known(cache.channels, refs.channels))


def full_name(user: Mapping[str, Any]) -> str | None:
    """The name a report shows: real name, else display name, else the account name."""
    profile = user.get("profile") or {}
    for value in (profile.get("real_name"), user.get("real_name"), profile.get("display_name"), user.get("name")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


async def _user(slack: AsyncWebClient, cache: NameCache, user_id: str,
                naming: Callable[[Mapping[str, Any]], str | None] = user_name) -> None:
    try:
        resp = await slack.users_info(user=user_id)
    except _LOOKUP_ERRORS as exc:
        log.info("no name for Slack user %s: %s", user_id, _why(exc))
        return
    name = naming(resp.get("user") or {})
    if name:
        cache.users[user_id] = name


async def _channel(slack: AsyncWebClient, cache: NameCache, channel_id: str) -> None:
    try:
        resp = await slack.conversations_info(channel=channel_id)
    except _LOOKUP_ERRORS as exc:
        log.info("no name for Slack channel %s: %s", channel_id, _why(exc))
        return
    name = (resp.get("channel") or {}).get("name")
    if isinstance(name, str) and name:
        cache.channels[channel_id] = name


async def _load_groups(slack: AsyncWebClient, cache: NameCache) -> None:
    # One call names every group; usergroups.info does not exist.
    try:
        resp = await slack.usergroups_list(include_disabled=False)
    except _LOOKUP_ERRORS as exc:
        log.info("no names for Slack user groups: %s", _why(exc))
        return
    for group in resp.get("usergroups") or []:
        handle = group.get("handle") or group.get("name")
        if group.get("id") and isinstance(handle, str) and handle:
            cache.groups[str(group["id"])] = handle


class UserNames:
    """Slack users' full names for figures and reports, cached per holder (apart from the reply path's
    cache, which keeps the names people mention each other by)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._cache = NameCache()

    async def of(self, users: Iterable[str]) -> dict[str, str]:
        """Names of the user ids Slack can name; the others are left out (callers show the id)."""
        wanted = [u for u in dict.fromkeys(users) if u.startswith(("U", "W"))]
        await asyncio.gather(*(_user(self._client, self._cache, u, full_name)
                               for u in wanted if u not in self._cache.users))
        return _known(self._cache.users, frozenset(wanted))


def _known(cache: Mapping[str, str], ids: frozenset[str]) -> dict[str, str]:
    return {i: cache[i] for i in ids if i in cache}


def _why(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error"))
    return type(exc).__name__
