"""Who may send templates, opt customers out or in, export threads, and manage campaigns from Slack.

Channel membership and user-group membership come from Slack and are kept for a minute, so a burst of
clicks costs one lookup. A lookup that fails (a 429, a proxy's 503, a hang) is never kept as an answer: the
last answer Slack gave is used instead, and without one `MembershipUnknown` says nobody can tell yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from functools import partial

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import Role, SlackSettings
from bot.core.workspace import request_scope
from bot.slack.lookup import as_dict, as_list, lookup

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
STALE_SECONDS = 24 * 3600.0  # how old an answer may be to stand in while Slack does not answer


class Action(StrEnum):
    SEND_TEMPLATES = "send_templates"
    OPT_OUT = "opt_out"
    EXPORT = "export"
    INBOX = "inbox"  # take, assign, resolve, reopen conversations (and be assigned one)


class MembershipUnknown(Exception):
    """Slack did not say who is in a channel or user group, and no earlier answer is at hand."""


_DOING = {Action.SEND_TEMPLATES: "send templates", Action.OPT_OUT: "opt customers out or in",
          Action.EXPORT: "export threads", Action.INBOX: "take, assign, resolve or reopen conversations"}
_WHO = {Role.CHANNEL_MEMBERS: "members of this channel", Role.CAMPAIGN_MANAGERS: "campaign managers"}
UNCHECKED = (":hourglass_flowing_sand: Slack did not answer in time whether you may do this, so nothing was done. "
             "Try again in a moment.")


def refusal(action: Action, role: Role) -> str:
    """What a refused person is told."""
    return f":no_entry: Only {_WHO.get(role, 'some people')} may {_DOING[action]} here."


class _TimedSets:
    """Named sets of user ids read from Slack, each fresh for CACHE_SECONDS; a failed read keeps nothing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sets: dict[str, tuple[float, frozenset[str]]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[frozenset[str] | None]]) -> frozenset[str]:
        cached = self._sets.get(key)
        age = self._clock() - cached[0] if cached is not None else None
        if cached is not None and age is not None and age < CACHE_SECONDS:
            return cached[1]
        value = await load()
        if value is not None:
            self._sets[key] = (self._clock(), value)
            return value
        if cached is not None and age is not None and age < STALE_SECONDS:
            log.info("Slack did not say who is in %s; using its answer from %.0f s ago", key, age)
            return cached[1]
        raise MembershipUnknown(key)


class Permissions:
    """Answers 'may this user do this in this channel' from the configured roles.

    `allows` and `is_manager` raise MembershipUnknown when the answer depends on a lookup Slack did not answer.
    """

    def __init__(self, slack: SlackSettings, client: AsyncWebClient,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = slack
        self._client = client
        self._cache = _TimedSets(clock)

    def role(self, action: Action) -> Role:
        return Role(getattr(self._settings.permissions_of(_workspace()), action.value))

    async def allows(self, action: Action, user: str, channel: str) -> bool:
        role = self.role(action)
        if role is Role.ANYONE:
            return True
        if not user:
            return False
        if role is Role.CHANNEL_MEMBERS:
            return user in await self._cache.get(f"channel:{channel}", lambda: self._channel_members(channel))
        return await self.is_manager(user)

    async def in_channel(self, user: str, channel: str) -> bool:
        """Whether `user` is a member of `channel` (MembershipUnknown when Slack does not say)."""
        return bool(user) and user in await self._cache.get(f"channel:{channel}",
                                                            lambda: self._channel_members(channel))

    async def is_manager(self, user: str) -> bool:
        """True for a campaign manager, listed directly or through a user group."""
        managers = self._settings.managers_of(_workspace())  # the requesting workspace's, if it has its own
        if user in managers:
            return True
        if not user:
            return False
        for group in (g for g in managers if g.startswith("S")):
            if user in await self._cache.get(f"group:{group}", partial(self._group_members, group)):
                return True
        return False

    async def _channel_members(self, channel: str) -> frozenset[str] | None:
        members: set[str] = set()
        cursor = ""
        while True:
            resp = await lookup(self._client.conversations_members(channel=channel, limit=1000,
                                                                   cursor=cursor or None),
                                f"the members of {channel}")
            if resp is None:
                return None
            members.update(str(m) for m in as_list(resp.get("members")))
            cursor = str(as_dict(resp.get("response_metadata")).get("next_cursor") or "")
            if not cursor:
                return frozenset(members)

    async def _group_members(self, group: str) -> frozenset[str] | None:
        resp = await lookup(self._client.usergroups_users_list(usergroup=group), f"the members of user group {group}")
        return None if resp is None else frozenset(str(u) for u in as_list(resp.get("users")))


def _workspace() -> str | None:
    scope = request_scope()
    return scope.workspace if scope is not None else None
