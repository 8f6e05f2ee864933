"""A loopback HTTP server on its own port that records every request: proof that nothing reached it."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Canary:
    """Answers anything with a body worth stealing and keeps each request's path and Authorization header."""

    hits: list[tuple[str, str]] = field(default_factory=list)
    redirect_to: str | None = None
    _server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/")).rstrip("/")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def _any(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((request.path_qs, request.headers.get("Authorization", "")))
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(body=b"%PDF-1.4 secret metrics", content_type="application/pdf")
