"""Slack installations in our database: slack_sdk's SQLAlchemy installation store, tokens sealed at rest.

A thin wrapper of `AsyncSQLAlchemyInstallationStore` (the tables are created by migration 0013): every token
it writes (bot, refresh, user) is sealed first and every one it reads is opened, so a copy of the database
holds no usable Slack token. A token that no longer opens (the key was lost) reads as no installation and
says so in the log, rather than failing every request of that workspace with a traceback.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Protocol, TypeVar

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

_BOT_TOKENS = ("bot_token", "bot_refresh_token")
_ALL_TOKENS = (*_BOT_TOKENS, "user_token", "user_refresh_token")

T = TypeVar("T", Installation, Bot)


class Sealer(Protocol):
    """Seals and opens tokens (bot.onboarding.crypto.TokenBox)."""

    def seal(self, token: str) -> str: ...

    def open(self, ciphertext: str) -> str: ...


class SealedInstallationStore(AsyncInstallationStore):
    """slack_sdk's async SQLAlchemy installation store with every token sealed by `sealer`."""

    def __init__(self, client_id: str, engine: AsyncEngine, sealer: Sealer) -> None:
        self._inner = AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=engine, logger=log)
        self._sealer = sealer

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await self._inner.async_save(self._sealed(installation, _ALL_TOKENS))

    async def async_save_bot(self, bot: Bot) -> None:
        await self._inner.async_save_bot(self._sealed(bot, _BOT_TOKENS))

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        bot = await self._inner.async_find_bot(enterprise_id=enterprise_id, team_id=team_id,
                                               is_enterprise_install=is_enterprise_install)
        return None if bot is None else self._opened(bot, _BOT_TOKENS, team_id or enterprise_id)

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        found = await self._inner.async_find_installation(enterprise_id=enterprise_id, team_id=team_id,
                                                          user_id=user_id,
                                                          is_enterprise_install=is_enterprise_install)
        return None if found is None else self._opened(found, _ALL_TOKENS, team_id or enterprise_id)

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._inner.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        await self._inner.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    def _sealed(self, entity: T, fields: tuple[str, ...]) -> T:
        out = copy.copy(entity)
        for name in fields:
            value = getattr(out, name, None)
            if value:
                setattr(out, name, self._sealer.seal(value))
        return out

    def _opened(self, entity: T, fields: tuple[str, ...], who: str | None) -> T | None:
        out = copy.copy(entity)
        for name in fields:
            value: Any = getattr(out, name, None)
            if not value:
                continue
            try:
                setattr(out, name, self._sealer.open(value))
            except Exception as exc:  # the sealer's own "does not decrypt" error; which one is its business
                log.error("Slack installation of %s: its %s does not open with meta.token_key (%s); the "
                          "workspace must install the app again, or the old key be added back", who, name,
                          type(exc).__name__)
                return None
        return out


def oauth_state_store(engine: AsyncEngine, expiration_seconds: int) -> AsyncSQLAlchemyOAuthStateStore:
    """slack_sdk's OAuth state store on the slack_oauth_states table, shared by every process."""
    return AsyncSQLAlchemyOAuthStateStore(expiration_seconds=expiration_seconds, engine=engine, logger=log)
