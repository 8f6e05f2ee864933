"""`GET /metrics`: behind a bearer token (`server.metrics_token`), on its own port (`server.metrics_port`), or both.

A reverse proxy's path rule is not a boundary (aiohttp routes `/%6detrics` to `/metrics`), so the endpoint
protects itself: the token is checked whatever path form reached it, and a separate port can stay off the
public interface altogether.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.handlers import appkeys

log = logging.getLogger(__name__)

Refresh = Callable[[web.Application], Awaitable[None]]


def authorised(header: str | None, token: str) -> bool:
    """True when no token is configured, or the Authorization header carries it (compared in constant time)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_handler(app: web.Application, refresh: Refresh | None = None
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The /metrics handler for the main app's registry; refresh runs first (gauges read from the database)."""

    async def handler(request: web.Request) -> web.Response:
        settings = app[appkeys.SETTINGS]
        if not authorised(request.headers.get("Authorization"), settings.server.metrics_token):
            return web.json_response({"error": "metrics need Authorization: Bearer <server.metrics_token>"},
                                     status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        if refresh is not None:
            await refresh(app)
        body = generate_latest(app[appkeys.METRICS].registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handler


def metrics_site(handler: Callable[[web.Request], Awaitable[web.Response]]
                 ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context serving only /metrics on server.metrics_host:server.metrics_port."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        server = app[appkeys.SETTINGS].server
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", handler)
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, server.metrics_host, server.metrics_port).start()
        log.info("metrics listening on http://%s:%s/metrics", server.metrics_host, server.metrics_port)
        yield
        await runner.cleanup()

    return ctx
