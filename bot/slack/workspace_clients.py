"""A Slack client per workspace, from its installation (many-workspace mode), rotating tokens due to expire.

Bolt rotates the token of a workspace whose request it is answering; the outbox and every other background
caller get theirs here, through slack_sdk's own token rotator, at `slack.api_url` like every other call.
"""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.workspaces import workspace

log = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
ROTATE_MINUTES_BEFORE = 120  # bolt's default: tokens live 12 hours


class InstalledWorkspaces:
    """Clients keyed by workspace (bot.core.workspace.workspace_key), each on the shared HTTP session."""

    def __init__(self, store: AsyncInstallationStore, sessions: async_sessionmaker[AsyncSession],
                 base: AsyncWebClient, *, client_id: str, client_secret: str) -> None:
        self._store = store
        self._sessions = sessions
        self._base = base
        # The rotator's client is the shared one: oauth.v2.access at slack.api_url, never a default URL.
        self._rotator = AsyncTokenRotator(client_id=client_id, client_secret=client_secret, client=base)
        self._cached: dict[str, tuple[float, Bot]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def client(self, team: str) -> AsyncWebClient | None:
        bot = await self.bot(team)
        if bot is None or not bot.bot_token:
            return None
        return AsyncWebClient(token=bot.bot_token, base_url=self._base.base_url, timeout=self._base.timeout,
                              session=self._base.session, retry_handlers=[])

    def forget(self, team: str) -> None:
        self._cached.pop(team, None)

    async def bot(self, team: str) -> Bot | None:
        """The workspace's bot installation, its token rotated first when it is due to expire."""
        cached = self._cached.get(team)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS and not _due(cached[1]):
            return cached[1]
        async with self._locks.setdefault(team, asyncio.Lock()):
            async with self._sessions() as session:
                row = await workspace(session, team)
            is_org = team.startswith("E")
            enterprise_id = team if is_org else (row.enterprise_id if row is not None else None)
            found = await self._store.async_find_bot(enterprise_id=enterprise_id, team_id=None if is_org else team,
                                                     is_enterprise_install=is_org)
            if found is None:
                self._cached.pop(team, None)
                return None
            rotated = await self._rotator.perform_bot_token_rotation(
                bot=found, minutes_before_expiration=ROTATE_MINUTES_BEFORE)
            if rotated is not None:
                await self._store.async_save_bot(rotated)
                log.info("Slack token of workspace %s rotated", team)
                found = rotated
            self._cached[team] = (time.monotonic(), found)
            return found


def _due(bot: Bot) -> bool:
    expires = bot.bot_token_expires_at
    return expires is not None and expires <= time.time() + ROTATE_MINUTES_BEFORE * 60
