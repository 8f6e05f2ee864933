"""Shared lifecycle for the loopback stand-in servers: a real aiohttp server on 127.0.0.1, random port."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoopbackServer:
    """Base class: subclasses add routes in `_routes`; `start()` returns the base URL."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self._answers_open = asyncio.Event()
        self._answers_open.set()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` once started."""
        if self._base_url is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._base_url

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._runner is not None

    def set_latency(self, seconds: float) -> None:
        """Delay every response by `seconds` (to exercise client timeouts)."""
        self.latency = seconds

    def hold_answers(self) -> None:
        """Carry out each request but keep its answer until release_answers() (a call Meta acted on at once
        and answered late: its statuses can arrive before its answer)."""
        self._answers_open.clear()

    def release_answers(self) -> None:
        """Send the answers held since hold_answers()."""
        self._answers_open.set()

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @web.middleware
    async def _latency_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        response = await handler(request)
        await self._answers_open.wait()
        return response

    async def start(self) -> str:
        """Listen on loopback and return the base URL."""
        if self._runner is not None:
            return self.base_url
        app = web.Application(middlewares=[self._latency_middleware], client_max_size=200 * 1024 * 1024)
        self._routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        self._base_url = f"http://{self.host}:{self.port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop listening (the same port is reused by a later start())."""
        self._answers_open.set()  # a held answer never holds the shutdown
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


def new_digits(length: int = 15) -> str:
    """A random numeric ID like the ones Meta uses (no leading zero)."""
    first = str(secrets.randbelow(9) + 1)
    return first + "".join(str(secrets.randbelow(10)) for _ in range(length - 1))
