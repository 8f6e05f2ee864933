"""The Graph stand-in's HTTP side: routes each endpoint to its family and plays Meta towards our server."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web

from bot.standins._http import LoopbackServer
from bot.standins.graph import media, messages, numbers, subscriptions, templates, tokens
from bot.standins.graph.state import GraphAccount
from bot.standins.signing import sign_meta
from bot.standins.status_feed import StatusFeed

Endpoint = Callable[[GraphAccount, web.Request], Awaitable[web.Response]]


class GraphStandin(LoopbackServer, GraphAccount):
    """Fake Meta Graph API. `tokens=None` accepts any token for any ID; otherwise token -> allowed IDs."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, Iterable[str]] | None = None,
        mps: float | None = None,
        latency: float = 0.0,
        app_id: str = "300000000000001",
        app_secret: str = "standin-app-secret",
        app_name: str = "Wabridge Stand-in",
        new_template_status: str = "PENDING",
        port: int = 0,
    ) -> None:
        LoopbackServer.__init__(self, port=port, latency=latency)
        GraphAccount.__init__(self, tokens=tokens, mps=mps, app_id=app_id, app_secret=app_secret,
                              app_name=app_name, new_template_status=new_template_status)

    def send_status_webhooks(self, url: str | Callable[[], str | None], app_secret: str | None = None,
                             **feed: Any) -> StatusFeed:
        """From now on answer every accepted send with `sent`, `delivered` and `read` webhooks to url (or to
        what url() names at each attempt: None while nobody listens), echoing `biz_opaque_callback_data`."""
        self.status_feed = StatusFeed(url, app_secret or self.app_secret, **feed)
        return self.status_feed

    async def deliver_webhook(
        self, url: str, payload: Mapping[str, Any] | bytes, *, app_secret: str | None = None
    ) -> tuple[int, str]:
        """POST a signed webhook the way Meta does; returns (status, body text)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_meta(app_secret or self.app_secret, body),
            "User-Agent": "facebookexternalua",
        }
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    async def stop(self) -> None:
        if self.status_feed is not None:
            await self.status_feed.close()
        await super().stop()

    def _on(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
        return partial(endpoint, self)

    def _routes(self, app: web.Application) -> None:
        v = "/{version:v\\d+\\.\\d+}"
        add_get, add_post = app.router.add_get, app.router.add_post
        add_get(v + "/oauth/access_token", self._on(tokens.oauth_access_token))
        add_get(v + "/debug_token", self._on(tokens.debug_token))
        add_get("/media-download/{media_id}", self._on(media.download))
        add_post(v + "/{node}/messages", self._on(messages.send))
        add_post(v + "/{node}/media", self._on(media.upload))
        add_get(v + "/{node}/message_templates", self._on(templates.list_templates))
        add_post(v + "/{node}/message_templates", self._on(templates.create_template))
        add_get(v + "/{node}/subscribed_apps", self._on(subscriptions.get_subscribed_apps))
        add_post(v + "/{node}/subscribed_apps", self._on(subscriptions.post_subscribed_apps))
        app.router.add_delete(v + "/{node}/subscribed_apps", self._on(subscriptions.delete_subscribed_apps))
        add_get(v + "/{node}/subscriptions", self._on(subscriptions.app_subscriptions))
        add_post(v + "/{node}/smb_app_data", self._on(numbers.smb_app_data))
        add_post(v + "/{node}/register", self._on(numbers.register))
        add_get(v + "/{node}", self._on(numbers.get_node))
