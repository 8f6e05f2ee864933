"""Slack names by id, kept for a while: one cache per application, held on `Deps` (no I/O here).

Staff mention the same few colleagues, groups and channels again and again; `bot.slack.names` fills this
from Slack's Web API and reads it back, so a name costs one Slack call per `ttl`.
"""

from __future__ import annotations

from cachetools import TTLCache

DEFAULT_TTL = 3600.0  # seconds; a renamed colleague shows under the new name within the hour
DEFAULT_SIZE = 10_000  # ids per kind; the least recently added go first


class NameCache:
    """Display names of users, handles of user groups and names of channels, each by Slack id."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, maxsize: int = DEFAULT_SIZE) -> None:
        self.users: TTLCache[str, str] = TTLCache(maxsize, ttl)
        self.groups: TTLCache[str, str] = TTLCache(maxsize, ttl)
        self.channels: TTLCache[str, str] = TTLCache(maxsize, ttl)
