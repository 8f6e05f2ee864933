"""`GET /metrics`: off by default; behind a bearer token (`server.metrics_token`), on its own port
(`server.metrics_port`), both, or public on the main port only when `server.metrics_public` says so.

A reverse proxy's path rule is not a boundary (aiohttp routes `/%6detrics` to `/metrics`), so the endpoint
protects itself: the token is checked whatever path form reached it, and a separate port can stay off the
public interface altogether. Gauges read from the database are refreshed at most every few seconds, so a
busy scraper (or anyone allowed to scrape) does not put one query per request on the database.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from bot.core.config import ServerSettings
from bot.handlers import appkeys

log = logging.getLogger(__name__)

Refresh = Callable[[web.Application], Awaitable[None]]

REFRESH_SECONDS = 5.0


class Exposure(StrEnum):
    """Where /metrics is served."""

    OFF = "off"
    TOKEN = "token"  # on the main port, behind the bearer token
    OWN_PORT = "own_port"  # only on server.metrics_port (with the token too when one is set)
    PUBLIC = "public"  # on the main port, to anyone: server.metrics_public


def exposure(server: ServerSettings) -> Exposure:
    """Where the configuration puts /metrics; off unless a token, a port or metrics_public asks for it."""
    if server.metrics_port:
        return Exposure.OWN_PORT
    if server.metrics_token:
        return Exposure.TOKEN
    return Exposure.PUBLIC if server.metrics_public else Exposure.OFF


def exposure_line(server: ServerSettings) -> str:
    """The one start-up line saying where /metrics is and who may read it."""
    where = exposure(server)
    token = "behind server.metrics_token" if server.metrics_token else "with no token"
    if where is Exposure.OWN_PORT:
        return f"metrics: /metrics on http://{server.metrics_host}:{server.metrics_port}/metrics only, {token}"
    if where is Exposure.TOKEN:
        return "metrics: /metrics on the main port, behind server.metrics_token"
    if where is Exposure.PUBLIC:
        return "metrics: /metrics on the main port is public (server.metrics_public: true)"
    return ("metrics: /metrics is off; set server.metrics_token (bearer token), server.metrics_port (own port) "
            "or server.metrics_public: true to serve it")


class CachedRefresh:
    """Runs a database-backed refresh at most once per `seconds`; scrapes in between read the last values.

    A refresh that fails on the database (an outage) is logged in one line and not tried again before the
    next period, so scrapes keep answering with the values they had."""

    def __init__(self, refresh: Refresh, seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._refresh, self._seconds, self._clock = refresh, seconds, clock
        self._last: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._last is not None and self._clock() - self._last < self._seconds

    async def __call__(self, app: web.Application) -> None:
        if self._fresh():
            return
        async with self._lock:  # scrapes arriving together share one refresh
            if self._fresh():
                return
            try:
                await self._refresh(app)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("metrics: database gauges not refreshed (%s); serving the last values",
                            exc.__class__.__name__)
            finally:
                self._last = self._clock()


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
        log.info("%s", exposure_line(server))
        yield
        await runner.cleanup()

    return ctx


async def announce(app: web.Application) -> None:
    """Start-up hook: the one line saying where /metrics is (the own-port site says it once it listens)."""
    log.info("%s", exposure_line(app[appkeys.SETTINGS].server))
