"""Download a Slack file with the bot token, following redirects only between allowed origins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from bot.core.config import SlackSettings
from bot.core.workspace import request_scope
from bot.slack.file_origin import allowed_origins, is_allowed, origin_of

MAX_REDIRECTS = 5


class FileOriginRefused(Exception):
    """The file (or a redirect on the way to it) is outside Slack's origins; no token was sent there."""

    def __init__(self, url: str) -> None:
        self.origin = origin_of(url) or "an invalid address"
        super().__init__(f"the file is hosted at {self.origin}, not on Slack, so it was not downloaded")


def token_origins(slack: SlackSettings) -> frozenset[str]:
    """The origins this configuration lets the bot token reach."""
    return allowed_origins(slack.api_url, slack.file_origins)


@asynccontextmanager
async def stream_slack_file(slack: SlackSettings, url: str, *,
                            read_timeout: float) -> AsyncIterator[httpx.Response]:
    """The streamed response for url; FileOriginRefused before any request leaves for another origin."""
    origins = token_origins(slack)
    scope = request_scope()  # many workspaces: the token of the workspace whose staff shared the file
    token = scope.token if scope is not None and scope.token else slack.bot_token
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=read_timeout, follow_redirects=False) as http:
        for _ in range(MAX_REDIRECTS + 1):
            if not is_allowed(url, origins):
                raise FileOriginRefused(url)
            request = http.build_request("GET", url, headers=headers)
            resp = await http.send(request, stream=True)
            if resp.is_redirect and "location" in resp.headers:
                url = str(resp.url.join(resp.headers["location"]))
                await resp.aclose()
                continue
            try:
                yield resp
            finally:
                await resp.aclose()
            return
    raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=request)
