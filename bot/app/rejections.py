"""Refused requests (4xx) logged as one line each, at most a few per route and minute.

An attacker can send thousands of bad requests; each still gets its answer, but the log gets a bounded
number of lines per (route, status) and a count of the lines it held back. Requests aiohttp refuses before
any route sees them (a 100 KB query string, an oversized header, a broken request line) are logged by
aiohttp with a traceback each; `quiet_malformed_requests` turns those into the same rate-limited line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

log = logging.getLogger("bot.app.rejections")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RateLimitedLog:
    """Allows `per_window` lines per key in each `window` seconds and counts the rest."""

    per_window: int = 10
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    def admit(self, key: str) -> tuple[bool, int]:
        """Whether a line for key may be written now, and how many were held back before it."""
        now = self.clock()
        start, written, held = self._windows.get(key, (now, 0, 0))
        if now - start >= self.window:
            start, written = now, 0
        if written < self.per_window:
            self._windows[key] = (start, written + 1, 0)
            return True, held
        self._windows[key] = (start, written, held + 1)
        return False, held


def _reason(response: web.StreamResponse) -> str:
    """The short reason in a small JSON or text answer, if there is one."""
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or len(body) > 512:
        return ""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip().splitlines()[0] if text.strip() else ""
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or "")
    return ""


def rejection_logger(limiter: RateLimitedLog) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware writing one line per refused request (4xx), rate-limited per route and status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if 400 <= exc.status < 500:
                _note(limiter, request, exc.status, exc.reason)
            raise
        if 400 <= response.status < 500:
            _note(limiter, request, response.status, _reason(response))
        return response

    return middleware


def _note(limiter: RateLimitedLog, request: web.Request, status: int, reason: str) -> None:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    ok, held = limiter.admit(f"{route} {status}")
    if not ok:
        return
    more = f" ({held} more like it not logged)" if held else ""
    log.warning("rejected %s %s from %s: %s %s%s", request.method, request.path[:200], request.remote or "?",
                status, (reason or "-")[:200], more)


_AIOHTTP_SERVER = "aiohttp.server"  # aiohttp's RequestHandler logs "Error handling request from …" here


def _what(exc: HttpProcessingError) -> str:
    # aiohttp's message quotes the offending bytes (a 100 KB line): never copy them into the log.
    if isinstance(exc, LineTooLong):
        return "request line or header too long"
    first = str(exc.message or "").splitlines()[0] if exc.message else ""
    return f"{type(exc).__name__}: {first[:80]}" if first else type(exc).__name__


class MalformedRequestFilter(logging.Filter):
    """On aiohttp's server logger: a request aiohttp refused as malformed (4xx) becomes one rate-limited line
    on this module's logger, without a traceback; everything else (a 500 from our code) passes unchanged."""

    def __init__(self, limiter: RateLimitedLog) -> None:
        super().__init__()
        self.limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not 400 <= (exc.code or 400) < 500:
            return True
        ok, held = self.limiter.admit(f"malformed {exc.code or 400}")
        if ok:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            more = f" ({held} more like it not logged)" if held else ""
            log.warning("rejected a malformed request from %s: %s %s%s", remote, exc.code or 400, _what(exc), more)
        return False


def quiet_malformed_requests(limiter: RateLimitedLog) -> None:
    """Put the filter on aiohttp's server logger (once: a later app replaces an earlier app's filter)."""
    logger = logging.getLogger(_AIOHTTP_SERVER)
    for old in [f for f in logger.filters if isinstance(f, MalformedRequestFilter)]:
        logger.removeFilter(old)
    logger.addFilter(MalformedRequestFilter(limiter))
