"""The Slack Web API client every process builds, always with a timeout.

slack_sdk applies its own `timeout` only to sessions it opens itself; a session handed to it keeps whatever
timeout it was made with (aiohttp's default is five minutes), so the shared session is made here with ours.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import SlackSettings
from bot.core.workspace import request_scope

CALL_TIMEOUT = 30  # seconds for one ordinary Web API call, connection included


def slack_session(timeout: float = CALL_TIMEOUT) -> aiohttp.ClientSession:
    """One shared HTTP session for Slack calls (a new connection and TLS handshake per call otherwise)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def slack_client(settings: SlackSettings, session: aiohttp.ClientSession | None = None,
                 timeout: int = CALL_TIMEOUT) -> AsyncWebClient:
    """A client for the bot token at `slack.api_url`; calls give up after `timeout` seconds.

    No rate-limit retry handler: the Slack outbox honours Retry-After itself (slack_sdk's async handler
    reads only the first character of the header, so "Retry-After: 30" would wait 3 s)."""
    if settings.many_workspaces:
        # No token of its own: a call made for a Slack request takes that workspace's (ScopedClient); the
        # outbox and other workers take theirs from Deps.slack_for.
        return ScopedClient(token=None, base_url=settings.api_url, session=session, timeout=timeout)
    return AsyncWebClient(token=settings.bot_token, base_url=settings.api_url, session=session, timeout=timeout)


class ScopedClient(AsyncWebClient):
    """A client whose calls carry the bot token of the Slack request being answered (bot.core.workspace)."""

    async def api_call(self, api_method: str, *, headers: dict[str, Any] | None = None,
                       **kwargs: Any) -> Any:
        scope = request_scope()
        # A call with credentials of its own (oauth.v2.access's client id and secret) keeps them.
        if scope is not None and scope.token and kwargs.get("auth") is None and "Authorization" not in (headers or {}):
            headers = {**(headers or {}), "Authorization": f"Bearer {scope.token}"}
        return await super().api_call(api_method, headers=headers, **kwargs)
