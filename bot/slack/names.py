"""Slack users' names for figures and reports, looked up with users.info and remembered for a while."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

NAME_TTL = 3600.0


def display_name(user: dict[str, Any], fallback: str) -> str:
    """Real name, else display name, else the handle, else fallback."""
    profile = user.get("profile") or {}
    return str(profile.get("real_name") or profile.get("display_name") or user.get("name") or fallback)


class UserNames:
    """users.info answers cached per process; a user Slack cannot name (or Slack unreachable) keeps the id."""

    def __init__(self, client: AsyncWebClient, ttl: float = NAME_TTL) -> None:
        self._client = client
        self._ttl = ttl
        self._cache: dict[str, tuple[float, str]] = {}

    async def of(self, users: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for user in dict.fromkeys(users):
            if not user.startswith(("U", "W")):
                continue
            cached = self._cache.get(user)
            if cached is not None and time.monotonic() - cached[0] < self._ttl:
                out[user] = cached[1]
                continue
            try:
                resp = await self._client.users_info(user=user)
            except (SlackApiError, OSError, TimeoutError):
                continue
            name = display_name(resp.get("user") or {}, user)
            self._cache[user] = (time.monotonic(), name)
            out[user] = name
        return out
