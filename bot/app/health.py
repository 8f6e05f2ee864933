"""`GET /healthz`: 200 while the database and Redis answer and nothing this process runs is stuck, else 503
with a JSON body naming each problem (a dependency, a loop failing for a while, a campaign run not moving)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import text

from bot.handlers import appkeys

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0  # seconds a check may take before it counts as failed (a hung database, say)


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), app[appkeys.SESSIONS]() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    client = app.get(appkeys.REDIS)
    if client is None:
        checks["redis"] = "not configured (in-process throttle)"
    else:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await client.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(v == "ok" or v.startswith("not configured") for v in checks.values())
    problems: dict[str, str] = {}
    health = app.get(appkeys.LOOP_HEALTH)
    if health is not None:
        problems.update(health.failing())
    if checks["database"] == "ok":
        for check in app.get(appkeys.HEALTH_CHECKS, []):
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    problems.update(await check())
            except Exception as exc:
                problems[getattr(check, "__name__", "check")] = f"check failed: {exc.__class__.__name__}"
    body: dict[str, object] = {"status": "ok" if healthy and not problems else "error", **checks}
    if problems:
        body["stuck"] = problems
        body["reason"] = "; ".join(f"{name}: {why}" for name, why in problems.items())
    return web.json_response(body, status=200 if healthy and not problems else 503)


def cached(check: Callable[[], Awaitable[dict[str, str]]], seconds: float = 5.0,
           clock: Callable[[], float] = time.monotonic) -> Callable[[], Awaitable[dict[str, str]]]:
    """The check's answer reused for `seconds`: a probe every second costs the database one query set per
    `seconds`."""
    last: list[tuple[float, dict[str, str]]] = []

    async def run() -> dict[str, str]:
        now = clock()
        if last and now - last[0][0] < seconds:
            return last[0][1]
        answer = await check()
        last[:] = [(now, answer)]
        return answer

    run.__name__ = getattr(check, "__name__", "check")
    return run
