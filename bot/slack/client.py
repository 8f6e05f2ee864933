"""The Slack Web API client every process builds, always with a timeout.

slack_sdk applies its own `timeout` only to sessions it opens itself; a session handed to it keeps whatever
timeout it was made with (aiohttp's default is five minutes), so the shared session is made here with ours.
"""

from __future__ import annotations

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import SlackSettings

CALL_TIMEOUT = 30  # seconds for one ordinary Web API call, connection included


def slack_session(timeout: float = CALL_TIMEOUT) -> aiohttp.ClientSession:
    """One shared HTTP session for Slack calls (a new connection and TLS handshake per call otherwise)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def slack_client(settings: SlackSettings, session: aiohttp.ClientSession | None = None,
                 timeout: int = CALL_TIMEOUT) -> AsyncWebClient:
    """A client for the bot token at `slack.api_url`; calls give up after `timeout` seconds.

    No rate-limit retry handler: the Slack outbox honours Retry-After itself (slack_sdk's async handler
    reads only the first character of the header, so "Retry-After: 30" would wait 3 s)."""
    # Many workspaces: no token of its own; each call takes its workspace's (Deps.slack_for, bolt's authorize).
    return AsyncWebClient(token=settings.bot_token or None, base_url=settings.api_url, session=session,
                          timeout=timeout)
