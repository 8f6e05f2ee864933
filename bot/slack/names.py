"""Names for the user, user-group and channel ids in Slack markup, looked up through Slack's Web API.

Looked-up names go into the application's `NameCache` (on `Deps`), so a reply costs a `users.info` call
only the first time within the cache's ttl. A lookup that fails leaves that id unnamed in that one message
(the converter then says the text differs); it is tried again next time. Lookups go through
`bot.slack.lookup`: a few seconds at most, and a failure only leaves the id unnamed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.name_cache import NameCache
from bot.slack.lookup import as_dict, as_list, lookup
from bot.slack.to_whatsapp import Names, References


def user_name(user: Mapping[str, Any]) -> str | None:
    """The name Slack shows for a user: display name, else real name, else the account name."""
    profile = as_dict(user.get("profile"))
    for value in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


async def resolve_names(slack: AsyncWebClient, cache: NameCache, refs: References) -> Names:
    """Names for every id in refs that Slack can name, from the cache or looked up (at once) and cached."""
    groups = [_load_groups(slack, cache)] if any(g not in cache.groups for g in refs.groups) else []
    await asyncio.gather(*(_user(slack, cache, u) for u in refs.users if u not in cache.users),
                         *(_channel(slack, cache, c) for c in refs.channels if c not in cache.channels), *groups)
    return Names(users=_known(cache.users, refs.users), groups=_known(cache.groups, refs.groups),
                 channels=_known(cache.channels, refs.channels))


def full_name(user: Mapping[str, Any]) -> str | None:
    """The name a report shows: real name, else display name, else the account name."""
    profile = as_dict(user.get("profile"))
    for value in (profile.get("real_name"), user.get("real_name"), profile.get("display_name"), user.get("name")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


async def _user(slack: AsyncWebClient, cache: NameCache, user_id: str,
                naming: Callable[[Mapping[str, Any]], str | None] = user_name) -> None:
    resp = await lookup(slack.users_info(user=user_id), f"the name of user {user_id}")
    name = naming(as_dict(resp.get("user"))) if resp is not None else None
    if name:
        cache.users[user_id] = name


async def _channel(slack: AsyncWebClient, cache: NameCache, channel_id: str) -> None:
    resp = await lookup(slack.conversations_info(channel=channel_id), f"the name of channel {channel_id}")
    name = as_dict(resp.get("channel")).get("name") if resp is not None else None
    if isinstance(name, str) and name:
        cache.channels[channel_id] = name


async def _load_groups(slack: AsyncWebClient, cache: NameCache) -> None:
    # One call names every group; usergroups.info does not exist.
    resp = await lookup(slack.usergroups_list(include_disabled=False), "the names of user groups")
    for group in as_list(resp.get("usergroups")) if resp is not None else []:
        group = as_dict(group)
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
