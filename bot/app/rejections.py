"""Refused requests (4xx) logged as one line each, at most a few per route and minute.

An attacker can send thousands of bad requests; each still gets its answer, but the log gets a bounded
number of lines per (route, status) and a count of the lines it held back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

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
